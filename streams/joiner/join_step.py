"""The join step: a batch of prediction and feedback records in, labelled examples and dead letters out.

:mod:`streams.joiner.feedback_join` decides every case; this module does the I/O around it (through functions
the Faust app injects, so that it is tested without Faust):

* joined feedback: the input image is read back from the images topic at the position the prediction names,
  and a :class:`~inferloop.events.LabelledExample` goes to the training log, keyed by event id; only once the
  broker acknowledged it is the event marked as logged (a crash in between logs it again: the same record);
* rejected feedback goes to the dead-letter topic with its reason and its original bytes, and so do
  predictions that do not decode (``bad_prediction``...) and examples too large for a record
  (``example_too_large``); once acknowledged, the feedback is settled in the table;
* a timer expires the table (feedback that waited too long, predictions past retention);
* shadow predictions (the candidate in shadow, on the same events) are kept beside the predictions and their
  labels go into the examples, so that the training log scores both versions on the same events;
* online quality (rolling accuracy per version, the candidate in shadow's too; confidence drift) is exported on
  ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import replace

from aiokafka.partitioner import murmur2

from inferloop.errors import EventDecodeError, PoisonError
from inferloop.events import (
    DeadLetter,
    LabelledExample,
    Message,
    Record,
    build_dead_letter,
    decode_feedback,
    decode_image_event,
    decode_prediction,
    encode_dead_letter,
    encode_labelled_example,
)
from inferloop.images.uris import ImageUriReader
from inferloop.kafka.topics import RECORD_OVERHEAD_BYTES
from inferloop.metrics import JoinerMetrics
from inferloop.quality import RollingQuality
from inferloop.settings import Settings
from streams.errors import FeedbackRejected
from streams.joiner.feedback_join import FeedbackJoin, Join, Origin, Outranked, Reject

log = logging.getLogger(__name__)
OTHER = "other"  # the metric label of every model this deployment does not serve
MAX_VERSION_SERIES = 8  # versions of a model with metric series (the least recently updated dropped first)

# (topic, key, value) records -> once every one of them is acknowledged by the broker
SendAllFn = Callable[[list[tuple[str, Message]]], Awaitable[None]]
# [(topic, partition, offset)] -> the record values found there (None: gone)
FetchFn = Callable[[list[tuple[str, int, int]]], Awaitable[dict[tuple[str, int, int], Record | None]]]
# (model name, the version that predicted) -> its class labels (None: unknown now, accept any label)
LabelsFn = Callable[[str, int], Awaitable[frozenset[str] | None]]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner (murmur2) gives ``key``: where every record about one
    event belongs, in every topic the joiner reads and in its table."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


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
        owns: Callable[[bytes], bool] = lambda key: True,
    ) -> None:
        """``owns``: whether an event id's partition is assigned to this instance (the sweep leaves the others)."""
        f = settings.feedback
        self.settings, self.metrics, self.send_all, self.fetch, self.labels_of = (
            settings,
            metrics,
            send_all,
            fetch,
            labels_of,
        )
        self.join = FeedbackJoin(store, retention_s=f.retention_s, wait_s=f.wait_s)
        self.quality = RollingQuality(f.online_window, max_versions=MAX_VERSION_SERIES)
        self.known_models = frozenset({settings.model.name})
        self._exported: set[tuple[str, str]] = set()  # the (model, version) labels of the per-version series
        self.uris = ImageUriReader.from_settings(settings.streams)
        self.clock, self.owns = clock, owns
        # the agent's batches and the sweep timer share the table and the image lookup: one at a time
        self._turn = asyncio.Lock()

    async def process(self, records: Sequence[Record]) -> None:
        async with self._turn:
            await self._process(records)

    async def _process(self, records: Sequence[Record]) -> None:
        s = self.settings
        joins: list[Join] = []  # in order: of two labels for one event, the training log keeps the later
        batch_label: dict[str, tuple[str, bool]] = {}  # the last label joined for each event id in this batch,
        # and whether it came from the trusted topic
        rejects: list[Reject] = []
        for r in records:
            now = self.clock()
            origin = Origin(r.topic, r.partition, r.offset)
            if r.topic == s.streams.shadow_predictions_topic:
                try:
                    shadow = decode_prediction(r.value or b"")
                except EventDecodeError as exc:  # an evaluation, not an output: counted and logged, not joined
                    log.warning("skipping shadow prediction %s[%d]@%d: %s", r.topic, r.partition, r.offset, exc)
                    continue
                self.metrics.shadow_predictions_seen.inc()
                self.join.on_shadow(shadow, now)
                continue
            if r.topic == s.streams.predictions_topic:
                try:
                    prediction = decode_prediction(r.value or b"")
                except EventDecodeError as exc:  # nothing to join feedback with: dead-lettered, not skipped
                    key = (r.key or b"").decode("utf-8", "replace")[:200]
                    rejects.append(Reject(key, exc, origin, r.value or b""))
                    continue
                self.metrics.predictions_seen.inc()
                model = self._model_label(prediction.model_name)
                self.quality.record_prediction(model, prediction.model_version, prediction.scores[0])
                joined = self.join.on_prediction(prediction, now)
                if joined is not None:
                    joins.append(joined)
                    batch_label[joined.event_id] = (joined.label, joined.trusted)
                continue
            self.metrics.feedback_received.inc()
            try:
                feedback = decode_feedback(r.value)
            except EventDecodeError as exc:
                key = (r.key or b"").decode("utf-8", "replace")[:200]
                rejects.append(Reject(key, exc, origin, r.value or b""))
                continue
            event_key = feedback.event_id.encode()
            if r.key != event_key or r.partition != partition_of(event_key, s.streams.partitions):
                # the table and the predictions are placed by murmur2 of the event id: feedback elsewhere (keyed
                # by something else, or placed by another client's partitioner) would wait where its prediction
                # never comes, or on an instance that never sweeps it; dead-lettered, it is replayed in place
                where = f"partition {r.partition} with key {(r.key or b'').decode('utf-8', 'replace')[:200]!r}"
                belongs = partition_of(event_key, s.streams.partitions)
                message = (
                    f"feedback for event {feedback.event_id} came on {where}; it belongs on partition {belongs}, "
                    "keyed by the event id (murmur2, as the Java client places it)"
                )
                rejects.append(
                    Reject(feedback.event_id, FeedbackRejected("misplaced_feedback", message), origin, r.value or b"")
                )
                continue
            trusted = r.topic == s.feedback.trusted_topic  # trust comes from the topic, never from a field
            earlier = batch_label.get(feedback.event_id)
            if earlier is not None and earlier[0] == feedback.label and (earlier[1] or not trusted):
                self.metrics.feedback_outcomes.labels("duplicate").inc()
                continue
            outcome = self.join.on_feedback(feedback, origin, r.value or b"", now, trusted)
            if isinstance(outcome, Reject):
                rejects.append(outcome)
            elif isinstance(outcome, Outranked):
                self.metrics.feedback_outcomes.labels("outranked").inc()
            elif isinstance(outcome, Join):
                if feedback.event_id in batch_label:  # a correction of a label joined earlier in this batch
                    outcome = replace(outcome, correction=True)
                joins.append(outcome)
                batch_label[feedback.event_id] = (feedback.label, trusted)
            else:
                entry = self.join.get(feedback.event_id)
                waits = entry is not None and entry.pending is not None
                self.metrics.feedback_outcomes.labels("waiting" if waits else "duplicate").inc()
        await self._log(joins, rejects)
        self._export()

    async def sweep(self) -> None:
        async with self._turn:
            joins, rejects = self.join.sweep(self.clock(), self.owns)
            if joins or rejects:
                await self._log(joins, rejects)
            self._export()

    # -- output -----------------------------------------------------------------------------------------------

    async def _log(self, joins: list[Join], rejects: list[Reject]) -> None:
        examples: list[tuple[Join, LabelledExample, Message]] = []
        if joins:
            images = await self.fetch(
                [
                    (j.predicted.image_topic, j.predicted.image_partition, j.predicted.image_offset)
                    for j in joins
                    if j.predicted.image_topic == self.settings.streams.images_topic
                    and j.predicted.image_partition is not None
                    and j.predicted.image_offset is not None
                ]
            )
            for j in joins:
                example = await self._example(j, images)
                if isinstance(example, Reject):
                    rejects.append(example)
                    continue
                value = encode_labelled_example(example)
                if value.size + RECORD_OVERHEAD_BYTES > self.settings.streams.max_request_bytes:
                    message = (
                        f"the {value.size}-byte training-log record does not fit the "
                        f"{self.settings.streams.max_request_bytes}-byte record limit"
                    )
                    rejects.append(
                        Reject(j.event_id, FeedbackRejected("example_too_large", message), j.origin, j.original)
                    )
                    continue
                examples.append((j, example, value))
        f, s = self.settings.feedback, self.settings.streams
        records = [(f.training_log_topic, value) for j, _, value in examples]
        records += [
            (s.dead_letter_topic, Message(r.event_id.encode(), encode_dead_letter(self._dead_letter(r))))
            for r in rejects
        ]
        if not records:
            return
        await self.send_all(records)  # the agent bounds the whole batch (streams.faust_app.process_batches)
        for j, e, _ in examples:  # acknowledged: only now is the event marked as logged
            self.join.mark_logged(j)
            self.metrics.feedback_outcomes.labels("correction" if j.correction else "joined").inc()
            model = self._model_label(e.model_name)
            self.quality.record_label(model, e.model_version, e.correct)
            if e.shadow_version is not None and e.shadow_correct is not None:
                self.quality.record_label(model, e.shadow_version, e.shadow_correct)
            self.metrics.examples_logged.labels(model, str(e.model_version)).inc()
            self._exported.add((model, str(e.model_version)))
        for r in rejects:
            self.join.mark_settled(r)
            self.metrics.dead_letters.labels(r.reason).inc()

    async def _example(self, j: Join, images: dict[tuple[str, int, int], Record | None]) -> LabelledExample | Reject:
        p = j.predicted
        labels = await self.labels_of(p.model_name, p.model_version)
        if labels is not None and j.label not in labels:
            message = f"label {j.label!r} is not one of model {p.model_name!r}'s labels {sorted(labels)}"
            return Reject(j.event_id, FeedbackRejected("unknown_label", message), j.origin, j.original)
        where = (p.image_topic or "", p.image_partition or 0, p.image_offset or 0)
        # only the images topic is read back: a prediction naming another topic gets nothing from it
        record = images.get(where) if p.image_topic == self.settings.streams.images_topic else None
        try:
            if record is None:
                raise FeedbackRejected("image_unavailable", f"the image of event {j.event_id} is no longer in {where}")
            event = decode_image_event(record)
            if event.event_id != j.event_id:
                raise FeedbackRejected("image_unavailable", f"{where} holds event {event.event_id}, not {j.event_id}")
            image = event.image or await self.uris.read_off_loop(
                event.image_uri or "", self.settings.streams.max_image_bytes
            )
        except PoisonError as exc:  # whatever is wrong with the image, the example cannot be logged without it
            return Reject(j.event_id, FeedbackRejected("image_unavailable", str(exc)), j.origin, j.original)
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
            shadow_version=j.shadow.model_version if j.shadow is not None else None,
            shadow_label=j.shadow.label if j.shadow is not None else "",
            feedback_trusted=j.trusted,
        )

    def _dead_letter(self, r: Reject) -> DeadLetter:
        origin = Record(r.origin.topic, r.origin.partition, r.origin.offset, r.event_id.encode() or None, r.original)
        s = self.settings.streams
        room = s.max_request_bytes - RECORD_OVERHEAD_BYTES - len(r.event_id.encode())
        return build_dead_letter(r.error, origin, r.event_id or None, s.dead_letter_max_original_bytes, room)

    def _model_label(self, name: str) -> str:
        """``name`` if this deployment serves that model, else :data:`OTHER`: the names on the predictions topic
        are whatever its writers put there, and metric labels must stay few."""
        return name if name in self.known_models else OTHER

    def _export(self) -> None:
        self.metrics.table_entries.set(len(self.join))
        m = self.metrics
        snapshot = self.quality.snapshot()
        current = {(q.model, str(q.version)) for q in snapshot}
        for labels in self._exported - current:  # versions no longer tracked: their series go too
            for gauge in (m.online_accuracy, m.online_labelled, m.confidence, m.confidence_drift, m.examples_logged):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        self._exported = current
        for q in snapshot:
            labels = (q.model, str(q.version))
            if q.accuracy is not None:
                self.metrics.online_accuracy.labels(*labels).set(q.accuracy)
            self.metrics.online_labelled.labels(*labels).set(q.labelled)
            if q.confidence is not None:
                self.metrics.confidence.labels(*labels).set(q.confidence)
            if q.confidence_drift is not None:
                self.metrics.confidence_drift.labels(*labels).set(q.confidence_drift)
