from __future__ import annotations

import pytest

from inferloop.events import LabelledExample
from inferloop.quality import RollingQuality, label_quality


def test_rolling_quality_per_version() -> None:
    q = RollingQuality(window=4)
    for correct in (True, False, True, True, True):
        q.record_label("digits", 1, correct)
    for score in (0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5):
        q.record_prediction("digits", 1, score)
    v1 = q.get("digits", 1)
    assert v1.accuracy == 0.75 and v1.labelled == 4  # the window keeps the last four
    assert v1.confidence == 0.5 and v1.confidence_reference == 0.9 and v1.confidence_drift == pytest.approx(0.4)
    assert q.get("digits", 2).accuracy is None


def test_label_quality_follows_the_log_order_and_the_window() -> None:
    def example(event_id: str, version: int, correct: bool, at: int) -> LabelledExample:
        return LabelledExample(event_id, "1", "image/png", b"", "1" if correct else "2", 0.9, "digits", version,
                               logged_at_ms=at)  # fmt: skip

    other_model = LabelledExample("e", "1", "image/png", b"", "1", 0.9, "other", 1)
    examples = [
        example("a", 1, False, 1),
        example("b", 1, True, 3),
        example("c", 1, True, 2),
        example("d", 2, False, 4),
    ]
    examples.append(other_model)
    quality = label_quality(examples, "digits", window=2)
    assert quality.get("digits", 1).accuracy == 1.0, "the two latest (c, b) were right; a fell out of the window"
    assert quality.get("digits", 2).accuracy == 0.0 and quality.get("digits", 2).labelled == 1
    assert [q.model for q in quality.snapshot()] == ["digits", "digits"], "another model's labels are not counted"


def test_only_the_joiner_bounds_the_versions_it_tracks() -> None:
    """`inferloop models` lists every kept version's online accuracy (no bound); the joiner's tracker, whose
    versions become metric labels, keeps the least recently updated out beyond its bound."""
    unbounded, bounded = RollingQuality(10), RollingQuality(10, max_versions=3)
    for version in range(1, 13):
        unbounded.record_label("digits", version, True)
        bounded.record_label("digits", version, True)
    bounded.record_label("digits", 10, False)  # 10 is updated again: 11 goes first, then 12 would
    bounded.record_label("digits", 13, True)
    assert [q.version for q in unbounded.snapshot()] == list(range(1, 13))
    assert [q.version for q in bounded.snapshot()] == [10, 12, 13]
