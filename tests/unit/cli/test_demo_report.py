"""The demo's count of predictions from unverified versions, on a made-up timeline of announcements."""

from __future__ import annotations

from cli.demo import unverified_predictions
from cli.demo_report import Observation
from inferloop.events import Promotion


def seen(version: int, at_ms: int) -> Observation:
    return Observation(0.0, "drift", version, True, 10.0, False, predicted_at_ms=at_ms)


def test_only_the_announced_version_counts_with_a_grace_for_the_one_before() -> None:
    announcements = [
        Promotion("digits", 1, None, announced_at_ms=1_000),
        Promotion("digits", 1, 2, "shadow", announced_at_ms=50_000),  # 2 in shadow: still 1 serves
        Promotion("digits", 2, None, announced_at_ms=60_000),
        Promotion("digits", 1, None, "rollback", announced_at_ms=90_000),
    ]
    fine = [seen(1, 2_000), seen(1, 55_000), seen(2, 61_000), seen(1, 62_000), seen(2, 91_000), seen(1, 99_000)]
    assert unverified_predictions(fine, announcements, verified={1, 2}) == 0
    wrong = [
        seen(2, 55_000),  # in shadow, not serving
        seen(1, 70_000),  # 10 s after 2 was promoted
        seen(2, 99_000),  # 9 s after the rollback
        seen(3, 99_000),  # never announced
        seen(1, 500),  # before anything was announced
    ]
    assert unverified_predictions(wrong, announcements, verified={1, 2}) == len(wrong)
    assert unverified_predictions([seen(2, 61_000)], announcements, verified={1}) == 1, "not verified"
