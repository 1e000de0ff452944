"""The classify step: one batch of raw image events in, predictions and dead letters out, nothing lost.

:meth:`Classifier.process` never raises for a bad event: poison input becomes a dead letter with a specific
reason. An unavailable Triton (or broker) is retried with back-off, which holds the batch and so pauses
consumption, for up to ``streams.outage_timeout_s``; then :class:`~streams.errors.DependencyOutage` is raised
and the worker exits without committing the batch (docs/reliability.md, "Outages"). Outputs are handed to the
producer without waiting for each acknowledgement (that would serialise batches on broker round trips); faust
flushes the producer before it commits offsets, so offsets are never committed ahead of their outputs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from inferloop.errors import PoisonError
from inferloop.events import (
    DeadLetter,
    ImageEvent,
    Prediction,
    Promotion,
    Record,
    build_dead_letter,
    decode_image_event,
    encode_dead_letter,
    encode_prediction,
    now_ms,
)
from inferloop.images.decode import ImageLimits, decode_image
from inferloop.images.preprocess import InputSpec, to_model_input
from inferloop.images.uris import ImageUriReader
from inferloop.kafka.topics import RECORD_OVERHEAD_BYTES
from inferloop.metrics import WorkerMetrics
from inferloop.settings import Settings
from inferloop.triton.errors import TritonRequestFailed, TritonUnavailable
from inferloop.triton.inference import TritonInference
from inferloop.triton.signature import ModelSignature
from streams.errors import DependencyOutage, InferenceFailed, NotPromoted, UnexpectedInputError
from streams.faust_app import EXIT_BEFORE_COMMIT, EXIT_OUTAGE, exit_before_commit, is_outage

log = logging.getLogger(__name__)

# (topic, [(key, value), ...]) -> one awaitable per record, resolved once the broker acknowledged it (records
# sent in one batch share an awaitable)
SendFn = Callable[[str, list[tuple[bytes, bytes]]], Awaitable[list[Awaitable[Any]]]]
# model name -> its announced state (None: not known yet); the worker's PromotionWatcher
PromotedFn = Callable[[str], Promotion | None]
REQUEST_FAILURES_BEFORE_DEAD_LETTER = 3
# The batch is decoded on the loop that also heartbeats and fetches for the consumer group: decoding hands the loop
# over at least this often (a batch of large images takes seconds), and reads by URI run in a thread (I/O).
DECODE_SLICE_S = 0.05
# When the batch being processed first waited for a dependency (empty: it has not): set per batch, shared by the
# tasks the batch spawns (a context is copied into each task, the list in it is not)
_outage_since: ContextVar[list[float]] = ContextVar("outage_since")


@dataclass(frozen=True)
class Decoded:
    raw: Record
    event: ImageEvent
    pixels: NDArray[np.float32]
    received_at_ms: int


class Classifier:
    """Turns batches of raw events into predictions and dead letters."""

    def __init__(
        self,
        settings: Settings,
        triton: TritonInference,
        metrics: WorkerMetrics,
        send: SendFn,
        promoted: PromotedFn,
    ) -> None:
        s = settings.streams
        self.settings, self.triton, self.metrics, self.send = settings, triton, metrics, send
        self.promoted = promoted
        self.limits = ImageLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
        self.uris = ImageUriReader.from_settings(s)
        self.signature: ModelSignature | None = None
        self.on_delivery_failure: Callable[[Prediction | DeadLetter, BaseException], None] = exit_on_delivery_failure
        self._stopping = False

    def stop(self) -> None:
        """Give up retrying (worker shutdown): the unfinished batch is not acknowledged, so it is redelivered."""
        self._stopping = True

    # -- the batch --------------------------------------------------------------------------------------------

    async def process(self, batch: Sequence[Record]) -> None:
        received_at = now_ms()
        self.metrics.events_received.inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        self.metrics.in_flight.inc(len(batch))
        _outage_since.set([])  # this batch's own clock (batches in flight together each have theirs)
        try:
            signature = await self._signature()
            # Decoding runs on the loop, not in a thread: it is pure CPU work under the GIL, and handing batches
            # to a thread measured 30 % slower (2.75k vs 4.1k images/s) from GIL hand-offs between the threads.
            good, dead = await self._decode_all(batch, signature, received_at)
            promotion = self.promoted(self.settings.model.name)
            if promotion is None or promotion.shadow is None:  # the usual state between retrainings
                predictions, shadow = await self._predict(good, dead), []
            else:  # the candidate in shadow answers beside the serving version, never after it, only for so long
                shadowing = asyncio.ensure_future(self._shadow(good, promotion))
                try:
                    predictions = await self._predict(good, dead)
                    shadow = await self._shadow_within(shadowing)
                finally:
                    shadowing.cancel()  # the batch failed (it is redelivered): its evaluation goes with it
            await self._publish(predictions, dead, shadow)
        finally:
            self.metrics.in_flight.dec(len(batch))

    async def _decode_all(
        self, batch: Sequence[Record], signature: ModelSignature, received_at: int
    ) -> tuple[list[Decoded], list[DeadLetter]]:
        spec = InputSpec(*signature.input_shape)
        good: list[Decoded] = []
        dead: list[DeadLetter] = []
        slice_began = time.perf_counter()
        for raw in batch:
            if time.perf_counter() - slice_began > DECODE_SLICE_S:
                await asyncio.sleep(0)  # heartbeats, fetches and Triton's answers get their turn
                slice_began = time.perf_counter()
            event: ImageEvent | None = None
            try:
                event = decode_image_event(raw)
                data = event.image or await self.uris.read_off_loop(event.image_uri or "", self.limits.max_bytes)
                image = decode_image(data, event.content_type, self.limits)
                good.append(Decoded(raw, event, to_model_input(image, spec), received_at))
            except PoisonError as exc:
                dead.append(self._dead_letter(raw, event, exc))
            except Exception as exc:  # a decoder bug must not lose the event: it is dead-lettered too
                log.exception("unexpected error decoding %s[%d]@%d", raw.topic, raw.partition, raw.offset)
                dead.append(self._dead_letter(raw, event, UnexpectedInputError(f"{type(exc).__name__}: {exc}")))
        return good, dead

    def _dead_letter(self, raw: Record, event: ImageEvent | None, error: PoisonError) -> DeadLetter:
        event_id = event.event_id if event is not None else _key_text(raw.key)
        s = self.settings.streams
        room = s.max_request_bytes - RECORD_OVERHEAD_BYTES - len((event_id or "").encode())
        return build_dead_letter(error, raw, event_id, s.dead_letter_max_original_bytes, room)

    # -- inference --------------------------------------------------------------------------------------------

    async def _retry_pause(self, reason: str, delay: float, exc: Exception) -> float:
        """Wait ``delay`` before the next try; raises :class:`DependencyOutage` once this batch has waited
        ``streams.outage_timeout_s`` in all (the agent then exits without committing it)."""
        if self._stopping:
            raise asyncio.CancelledError
        now, budget = time.monotonic(), self.settings.streams.outage_timeout_s
        since = _outage_since.get()
        if not since:
            since.append(now)
        elif now - since[0] >= budget:
            raise DependencyOutage(f"{exc}: still failing after {budget:g} s (streams.outage_timeout_s)")
        self.metrics.retries.labels(reason).inc()
        log.warning("%s; retrying in %.1f s (consumption paused)", exc, delay)
        await asyncio.sleep(delay)
        return min(delay * 2, self.settings.streams.retry_max_s)

    async def _signature(self) -> ModelSignature:
        delay = self.settings.streams.retry_initial_s
        while self.signature is None:
            try:
                self.signature = await self.triton.signature()
            except (TritonUnavailable, TritonRequestFailed) as exc:
                delay = await self._retry_pause("contract", delay, exc)  # the metric label predates the name
        return self.signature

    async def _promotion(self) -> Promotion:
        """The model's announced state; waits (paused, within the outage budget) until there is one."""
        delay = self.settings.streams.retry_initial_s
        model = self.settings.model.name
        while True:
            promotion = self.promoted(model)
            if promotion is not None:
                return promotion
            missing = NotPromoted(
                f"no version of {model} is announced on {self.settings.model.promotions_topic} yet "
                "(`inferloop train --bootstrap` or `inferloop promote VERSION`)"
            )
            delay = await self._retry_pause("promotion", delay, missing)

    async def _infer(self, x: NDArray[np.float32]) -> tuple[NDArray[np.float32], int, ModelSignature] | None:
        """Scores from the promoted version (asked for by number), that version and the signature they follow;
        None after repeated request failures. A promotion announced meanwhile is followed at the next try."""
        delay = self.settings.streams.retry_initial_s
        failures = 0
        while True:
            signature = await self._signature()
            version = (await self._promotion()).serving
            try:
                started = time.perf_counter()
                scores, served = await self.triton.infer(signature, x, version)
                self.metrics.triton_latency.observe(time.perf_counter() - started)
                if served != version:
                    raise TritonRequestFailed(signature.model, "inference", f"asked for {version}, {served} answered")
                if scores.shape[-1] != len(signature.labels):
                    raise TritonRequestFailed(signature.model, "inference", "output width differs from the labels")
                return scores, served, signature
            except TritonUnavailable as exc:
                delay = await self._retry_pause("unavailable", delay, exc)
            except TritonRequestFailed as exc:
                failures += 1
                self.signature = None  # a new version may have a new signature
                if failures >= REQUEST_FAILURES_BEFORE_DEAD_LETTER:
                    log.error("inference failed %d times: %s", failures, exc)
                    return None
                delay = await self._retry_pause("request_failed", delay, exc)

    def _in_shadow_sample(self, event_id: str) -> bool:
        """Whether an event is scored in shadow too: a fixed share by event id, the same on every worker."""
        fraction = self.settings.streams.shadow_fraction
        return fraction >= 1.0 or zlib.crc32(event_id.encode()) % 10_000 < fraction * 10_000

    async def _shadow(self, good: list[Decoded], promotion: Promotion | None) -> list[Prediction]:
        """The candidate in shadow on its sample of ``good`` (one try: a failure costs only the evaluation)."""
        if promotion is None or promotion.shadow is None or self.signature is None:
            return []
        signature, version = self.signature, promotion.shadow
        sample = [d for d in good if self._in_shadow_sample(d.event.event_id)]
        if not sample:
            return []
        parts = self._chunks(sample)

        async def one(part: list[Decoded]) -> tuple[NDArray[np.float32], int]:
            return await self.triton.infer(signature, np.stack([d.pixels for d in part]), version)

        results = await asyncio.gather(*(one(part) for part in parts), return_exceptions=True)
        shadow: list[Prediction] = []
        for part, result in zip(parts, results, strict=True):
            if (
                isinstance(result, BaseException)
                or result[1] != version
                or result[0].shape[-1] != len(signature.labels)
            ):
                self.metrics.shadow_failures.labels(signature.model).inc()
                log.warning("shadow inference on version %d failed: %r", version, result)
                continue
            shadow.extend(self._predictions(part, result[0], version, signature))
        return shadow

    def _chunks(self, decoded: list[Decoded]) -> list[list[Decoded]]:
        """``decoded`` in requests of at most the model's max batch size."""
        size = (self.signature.max_batch_size if self.signature else len(decoded)) or len(decoded)
        return [decoded[start : start + size] for start in range(0, len(decoded), size)]

    async def _shadow_within(self, shadowing: asyncio.Future[list[Prediction]]) -> list[Prediction]:
        """The shadow's predictions if they come within ``streams.shadow_timeout_s`` of the batch's own; a
        slower shadow costs only its evaluation (counted), never the batch."""
        try:
            return await asyncio.wait_for(shadowing, self.settings.streams.shadow_timeout_s)
        except TimeoutError:
            self.metrics.shadow_failures.labels(self.settings.model.name).inc()
            log.warning("shadow inference took over %g s: skipped", self.settings.streams.shadow_timeout_s)
            return []

    async def _predict(self, good: list[Decoded], dead: list[DeadLetter]) -> list[Prediction]:
        """Predictions of the promoted version; the events it repeatedly refuses are dead-lettered."""
        predictions: list[Prediction] = []
        if not good:
            return predictions
        parts = self._chunks(good)
        # The chunks of one batch are in flight together: Triton runs them on its instances concurrently.
        results = await asyncio.gather(*(self._infer(np.stack([d.pixels for d in part])) for part in parts))
        for part, result in zip(parts, results, strict=True):
            if result is None:
                refused = InferenceFailed("Triton refused the request repeatedly")
                dead.extend(self._dead_letter(d.raw, d.event, refused) for d in part)
                continue
            scores, version, signature = result
            self.metrics.serving_version.labels(signature.model).set(version)
            predictions.extend(self._predictions(part, scores, version, signature))
        return predictions

    def _predictions(
        self, part: list[Decoded], scores: NDArray[np.float32], version: int, signature: ModelSignature
    ) -> list[Prediction]:
        order = np.argsort(-scores, axis=1)[:, : self.settings.streams.top_k]
        predicted_at = now_ms()
        return [
            Prediction(
                event_id=d.event.event_id,
                model_name=signature.model,
                model_version=version,
                labels=[signature.labels[i] for i in idx],
                scores=[round(float(row[i]), 6) for i in idx],
                produced_at_ms=d.event.produced_at_ms,
                received_at_ms=d.received_at_ms,
                predicted_at_ms=predicted_at,
                source=d.event.source,
                image_topic=d.raw.topic,
                image_partition=d.raw.partition,
                image_offset=d.raw.offset,
            )
            for d, row, idx in zip(part, scores, order, strict=True)
        ]

    # -- output -----------------------------------------------------------------------------------------------

    async def _publish(
        self, predictions: list[Prediction], dead: list[DeadLetter], shadow: Sequence[Prediction] = ()
    ) -> None:
        """Hand every output to the producer; delivery is confirmed asynchronously.

        The stream acknowledges the batch's events when this returns, but offsets are only committed after the
        producer is flushed (faust flushes before every commit), so no offset is committed ahead of its
        outputs. A record the broker refuses after all of the producer's retries calls ``on_delivery_failure``
        (by default the worker exits at once, before any further commit, and the events are redelivered).
        """
        s = self.settings.streams
        outgoing: list[tuple[str, list[Prediction | DeadLetter], list[tuple[bytes, bytes]]]] = [
            (
                s.predictions_topic,
                list(predictions),
                [(p.event_id.encode(), encode_prediction(p)) for p in predictions],
            ),
            (s.dead_letter_topic, list(dead), [((d.event_id or "").encode(), encode_dead_letter(d)) for d in dead]),
            (
                s.shadow_predictions_topic,
                list(shadow),
                [(p.event_id.encode(), encode_prediction(p)) for p in shadow],
            ),
        ]
        for topic, outputs, records in outgoing:
            if not records:
                continue
            delay = s.retry_initial_s
            while True:
                try:
                    deliveries = await self.send(topic, records)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the producer refused at once (buffer full, broker gone): try again
                    delay = await self._retry_pause("produce", delay, exc)
            grouped: dict[int, tuple[Awaitable[Any], list[Prediction | DeadLetter]]] = {}
            for delivery, output in zip(deliveries, outputs, strict=True):
                grouped.setdefault(id(delivery), (delivery, []))[1].append(output)
            for delivery, group in grouped.values():
                asyncio.ensure_future(delivery).add_done_callback(
                    self._delivered(group, shadow=topic == s.shadow_predictions_topic)
                )

    def _delivered(
        self, outputs: list[Prediction | DeadLetter], shadow: bool = False
    ) -> Callable[[asyncio.Future[Any]], None]:
        def done(delivery: asyncio.Future[Any]) -> None:
            if delivery.cancelled() or delivery.exception() is not None:
                self.on_delivery_failure(outputs[0], delivery.exception() or asyncio.CancelledError())
                return
            now = time.time()
            for output in outputs:
                if isinstance(output, Prediction) and shadow:
                    self.metrics.shadow_predictions.labels(output.model_name, str(output.model_version)).inc()
                elif isinstance(output, Prediction):
                    self.metrics.predictions.labels(output.model_name, str(output.model_version)).inc()
                    self.metrics.end_to_end.observe(max(0.0, now - output.produced_at_ms / 1000))
                else:
                    self.metrics.dead_letters.labels(output.reason).inc()

        return done


def exit_on_delivery_failure(output: Prediction | DeadLetter, exc: BaseException) -> None:
    """Stop the worker at once, before it can commit an offset past an output the broker never took (code 75
    when the broker was unavailable for the outage budget, 70 when it refused)."""
    code = EXIT_OUTAGE if is_outage(exc) else EXIT_BEFORE_COMMIT
    exit_before_commit(f"the broker did not take an output for event {output.event_id} ({exc!r})", code)


def _key_text(key: bytes | None) -> str | None:
    if not key:
        return None
    try:
        return key.decode()[:200]
    except UnicodeDecodeError:
        return None
