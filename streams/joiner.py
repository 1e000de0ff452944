"""The joiner: feedback joined with predictions and input images, logged as labelled examples for the trainer.

A Faust app of its own (``inferloop joiner``, group ``feedback.app_id``), so that it scales and fails apart from
the classify workers. One agent consumes the predictions and the feedback topics (both keyed by event id, with
the same partitions, so an event's prediction and feedback meet in one partition) and keeps its state in a
Faust table (``<app_id>-join-changelog``, compacted, recovered on start). :mod:`streams.join` decides every
case; this module does the I/O:

* joined feedback: the input image is read back from the images topic at the position the prediction names,
  and a :class:`~streams.events.LabelledExample` goes to the training log, keyed by event id; only once the
  broker acknowledged it is the event marked as logged (a crash in between logs it again: the same record);
* rejected feedback goes to the dead-letter topic with its reason and its original bytes;
* a timer expires the table (feedback that waited too long, predictions past retention);
* online quality (rolling accuracy per version, confidence drift) is exported on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from streams.events import (
    DeadLetter,
    EventDecodeError,
    LabelledExample,
    decode_feedback,
    decode_image_event,
    decode_prediction,
    encode_dead_letter,
    encode_labelled_example,
)
from streams.image_uris import UriNotAllowed, UriUnreadable
from streams.images import ImageRejected
from streams.join import FeedbackJoin, Join, Origin, Reject
from streams.metrics import JoinerMetrics
from streams.quality import RollingQuality
from streams.settings import Settings

log = logging.getLogger(__name__)

# (topic, key, value) records -> once every one of them is acknowledged by the broker
SendAllFn = Callable[[list[tuple[str, bytes, bytes]]], Awaitable[None]]
# [(topic, partition, offset)] -> the record values found there (None: gone)
FetchFn = Callable[[list[tuple[str, int, int]]], Awaitable[dict[tuple[str, int, int], bytes | None]]]
# model name -> its class labels (None: unknown now, accept any label)
LabelsFn = Callable[[str], Awaitable[frozenset[str] | None]]


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Joiner:
    """Processes batches of records from the predictions and feedback topics."""

    def __init__(
        self,
        settings: Settings,
        store: MutableMapping[bytes, bytes],
        metrics: JoinerMetrics,
        send_all: SendAllFn,
        fetch: FetchFn,
        labels_of: LabelsFn,
        clock: Callable[[], float] = time.time,
    ) -> None:
        f = settings.feedback
        self.settings, self.metrics, self.send_all, self.fetch, self.labels_of = (
            settings,
            metrics,
            send_all,
            fetch,
            labels_of,
        )
        self.join = FeedbackJoin(store, retention_s=f.retention_s, wait_s=f.wait_s)
        self.quality = RollingQuality(f.online_window)
        self.uris = settings.streams.image_uris()
        self.clock = clock

    async def process(self, records: Sequence[Record]) -> None:
        s = self.settings
        joins: list[Join] = []  # in order: of two labels for one event, the training log keeps the later
        batch_label: dict[str, str] = {}  # the last label joined for each event id in this batch
        rejects: list[Reject] = []
        for r in records:
            now = self.clock()
            origin = Origin(r.topic, r.partition, r.offset)
            if r.topic == s.streams.predictions_topic:
                try:
                    prediction = decode_prediction(r.value or b"")
                except EventDecodeError as exc:
                    log.warning("skipping an undecodable prediction at %s[%d]@%d: %s", *origin.__dict__.values(), exc)
                    continue
                self.metrics.predictions_seen.inc()
                self.quality.record_prediction(prediction.model_name, prediction.model_version, prediction.scores[0])
                joined = self.join.on_prediction(prediction, now)
                if joined is not None:
                    joins.append(joined)
                    batch_label[joined.event_id] = joined.label
                continue
            self.metrics.feedback_received.inc()
            try:
                feedback = decode_feedback(r.value)
            except EventDecodeError as exc:
                key = (r.key or b"").decode("utf-8", "replace")[:200]
                rejects.append(Reject(key, exc.reason, str(exc), origin, r.value or b""))
                continue
            if batch_label.get(feedback.event_id) == feedback.label:
                self.metrics.feedback_outcomes.labels("duplicate").inc()
                continue
            outcome = self.join.on_feedback(feedback, origin, r.value or b"", now)
            if isinstance(outcome, Reject):
                rejects.append(outcome)
            elif isinstance(outcome, Join):
                if feedback.event_id in batch_label:  # a correction of a label joined earlier in this batch
                    outcome = replace(outcome, correction=True)
                joins.append(outcome)
                batch_label[feedback.event_id] = feedback.label
            else:
                entry = self.join.get(feedback.event_id)
                waits = entry is not None and entry.pending is not None
                self.metrics.feedback_outcomes.labels("waiting" if waits else "duplicate").inc()
        await self._log(joins, rejects)
        self._export()

    async def sweep(self) -> None:
        rejects = self.join.sweep(self.clock())
        if rejects:
            await self._log([], rejects)
        self._export()

    # -- output -----------------------------------------------------------------------------------------------

    async def _log(self, joins: list[Join], rejects: list[Reject]) -> None:
        examples: list[tuple[Join, LabelledExample]] = []
        if joins:
            images = await self.fetch(
                [
                    (j.predicted.image_topic, j.predicted.image_partition, j.predicted.image_offset)
                    for j in joins
                    if j.predicted.image_topic is not None
                    and j.predicted.image_partition is not None
                    and j.predicted.image_offset is not None
                ]
            )
            for j in joins:
                example = await self._example(j, images)
                if isinstance(example, Reject):
                    rejects.append(example)
                else:
                    examples.append((j, example))
        f, s = self.settings.feedback, self.settings.streams
        records = [(f.training_log_topic, j.event_id.encode(), encode_labelled_example(e)) for j, e in examples]
        records += [
            (s.dead_letter_topic, r.event_id.encode(), encode_dead_letter(self._dead_letter(r))) for r in rejects
        ]
        if not records:
            return
        await self.send_all(records)
        for j, e in examples:  # acknowledged: only now is the event marked as logged
            self.join.mark_logged(j)
            self.metrics.examples_logged.labels(e.model_name, str(e.model_version)).inc()
            self.metrics.feedback_outcomes.labels("correction" if j.correction else "joined").inc()
            self.quality.record_label(e.model_name, e.model_version, e.correct)
        for r in rejects:
            self.metrics.dead_letters.labels(r.reason).inc()

    async def _example(self, j: Join, images: dict[tuple[str, int, int], bytes | None]) -> LabelledExample | Reject:
        p = j.predicted
        labels = await self.labels_of(p.model_name)
        if labels is not None and j.label not in labels:
            return Reject(
                j.event_id,
                "unknown_label",
                f"label {j.label!r} is not one of model {p.model_name!r}'s labels {sorted(labels)}",
                j.origin,
                j.original,
            )
        where = (p.image_topic or "", p.image_partition or 0, p.image_offset or 0)
        frame = images.get(where) if p.image_topic is not None else None
        try:
            if frame is None:
                raise EventDecodeError("image_unavailable", f"the image of event {j.event_id} is no longer in {where}")
            event = decode_image_event(frame)
            if event.event_id != j.event_id:
                raise EventDecodeError("image_unavailable", f"{where} holds event {event.event_id}, not {j.event_id}")
            image = event.image or self.uris.read(event.image_uri or "", self.settings.streams.max_image_bytes)
        except (EventDecodeError, UriNotAllowed, UriUnreadable, ImageRejected) as exc:
            return Reject(j.event_id, "image_unavailable", str(exc), j.origin, j.original)
        if len(image) > self.settings.streams.max_request_bytes - 4096:
            return Reject(
                j.event_id,
                "image_too_large",
                f"the {len(image)}-byte image does not fit a training-log record "
                f"({self.settings.streams.max_request_bytes} bytes)",
                j.origin,
                j.original,
            )
        return LabelledExample(
            event_id=j.event_id,
            label=j.label,
            content_type=event.content_type,
            image=image,
            predicted_label=p.label,
            predicted_score=p.score,
            model_name=p.model_name,
            model_version=p.model_version,
            feedback_source=j.feedback_source,
            feedback_at_ms=j.feedback_at_ms,
            predicted_at_ms=p.predicted_at_ms,
        )

    def _dead_letter(self, r: Reject) -> DeadLetter:
        keep = len(r.original) <= self.settings.streams.dead_letter_max_original_bytes
        return DeadLetter(
            reason=r.reason,
            message=r.message,
            origin_topic=r.origin.topic,
            origin_partition=r.origin.partition,
            origin_offset=r.origin.offset,
            event_id=r.event_id or None,
            original=r.original if keep else None,
        )

    def _export(self) -> None:
        self.metrics.table_entries.set(len(self.join))
        for q in self.quality.snapshot():
            labels = (q.model, str(q.version))
            if q.accuracy is not None:
                self.metrics.online_accuracy.labels(*labels).set(q.accuracy)
            self.metrics.online_labelled.labels(*labels).set(q.labelled)
            if q.confidence is not None:
                self.metrics.confidence.labels(*labels).set(q.confidence)
            if q.confidence_drift is not None:
                self.metrics.confidence_drift.labels(*labels).set(q.confidence_drift)


class ImageLookup:
    """Reads image events back from the images topic by position, with a consumer of its own (no group)."""

    SCAN_GAP = 500  # read on through gaps up to this many records rather than seek again

    def __init__(self, connection: dict[str, Any], max_fetch_bytes: int) -> None:
        self.connection, self.max_fetch_bytes = connection, max_fetch_bytes
        self._consumer: Any = None

    async def _ensure(self) -> Any:
        if self._consumer is None:
            from aiokafka import AIOKafkaConsumer

            self._consumer = AIOKafkaConsumer(
                **self.connection,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=max(self.max_fetch_bytes, 1024 * 1024),
                fetch_max_wait_ms=100,
            )
            await self._consumer.start()
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def __call__(self, wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], bytes | None]:
        from aiokafka import TopicPartition

        found: dict[tuple[str, int, int], bytes | None] = {w: None for w in wanted}
        if not wanted:
            return found
        consumer = await self._ensure()
        by_tp: dict[Any, list[int]] = {}
        for topic, partition, offset in wanted:
            by_tp.setdefault(TopicPartition(topic, partition), []).append(offset)
        consumer.assign(list(by_tp))
        for tp, offsets in by_tp.items():
            todo = sorted(set(offsets))
            while todo:
                consumer.seek(tp, todo[0])
                last = todo[0] - 1
                while todo and todo[0] <= last + self.SCAN_GAP:
                    batch = (await consumer.getmany(tp, timeout_ms=2000, max_records=1000)).get(tp, [])
                    if not batch:
                        last = todo[-1]  # nothing more to read there: what is left is gone
                        break
                    for record in batch:
                        if (tp.topic, tp.partition, record.offset) in found:
                            found[(tp.topic, tp.partition, record.offset)] = record.value
                    last = batch[-1].offset
                    todo = [o for o in todo if o > last]
                todo = [o for o in todo if o > last]
        return found


class TritonLabels:
    """The class labels of each model, from Triton's model config, cached for a while."""

    def __init__(self, grpc_url: str, ttl_s: float = 30.0, options: dict[str, Any] | None = None) -> None:
        self.grpc_url, self.ttl_s, self.options = grpc_url, ttl_s, options or {}
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}

    async def __call__(self, model: str) -> frozenset[str] | None:
        from streams.inference import TritonInference, TritonRequestFailed, TritonUnavailable

        cached = self._cache.get(model)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        client = TritonInference(self.grpc_url, model, options=self.options)
        try:
            labels = frozenset((await client.contract()).labels)
        except (TritonUnavailable, TritonRequestFailed) as exc:
            log.warning("cannot read the labels of %s from Triton (%s); labels go unchecked", model, exc)
            return cached[1] if cached else None
        finally:
            await client.close()
        self._cache[model] = (time.monotonic(), labels)
        return labels


def create_joiner_app(settings: Settings, registry: Any = None) -> Any:
    from prometheus_client import CollectorRegistry

    from streams.app import faust_app, observe

    s, f = settings.streams, settings.feedback
    # no standby replicas: the timer sweeps the table of the partitions this instance owns, and only those
    app = faust_app(settings, f.app_id, table_standby_replicas=0)
    table = app.Table(
        "join", default=None, key_type=bytes, value_type=bytes, partitions=s.partitions, use_partitioner=True
    )
    metrics = JoinerMetrics(registry or CollectorRegistry())
    lookup = ImageLookup(settings.kafka.aiokafka_options(), s.max_request_bytes)

    async def send_all(records: list[tuple[str, bytes, bytes]]) -> None:
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # the aiokafka producer
        futures = [await producer.send(topic, value=value, key=key) for topic, key, value in records]
        await asyncio.gather(*futures)

    joiner = Joiner(
        settings,
        table,
        metrics,
        send_all,
        lookup,
        TritonLabels(settings.triton.grpc_url, options=settings.triton.grpc_client_options()),
    )
    app.inferloop_joiner = joiner  # type: ignore[attr-defined]

    topics = app.topic(s.predictions_topic, f.topic, key_type=bytes, value_type=bytes)

    @app.agent(topics, concurrency=1)
    async def join(stream: Any) -> None:
        try:
            async for events in stream.take_events(256, within=0.1):
                await joiner.process(
                    [Record(e.message.topic, e.message.partition, e.message.offset, e.key, e.value) for e in events]
                )
        finally:
            await lookup.close()

    @app.timer(f.sweep_interval_s)  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return  # the table is not whole yet
        await joiner.sweep()

    observe(app, f.app_id, metrics.registry, metrics.consumer_lag, {s.predictions_topic, f.topic}, f.metrics_port)
    return app


def run_joiner(settings: Settings, loglevel: str = "WARNING") -> None:
    """Run the joiner in the foreground until SIGTERM/SIGINT."""
    from streams.app import run_app
    from streams.topics import ensure_topics

    ensure_topics(settings)
    run_app(create_joiner_app(settings), loglevel)
