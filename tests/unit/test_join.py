"""The feedback join's decisions, over a plain dict (the joiner runs them over a Faust table)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from streams.events import (
    EventDecodeError,
    Feedback,
    ImageEvent,
    LabelledExample,
    Prediction,
    decode_dead_letter,
    decode_feedback,
    decode_labelled_example,
    encode_feedback,
    encode_image_event,
    encode_labelled_example,
    encode_prediction,
)
from streams.join import Entry, FeedbackJoin, Join, Origin, Reject
from streams.joiner import Joiner, Record
from streams.metrics import JoinerMetrics
from streams.quality import RollingQuality
from streams.settings import Settings

ORIGIN = Origin("feedback", 0, 1)


def prediction(event_id: str, label: str = "3", version: int = 1, offset: int = 10) -> Prediction:
    return Prediction(event_id, "digits", version, [label, "8"], [0.9, 0.05], 1, 2, 3, "", "images", 0, offset)


def feedback(event_id: str, label: str) -> Feedback:
    return Feedback(event_id, label, "test", 5)


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
    assert join.sweep(now_s=9) == []
    (reject,) = join.sweep(now_s=10.5)
    assert reject.reason == "unknown_event" and reject.event_id == "ghost" and reject.original == b"raw"
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
    assert join.sweep(now_s=99) == []
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
    assert [r.reason for r in recovered.sweep(now_s=6)] == ["unknown_event"]


def test_entries_round_trip() -> None:
    join = make_join()
    join.on_feedback(feedback("a", "1"), ORIGIN, b"\x00raw", now_s=0)
    value = join.store[b"a"]
    assert Entry.decode(value).encode() == value


def test_feedback_and_labelled_examples_round_trip_and_refuse_garbage() -> None:
    f = Feedback("e1", "7", "person", 42)
    assert decode_feedback(encode_feedback(f)) == f
    for bad, reason in (
        (b"", "empty_value"),
        (b"\xff", "not_feedback"),
        (b"[1]", "not_feedback"),
        (b'{"schema_version": 2}', "unknown_schema_version"),
        (b'{"schema_version": 1, "event_id": "e", "at_ms": 1}', "missing_field"),
        (b'{"schema_version": 1, "event_id": "e", "label": "", "at_ms": 1}', "missing_field"),
        (b'{"schema_version": 1, "event_id": "e", "label": "1", "at_ms": -1}', "missing_field"),
    ):
        with pytest.raises(EventDecodeError) as info:
            decode_feedback(bad)
        assert info.value.reason == reason, bad
    example = LabelledExample("e1", "7", "image/png", b"\x89PNG...", "1", 0.4, "digits", 2)
    assert decode_labelled_example(encode_labelled_example(example)) == example
    with pytest.raises(EventDecodeError) as info:
        decode_labelled_example(encode_image_event(ImageEvent("e", "image/png", b"x")))
    assert info.value.reason == "not_a_labelled_example"


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


class FakeImages:
    def __init__(self, frames: dict[tuple[str, int, int], bytes]) -> None:
        self.frames = frames

    async def __call__(self, wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], bytes | None]:
        return {w: self.frames.get(w) for w in wanted}


def run_joiner(records: list[Record], frames: dict[tuple[str, int, int], bytes]) -> list[tuple[str, bytes, bytes]]:
    settings = Settings(
        streams={"predictions_topic": "predictions", "dead_letter_topic": "dead"},  # type: ignore[arg-type]
        feedback={"topic": "feedback", "training_log_topic": "log"},  # type: ignore[arg-type]
    )
    sent: list[tuple[str, bytes, bytes]] = []

    async def send_all(batch: list[tuple[str, bytes, bytes]]) -> None:
        sent.extend(batch)

    async def labels_of(model: str) -> frozenset[str]:
        return frozenset(str(d) for d in range(10))

    joiner = Joiner(settings, {}, JoinerMetrics(CollectorRegistry()), send_all, FakeImages(frames), labels_of)
    asyncio.run(joiner.process(records))
    return sent


def test_the_joiner_logs_the_input_image_and_dead_letters_what_it_cannot_join() -> None:
    image = encode_image_event(ImageEvent("a", "image/png", b"PNGBYTES"))
    records = [
        Record("predictions", 0, 0, b"a", encode_prediction(prediction("a", offset=10))),
        Record("predictions", 0, 1, b"b", encode_prediction(prediction("b", offset=11))),  # its image is gone
        Record("feedback", 0, 0, b"a", encode_feedback(feedback("a", "3"))),
        Record("feedback", 0, 1, b"a", encode_feedback(feedback("a", "3"))),  # a duplicate in the same batch
        Record("feedback", 0, 2, b"b", encode_feedback(feedback("b", "3"))),
        Record("feedback", 0, 3, b"a", encode_feedback(feedback("a", "banana"))),
        Record("feedback", 0, 4, b"k", b"not feedback"),
    ]
    sent = run_joiner(records, {("images", 0, 10): image})
    logged = [decode_labelled_example(v) for t, _, v in sent if t == "log"]
    dead = {decode_dead_letter(v).reason: decode_dead_letter(v) for t, _, v in sent if t == "dead"}
    assert [(e.event_id, e.label, e.image) for e in logged] == [("a", "3", b"PNGBYTES")]
    assert set(dead) == {"image_unavailable", "unknown_label", "not_feedback"}
    assert dead["not_feedback"].original == b"not feedback" and dead["not_feedback"].origin_offset == 4
    assert dead["unknown_label"].event_id == "a"
