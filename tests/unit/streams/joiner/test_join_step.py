"""The join step: records in, the input image logged with its label, what cannot be joined dead-lettered."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from inferloop.events import (
    ImageEvent,
    Record,
    decode_dead_letter,
    decode_labelled_example,
    encode_feedback,
    encode_image_event,
    encode_prediction,
)
from inferloop.metrics import JoinerMetrics
from inferloop.settings import Settings
from streams.joiner.join_step import Joiner
from tests.fakes import FakeImages, feedback, prediction


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
