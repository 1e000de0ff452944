"""The join step: records in, the input image logged with its label, what cannot be joined dead-lettered."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import CollectorRegistry

from inferloop.events import (
    ImageEvent,
    Message,
    Prediction,
    Record,
    decode_dead_letter,
    decode_labelled_example,
    encode_feedback,
    encode_image_event,
    encode_prediction,
)
from inferloop.metrics import JoinerMetrics
from inferloop.settings import Settings
from streams.joiner.feedback_join import Origin
from streams.joiner.join_step import Joiner
from tests.fakes import FakeImages, feedback, prediction


def run_joiner(
    records: list[Record], frames: dict[tuple[str, int, int], Message], **streams: object
) -> list[tuple[str, bytes | None, Message]]:
    return joiner_run(records, frames, **streams)[0]


def joiner_run(
    records: list[Record], frames: dict[tuple[str, int, int], Message], **streams: object
) -> tuple[list[tuple[str, bytes | None, Message]], Joiner]:
    settings = Settings(
        streams={
            "images_topic": "images",
            "predictions_topic": "predictions",
            "dead_letter_topic": "dead",
            "partitions": 1,
            **streams,
        },  # type: ignore[arg-type]
        feedback={"topic": "feedback", "trusted_topic": "trusted", "training_log_topic": "log"},  # type: ignore[arg-type]
    )
    sent: list[tuple[str, bytes | None, Message]] = []

    async def send_all(batch: list[tuple[str, Message]]) -> None:
        sent.extend((topic, m.key, m) for topic, m in batch)

    async def labels_of(model: str, version: int) -> frozenset[str]:
        return frozenset(str(d) for d in range(10))

    joiner = Joiner(settings, {}, JoinerMetrics(CollectorRegistry()), send_all, FakeImages(frames), labels_of)
    asyncio.run(joiner.process(records))
    return sent, joiner


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
    dead = {decode_dead_letter(v.value).reason: decode_dead_letter(v.value) for t, _, v in sent if t == "dead"}
    assert [(e.event_id, e.label, e.image) for e in logged] == [("a", "3", b"PNGBYTES")]
    assert set(dead) == {"image_unavailable", "unknown_label", "not_feedback"}
    assert dead["not_feedback"].original == b"not feedback" and dead["not_feedback"].origin_offset == 4
    assert dead["unknown_label"].event_id == "a"


def test_malformed_predictions_and_oversized_examples_are_dead_lettered_with_a_reason() -> None:
    images = {
        ("images", 0, 10): encode_image_event(ImageEvent("a", "image/png", b"P" * 2000)),
        ("images", 0, 11): encode_image_event(ImageEvent("b", "image/png", b"PNG")),
    }
    empty_scores = encode_prediction(prediction("c", offset=12)).replace(b'"scores":[0.9,0.05]', b'"scores":[]')
    assert b'"scores":[]' in empty_scores
    records = [
        Record("predictions", 0, 0, b"a", encode_prediction(prediction("a", offset=10))),
        Record("predictions", 0, 1, b"b", encode_prediction(prediction("b", offset=11))),
        Record("predictions", 0, 2, b"c", empty_scores),
        Record("predictions", 0, 3, b"d", b'{"schema_version": 1, "event_id": 7}'),
        Record("feedback", 0, 0, b"a", encode_feedback(feedback("a", "3"))),
        Record("feedback", 0, 1, b"b", encode_feedback(feedback("b", "3"))),
    ]
    sent = run_joiner(records, images, max_request_bytes=2048)
    logged = [decode_labelled_example(v).event_id for t, _, v in sent if t == "log"]
    dead = sorted(
        (decode_dead_letter(v.value).event_id, decode_dead_letter(v.value).reason) for t, _, v in sent if t == "dead"
    )
    assert logged == ["b"]
    assert dead == [("a", "example_too_large"), ("c", "bad_prediction"), ("d", "bad_prediction")]


def test_the_sweep_and_a_batch_take_turns_so_a_correction_is_the_last_label_logged() -> None:
    """A label left pending by a crash is due for the sweep when the redelivered batch brings a correction: run
    together, the sweep's re-join and the batch never interleave, so the correction is logged last and kept."""
    settings = Settings(
        streams={
            "images_topic": "images",
            "predictions_topic": "predictions",
            "dead_letter_topic": "dead",
            "partitions": 1,
        },  # type: ignore[arg-type]
        feedback={"topic": "feedback", "training_log_topic": "log", "wait_s": 10},  # type: ignore[arg-type]
    )
    store: dict[bytes, bytes] = {}
    sent: list[tuple[str, bytes | None, Message]] = []

    async def send_all(batch: list[tuple[str, Message]]) -> None:
        sent.extend((topic, m.key, m) for topic, m in batch)

    async def labels_of(model: str, version: int) -> frozenset[str]:
        return frozenset(str(d) for d in range(10))

    clock = [0.0]
    frames = {("images", 0, 10): encode_image_event(ImageEvent("a", "image/png", b"PNG"))}
    delays = [0.05]  # the first lookup (the sweep's) is the slow one: the batch would overtake it

    async def images(wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], bytes | None]:
        await asyncio.sleep(delays.pop() if delays else 0.0)
        return {w: frames.get(w) for w in wanted}

    joiner = Joiner(settings, store, JoinerMetrics(CollectorRegistry()), send_all, images, labels_of, lambda: clock[0])
    joiner.join.on_feedback(feedback("a", "3"), Origin("feedback", 0, 1), b"", now_s=0)
    joiner.join.on_prediction(prediction("a"), now_s=1)  # joined, then the joiner died before logging it
    clock[0] = 100.0  # the pending label is long due for the sweep

    async def both() -> None:
        batch = [
            Record("predictions", 0, 0, b"a", encode_prediction(prediction("a"))),
            Record("feedback", 0, 2, b"a", encode_feedback(feedback("a", "7"))),
        ]
        await asyncio.gather(joiner.sweep(), joiner.process(batch))

    asyncio.run(both())
    labels = [decode_labelled_example(v).label for t, _, v in sent if t == "log"]
    assert labels[-1] == "7" and "3" in labels, labels
    entry = joiner.join.get("a")
    assert entry is not None and entry.logged_label == "7" and entry.pending is None


def test_shadow_predictions_go_into_the_examples_and_score_the_candidate_on_the_same_labels() -> None:
    """Before or after its prediction, the candidate's answer joins the example; one that does not decode is
    skipped (an evaluation, not an output); the candidate's online accuracy is its own version's."""
    images = {
        ("images", 0, o): encode_image_event(ImageEvent(e, "image/png", b"PNG")) for e, o in (("a", 10), ("b", 11))
    }
    records = [
        Record("shadow", 0, 0, b"a", encode_prediction(prediction("a", label="3", version=2, offset=10))),
        Record("predictions", 0, 0, b"a", encode_prediction(prediction("a", label="8", version=1, offset=10))),
        Record("predictions", 0, 1, b"b", encode_prediction(prediction("b", label="3", version=1, offset=11))),
        Record("shadow", 0, 1, b"b", encode_prediction(prediction("b", label="5", version=2, offset=11))),
        Record("shadow", 0, 2, b"x", b"not a prediction"),
        Record("feedback", 0, 0, b"a", encode_feedback(feedback("a", "3"))),
        Record("feedback", 0, 1, b"b", encode_feedback(feedback("b", "3"))),
    ]
    sent = run_joiner(records, images, shadow_predictions_topic="shadow")
    logged = {e.event_id: e for e in (decode_labelled_example(v) for t, _, v in sent if t == "log")}
    assert {k: (e.model_version, e.correct, e.shadow_version, e.shadow_correct) for k, e in logged.items()} == {
        "a": (1, False, 2, True),
        "b": (1, True, 2, False),
    }
    assert not [t for t, _, _ in sent if t == "dead"], "a bad shadow record is not a dead letter"


@pytest.mark.security
def test_trust_comes_from_the_topic_and_open_feedback_never_overrides_a_trusted_label() -> None:
    """Open feedback that claims trust in a field, a trusted label, then open feedback that tries to overwrite
    it: only the trusted topic's label is logged as trusted, and the later open label is ignored (outranked,
    counted), in the same batch and in later ones."""
    images = {("images", 0, n): encode_image_event(ImageEvent(e, "image/png", b"PNG")) for n, e in enumerate("abc")}
    forged = json.dumps({**feedback("a", "3").__dict__, "trusted": True, "feedback_trusted": True}).encode()
    records = [
        *(
            Record("predictions", 0, n, e.encode(), encode_prediction(prediction(e, offset=n)))
            for n, e in enumerate("abc")
        ),
        Record("feedback", 0, 0, b"a", forged),  # open topic: not trusted, whatever it says
        Record("trusted", 0, 0, b"b", encode_feedback(feedback("b", "3"))),
        Record("feedback", 0, 1, b"b", encode_feedback(feedback("b", "7"))),  # tries to overwrite b: outranked
        Record("feedback", 0, 2, b"c", encode_feedback(feedback("c", "5"))),
        Record("trusted", 0, 1, b"c", encode_feedback(feedback("c", "5"))),  # confirms c: logged again, trusted
    ]
    sent, joiner = joiner_run(records, images)
    logged = [decode_labelled_example(v) for t, _, v in sent if t == "log"]
    assert [(e.event_id, e.label, e.feedback_trusted) for e in logged] == [
        ("a", "3", False),
        ("b", "3", True),
        ("c", "5", False),
        ("c", "5", True),
    ]
    outcomes = joiner.metrics.registry.get_sample_value
    assert outcomes("inferloop_feedback_outcomes_total", {"outcome": "outranked"}) == 1
    # a later batch: open feedback for the trusted events is still outranked; for the open one it corrects
    later = [
        Record("feedback", 0, 3, b"b", encode_feedback(feedback("b", "9"))),
        Record("feedback", 0, 4, b"c", encode_feedback(feedback("c", "9"))),
        Record("feedback", 0, 5, b"a", encode_feedback(feedback("a", "9"))),
    ]
    before = len(sent)
    asyncio.run(joiner.process(later))
    assert outcomes("inferloop_feedback_outcomes_total", {"outcome": "outranked"}) == 3
    corrected = [decode_labelled_example(v) for t, _, v in sent[before:] if t == "log"]
    assert [(e.event_id, e.label, e.feedback_trusted) for e in corrected] == [("a", "9", False)]
    assert len(sent) == before + 1


@pytest.mark.security
def test_hostile_model_names_and_versions_do_not_grow_the_metric_labels() -> None:
    """Predictions for 50 invented model names and 50 versions of the served model, each joined with feedback:
    the per-version series carry the served model's name or "other", and at most the tracker's versions."""
    records, images = [], {}
    for n in range(100):
        name, version = (f"evil-{n}", 1) if n < 50 else ("digits", n)
        p = prediction(f"e{n}", version=version, offset=n)
        p = Prediction(**{**p.__dict__, "model_name": name})
        records.append(Record("predictions", 0, n, p.event_id.encode(), encode_prediction(p)))
        records.append(Record("trusted", 0, n, p.event_id.encode(), encode_feedback(feedback(p.event_id, "3"))))
        images[("images", 0, n)] = encode_image_event(ImageEvent(p.event_id, "image/png", b"PNG"))
    sent, joiner = joiner_run(records, images)
    assert sum(t == "log" for t, _, _ in sent) == 100  # every one joined and logged
    series = {
        (s.labels["model"], s.labels["version"])
        for metric in joiner.metrics.registry.collect()
        for s in metric.samples
        if "version" in s.labels and "model" in s.labels
    }
    assert {model for model, _ in series} <= {"digits", "other"} and series
    per_model = joiner.quality.max_versions
    assert len({v for m, v in series if m == "digits"}) <= per_model
    assert len({v for m, v in series if m == "other"}) <= per_model


def test_feedback_keyed_or_placed_otherwise_than_its_prediction_is_dead_lettered_to_be_replayed_in_place() -> None:
    """The table and the predictions are placed by murmur2 of the event id; feedback a client placed elsewhere (a
    librdkafka default partitioner, a key that is not the event id) would wait where its prediction never comes."""
    from streams.joiner.join_step import partition_of

    right = partition_of(b"a", 4)
    wrong = (right + 1) % 4
    images = {("images", 0, 10): encode_image_event(ImageEvent("a", "image/png", b"PNG"))}  # where it names
    records = [
        Record("predictions", right, 0, b"a", encode_prediction(prediction("a", offset=10))),
        Record("feedback", wrong, 0, b"a", encode_feedback(feedback("a", "3"))),  # another partitioner
        Record("feedback", right, 1, b"not-a", encode_feedback(feedback("a", "3"))),  # another key
        Record("feedback", right, 2, b"a", encode_feedback(feedback("a", "5"))),  # in place: joined
    ]
    sent = run_joiner(records, images, partitions=4)
    dead = [decode_dead_letter(v.value) for t, _, v in sent if t == "dead"]
    assert sorted((d.reason, d.origin_offset) for d in dead) == [("misplaced_feedback", 0), ("misplaced_feedback", 1)]
    assert all(d.original_key == b"a" and d.original is not None for d in dead), "a replay sends it keyed by the id"
    assert [decode_labelled_example(v).label for t, _, v in sent if t == "log"] == ["5"]
