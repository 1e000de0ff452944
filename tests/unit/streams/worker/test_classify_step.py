"""The classify step in isolation: Triton and the broker are faked here (the integration tests use real ones)."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from inferloop.events import ImageEvent, Promotion, Record, decode_dead_letter, decode_prediction, encode_image_event
from inferloop.images.uris import ImageUriReader
from inferloop.metrics import WorkerMetrics
from inferloop.settings import Settings
from inferloop.triton.errors import TritonRequestFailed, TritonUnavailable
from streams.errors import DependencyOutage
from streams.faust_app import EXIT_BEFORE_COMMIT
from streams.worker.classify_step import Classifier, exit_on_delivery_failure
from tests.fakes import FakeBroker, FakeTriton, prediction


def _event(event_id: str) -> Record:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buffer, format="PNG")
    return encode_image_event(ImageEvent(event_id, "image/png", buffer.getvalue())).at("images", 0, int(event_id[1:]))


class Announced:
    """The promotions topic as a worker sees it: a state per model, changed by the test."""

    def __init__(self, serving: int | None = 4, shadow: int | None = None) -> None:
        self.state = None if serving is None else Promotion("digits", serving, shadow)

    def __call__(self, model: str) -> Promotion | None:
        return self.state if model == "digits" else None


def _classifier(
    triton: FakeTriton, broker: FakeBroker, announced: Announced | None = None, **streams: float
) -> tuple[Classifier, WorkerMetrics]:
    settings = Settings(streams={"retry_initial_s": 0.01, "retry_max_s": 0.02, **streams})  # type: ignore[arg-type]
    metrics = WorkerMetrics(CollectorRegistry())
    return Classifier(settings, triton, metrics, broker.send, announced or Announced()), metrics  # type: ignore[arg-type]


def test_batches_are_chunked_to_the_model_limit_and_predicted() -> None:
    triton, broker = FakeTriton([]), FakeBroker()
    classifier, metrics = _classifier(triton, broker)
    asyncio.run(classifier.process([_event(f"e{i}") for i in range(5)]))
    assert triton.calls == [2, 2, 1]
    predictions = [decode_prediction(v) for t, _, v in broker.records if t == "inferloop.predictions"]
    assert [p.event_id for p in predictions] == [f"e{i}" for i in range(5)]
    assert predictions[0].labels == ["b", "a", "c"] and predictions[0].model_version == 4
    assert metrics.predictions.labels("digits", "4")._value.get() == 5


def test_unavailable_triton_is_retried_until_it_answers() -> None:
    triton = FakeTriton([TritonUnavailable("x", 1.0)] * 3)
    broker = FakeBroker()
    classifier, metrics = _classifier(triton, broker)
    asyncio.run(classifier.process([_event("e1")]))
    assert len(broker.records) == 1 and broker.records[0][0] == "inferloop.predictions"
    assert metrics.retries.labels("unavailable")._value.get() == 3


def test_repeated_request_failures_dead_letter_the_events() -> None:
    triton = FakeTriton([TritonRequestFailed("digits", "inference", "bad shape")] * 3)
    broker = FakeBroker()
    classifier, _ = _classifier(triton, broker)
    asyncio.run(classifier.process([_event("e1"), _event("e2")]))
    letters = [decode_dead_letter(v) for t, _, v in broker.records]
    assert [(d.reason, d.event_id) for d in letters] == [("inference_failed", "e1"), ("inference_failed", "e2")]
    assert letters[0].original is not None


def test_broker_failures_are_retried_not_dropped() -> None:
    triton, broker = FakeTriton([]), FakeBroker(fail_times=2)
    classifier, metrics = _classifier(triton, broker)
    asyncio.run(classifier.process([_event("e1"), Record("images", 0, 9, b"k", b"junk")]))
    topics = sorted(t for t, _, _ in broker.records)
    assert topics == ["inferloop.dead-letters", "inferloop.predictions"]
    assert metrics.retries.labels("produce")._value.get() == 2


def test_a_refused_delivery_goes_to_the_failure_handler_and_counts_no_prediction() -> None:
    triton, broker = FakeTriton([]), FakeBroker(refuse=True)
    classifier, metrics = _classifier(triton, broker)
    failures: list[tuple[str, str]] = []
    classifier.on_delivery_failure = lambda output, exc: failures.append((output.event_id or "", str(exc)))

    async def run() -> None:
        await classifier.process([_event("e1"), _event("e2")])
        await asyncio.sleep(0)  # let the delivery callbacks run

    asyncio.run(run())
    assert failures == [("e1", "refused")]
    assert metrics.predictions.labels("digits", "4")._value.get() == 0


def test_the_default_delivery_failure_handler_exits_at_once_with_code_70(monkeypatch: pytest.MonkeyPatch) -> None:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(SystemExit):
        exit_on_delivery_failure(prediction("e1"), RuntimeError("refused"))
    assert codes == [EXIT_BEFORE_COMMIT] == [70]


def test_a_dependency_down_longer_than_the_outage_budget_raises_instead_of_waiting_forever() -> None:
    triton = FakeTriton([TritonUnavailable("x", 1.0)] * 1000)
    broker = FakeBroker()
    classifier, metrics = _classifier(triton, broker, outage_timeout_s=0.2)
    with pytest.raises(DependencyOutage, match="outage_timeout_s"):
        asyncio.run(classifier.process([_event("e1")]))
    assert not broker.records, "an output was produced for a batch that was never inferred"
    assert 5 <= metrics.retries.labels("unavailable")._value.get() < 1000


def test_each_batch_gets_an_outage_budget_of_its_own() -> None:
    """Two batches that each wait less than the budget, though together more: neither gives up."""
    triton = FakeTriton([TritonUnavailable("x", 1.0)] * 3)
    broker = FakeBroker()
    options = {"outage_timeout_s": 0.5, "retry_initial_s": 0.15, "retry_max_s": 0.15}
    classifier, _ = _classifier(triton, broker, **options)
    asyncio.run(classifier.process([_event("e1")]))  # waits 3 x 0.15 s
    triton.failures.extend([TritonUnavailable("x", 1.0)] * 3)
    asyncio.run(classifier.process([_event("e2")]))  # 3 x 0.15 s more: 0.9 s in all, over the budget
    assert [t for t, _, _ in broker.records] == ["inferloop.predictions"] * 2


def test_every_inference_names_the_announced_version_and_follows_a_new_announcement() -> None:
    triton, broker = FakeTriton([]), FakeBroker()
    announced = Announced(serving=4)
    classifier, _ = _classifier(triton, broker, announced)
    asyncio.run(classifier.process([_event("e1")]))
    announced.state = Promotion("digits", 5, None, "rollback")
    asyncio.run(classifier.process([_event("e2")]))
    predictions = [decode_prediction(v) for t, _, v in broker.records if t == "inferloop.predictions"]
    assert triton.versions == [4, 5] and [p.model_version for p in predictions] == [4, 5]


def test_a_worker_waits_for_an_announcement_and_never_asks_for_whatever_triton_loaded() -> None:
    triton, broker = FakeTriton([]), FakeBroker()
    classifier, metrics = _classifier(triton, broker, Announced(serving=None), outage_timeout_s=0.2)
    with pytest.raises(DependencyOutage, match="no version of digits is announced"):
        asyncio.run(classifier.process([_event("e1")]))
    assert triton.calls == [] and broker.records == [] and metrics.retries.labels("promotion")._value.get() > 0


def test_the_candidate_in_shadow_scores_the_same_events_onto_the_shadow_topic_only() -> None:
    triton, broker = FakeTriton([]), FakeBroker()
    classifier, metrics = _classifier(triton, broker, Announced(serving=4, shadow=5))
    asyncio.run(classifier.process([_event(f"e{i}") for i in range(3)]))
    by_topic: dict[str, list[tuple[str, int, str]]] = {}
    for topic, _, value in broker.records:
        p = decode_prediction(value)
        by_topic.setdefault(topic, []).append((p.event_id, p.model_version, p.label))
    assert by_topic == {
        "inferloop.predictions": [("e0", 4, "b"), ("e1", 4, "b"), ("e2", 4, "b")],
        "inferloop.shadow-predictions": [("e0", 5, "c"), ("e1", 5, "c"), ("e2", 5, "c")],
    }
    assert metrics.shadow_predictions.labels("digits", "5")._value.get() == 3
    assert metrics.predictions.labels("digits", "5")._value.get() == 0


def test_a_failing_shadow_costs_only_its_evaluation() -> None:
    triton, broker = FakeTriton([], failing_versions={5}), FakeBroker()
    classifier, metrics = _classifier(triton, broker, Announced(serving=4, shadow=5))
    asyncio.run(classifier.process([_event("e1"), _event("e2")]))
    assert [t for t, _, _ in broker.records] == ["inferloop.predictions"] * 2
    assert metrics.shadow_failures.labels("digits")._value.get() == 1
    assert metrics.retries.labels("request_failed")._value.get() == 0, "the shadow is never retried"


def test_a_shadow_fraction_samples_the_same_events_on_every_worker() -> None:
    events = [_event(f"e{i}") for i in range(200)]
    sampled: list[set[str]] = []
    for _ in range(2):
        triton, broker = FakeTriton([]), FakeBroker()
        classifier, _ = _classifier(triton, broker, Announced(serving=4, shadow=5), shadow_fraction=0.25)
        asyncio.run(classifier.process(events))
        sampled.append({decode_prediction(v).event_id for t, _, v in broker.records if "shadow" in t})
    assert sampled[0] == sampled[1] and 20 < len(sampled[0]) < 80


def test_a_slow_shadow_is_skipped_after_its_timeout_and_never_holds_the_batch() -> None:
    triton, broker = FakeTriton([], slow_versions={5: 5.0}), FakeBroker()
    classifier, metrics = _classifier(triton, broker, Announced(serving=4, shadow=5), shadow_timeout_s=0.2)
    asyncio.run(classifier.process([_event("e1"), _event("e2")]))
    assert 5 in triton.versions and 5 not in triton.answered, "the batch waited for the slow shadow's answer"
    assert [t for t, _, _ in broker.records] == ["inferloop.predictions"] * 2
    assert metrics.shadow_failures.labels("digits")._value.get() == 1


def test_a_batch_that_takes_long_to_decode_hands_the_loop_over_between_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer heartbeats on the agent's loop: a batch of slow images must not hold it throughout."""
    import time

    import streams.worker.classify_step as step

    real_decode = step.decode_image
    turns: list[int] = []  # the other task's turns on the loop, counted
    seen: list[int] = []  # that count as each image's decoding began

    def slow_decode(*args: object, **kwargs: object) -> object:
        seen.append(len(turns))
        time.sleep(0.03)  # a large image: synchronous, the GIL held
        return real_decode(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(step, "decode_image", slow_decode)
    triton, broker = FakeTriton([]), FakeBroker()
    classifier, _ = _classifier(triton, broker)

    async def scenario() -> None:
        done = asyncio.Event()

        async def bystander() -> None:  # stands in for aiokafka's heartbeat task
            while not done.is_set():
                turns.append(1)
                await asyncio.sleep(0)

        watching = asyncio.ensure_future(bystander())
        await asyncio.sleep(0)
        await classifier.process([_event(f"e{i}") for i in range(10)])  # 0.3 s of decoding at least
        done.set()
        await watching

    asyncio.run(scenario())
    assert len(broker.records) == 10
    assert len(seen) == 10 and len(set(seen)) >= 3, f"the loop was not handed over during the batch: {seen}"


def test_images_by_uri_are_read_off_the_loop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import threading

    buffer = io.BytesIO()
    Image.new("L", (8, 8), 200).save(buffer, format="PNG")
    (tmp_path / "a.png").write_bytes(buffer.getvalue())
    triton, broker = FakeTriton([]), FakeBroker()
    classifier, _ = _classifier(triton, broker, image_uri_roots=[str(tmp_path)])
    readers: list[int] = []
    real_read = ImageUriReader.read

    def read(self: ImageUriReader, uri: str, max_bytes: int) -> bytes:
        readers.append(threading.get_ident())
        return real_read(self, uri, max_bytes)

    monkeypatch.setattr(ImageUriReader, "read", read)
    event = ImageEvent("e1", "image/png", b"", image_uri=f"file://{tmp_path}/a.png")
    record = encode_image_event(event).at("images", 0, 1)
    asyncio.run(classifier.process([record]))
    assert [decode_prediction(v).event_id for t, _, v in broker.records if t == "inferloop.predictions"] == ["e1"]
    assert readers and threading.get_ident() not in readers
