"""The feedback join's decisions, over a plain dict (the joiner runs them over a Faust table)."""

from __future__ import annotations

import json

from inferloop.events import Feedback
from streams.joiner.feedback_join import Entry, FeedbackJoin, Join, Origin, Reject
from tests.fakes import feedback, prediction

ORIGIN = Origin("feedback", 0, 1)


def make_join(retention_s: float = 100.0, wait_s: float = 10.0) -> FeedbackJoin:
    return FeedbackJoin({}, retention_s=retention_s, wait_s=wait_s)


def test_feedback_after_its_prediction_joins() -> None:
    join = make_join()
    assert join.on_prediction(prediction("a"), now_s=0) is None
    out = join.on_feedback(feedback("a", "3"), ORIGIN, b"raw", now_s=1)
    assert isinstance(out, Join) and out.label == "3" and not out.correction
    assert out.predicted.label == "3" and out.predicted.image_offset == 10


def test_feedback_before_its_prediction_waits_then_joins() -> None:
    join = make_join()
    assert join.on_feedback(feedback("a", "5"), ORIGIN, b"raw", now_s=0) is None
    entry = join.get("a")
    assert entry is not None and entry.pending is not None
    out = join.on_prediction(prediction("a"), now_s=3)
    assert isinstance(out, Join) and out.label == "5"


def test_feedback_whose_prediction_never_comes_is_rejected_after_the_wait() -> None:
    join = make_join(wait_s=10)
    join.on_feedback(feedback("ghost", "5"), ORIGIN, b"raw", now_s=0)
    assert join.sweep(now_s=9) == ([], [])
    joins, (reject,) = join.sweep(now_s=10.5)
    assert not joins
    assert reject.reason == "unknown_event" and reject.event_id == "ghost" and reject.original == b"raw"
    assert join.get("ghost") is not None, "the feedback was dropped before its dead letter was acknowledged"
    assert join.sweep(now_s=11) == ([], []), "rejected again before the caller could settle it"
    join.mark_settled(reject)
    assert join.get("ghost") is None and len(join) == 0


def test_duplicate_feedback_is_idempotent_and_a_correction_is_joined_again() -> None:
    join = make_join()
    join.on_prediction(prediction("a"), now_s=0)
    first = join.on_feedback(feedback("a", "3"), ORIGIN, b"", now_s=1)
    assert isinstance(first, Join)
    join.mark_logged(first)
    assert join.on_feedback(feedback("a", "3"), ORIGIN, b"", now_s=2) is None  # duplicate
    correction = join.on_feedback(feedback("a", "7"), ORIGIN, b"", now_s=3)
    assert isinstance(correction, Join) and correction.correction and correction.label == "7"


def test_predictions_expire_to_a_marker_and_late_feedback_is_rejected() -> None:
    join = make_join(retention_s=100, wait_s=10)
    join.on_prediction(prediction("a"), now_s=0)
    assert join.sweep(now_s=99) == ([], [])
    join.sweep(now_s=101)
    entry = join.get("a")
    assert entry is not None and entry.expired and entry.predicted is None
    out = join.on_feedback(feedback("a", "3"), ORIGIN, b"", now_s=102)
    assert isinstance(out, Reject) and out.reason == "expired_event"
    join.sweep(now_s=201)
    assert join.get("a") is None, "the marker outlived twice the retention"


def test_a_redelivered_prediction_keeps_the_first() -> None:
    join = make_join()
    join.on_prediction(prediction("a", label="3"), now_s=0)
    join.on_prediction(prediction("a", label="9"), now_s=1)
    entry = join.get("a")
    assert entry is not None and entry.predicted is not None and entry.predicted.label == "3"


def test_the_sweep_rebuilds_its_index_after_a_recovery() -> None:
    first = make_join(wait_s=5)
    first.on_feedback(feedback("x", "1"), ORIGIN, b"", now_s=0)
    recovered = FeedbackJoin(dict(first.store), retention_s=100, wait_s=5)  # a new process, the same table
    assert [r.reason for r in recovered.sweep(now_s=6)[1]] == ["unknown_event"]


def test_entries_round_trip() -> None:
    join = make_join()
    join.on_feedback(feedback("a", "1"), ORIGIN, b"\x00raw", now_s=0)
    value = join.store[b"a"]
    assert Entry.decode(value).encode() == value


def test_feedback_joined_but_never_logged_survives_a_restart_and_joins_again() -> None:
    """The joiner died after the table held the prediction but before the example was logged: the recovered
    table still holds the label, so the redelivered prediction joins it again (and so does the sweep)."""
    join = make_join(wait_s=10)
    join.on_feedback(feedback("a", "5"), ORIGIN, b"raw", now_s=0)
    assert isinstance(join.on_prediction(prediction("a"), now_s=1), Join)  # ... and then the process died
    recovered = FeedbackJoin(dict(join.store), retention_s=100, wait_s=10)
    again = recovered.on_prediction(prediction("a"), now_s=2)  # redelivered: its offset was never committed
    assert isinstance(again, Join) and again.label == "5" and again.origin == ORIGIN
    swept, rejected = FeedbackJoin(dict(join.store), retention_s=100, wait_s=10).sweep(now_s=11)
    assert [j.label for j in swept] == ["5"] and not rejected
    recovered.mark_logged(again)
    entry = recovered.get("a")
    assert entry is not None and entry.pending is None and entry.logged_label == "5"
    assert recovered.on_prediction(prediction("a"), now_s=3) is None, "a logged label was joined again"


def test_a_later_label_stays_pending_when_an_earlier_one_is_logged() -> None:
    join = make_join()
    join.on_prediction(prediction("a"), now_s=0)
    first = join.on_feedback(feedback("a", "3"), Origin("feedback", 0, 1), b"", now_s=1)
    second = join.on_feedback(feedback("a", "7"), Origin("feedback", 0, 2), b"", now_s=2)
    assert isinstance(first, Join) and isinstance(second, Join)
    join.mark_logged(first)
    entry = join.get("a")
    assert entry is not None and entry.pending is not None and entry.pending.label == "7"
    join.mark_logged(second)
    entry = join.get("a")
    assert entry is not None and entry.pending is None and entry.logged_label == "7"


def test_a_waiting_trusted_label_survives_the_table_and_an_open_one_encodes_as_before() -> None:
    """The table entry keeps whether waiting feedback is trusted beside it, not inside it: an entry with open
    feedback encodes exactly as before the trusted topic (an older joiner recovers either)."""
    join = FeedbackJoin({}, retention_s=60, wait_s=10)
    origin = Origin("trusted", 0, 1)
    join.on_feedback(Feedback("t", "3", "x", 1), origin, b"{}", now_s=1.0, trusted=True)
    join.on_feedback(Feedback("o", "3", "x", 1), Origin("feedback", 0, 1), b"{}", now_s=1.0)
    trusted_raw, open_raw = json.loads(join.store[b"t"]), json.loads(join.store[b"o"])
    assert trusted_raw["pending_trusted"] is True and "trusted" not in trusted_raw["pending"]
    assert "pending_trusted" not in open_raw and "trusted" not in open_raw["pending"]
    assert join.get("t").pending.trusted and not join.get("o").pending.trusted  # type: ignore[union-attr]
