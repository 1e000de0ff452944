"""``inferloop bench``: the pipeline against raw Triton and a naive consumer, side by side in one run.

On the local stack (``inferloop up`` and a serving model), with the embedded digits as PNG events:

(a) pipeline: a worker process on topics of the run's own; N events produced as fast as possible (full load),
    then at half the measured throughput (paced); throughput from first produced to last predicted, latency
    from ``produced_at`` to ``predicted_at`` of every prediction;
(b) raw Triton: the same model over async gRPC, the best of a small grid of batch size and concurrency;
(c) naive: one kafka-python consumer that decodes each event and calls Triton synchronously, one at a time.

Every figure comes from this run on this machine; the ratios are what the targets speak of.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inferloop.errors import InferloopError
from inferloop.events import ImageEvent, Record, as_headers, decode_image_event, encode_image_event, new_event_id
from inferloop.images.decode import ImageLimits, decode_image
from inferloop.images.preprocess import InputSpec, to_model_input
from inferloop.kafka.options import kafka_options
from inferloop.kafka.readers import read_predictions
from inferloop.kafka.topics import ensure_topics
from inferloop.metrics import scrape
from inferloop.settings import Settings
from inferloop.triton.control import TritonControl
from inferloop.triton.inference import triton_inference
from inferloop.triton.options import grpc_options
from inferloop.triton.signature import ModelSignature
from infra.local.process import free_ports, start, stop_pid
from infra.local.worker import WorkerProcess

log = logging.getLogger(__name__)
ProgressFn = Callable[[str], None]


@dataclass
class BenchResult:
    events: int
    pipeline_images_per_s: float
    triton_images_per_s: float
    naive_images_per_s: float
    p50_ms: float
    p99_ms: float
    half_load_images_per_s: float
    p50_half_load_ms: float
    p99_half_load_ms: float
    triton_best: dict[str, int]
    workers: int
    pipeline_vs_triton: float
    pipeline_vs_naive: float
    machine: str

    def targets_met(self) -> dict[str, bool]:
        return {
            "pipeline >= 0.5 x raw Triton": self.pipeline_vs_triton >= 0.5,
            "pipeline >= 10 x naive": self.pipeline_vs_naive >= 10,
            "p99 at half load <= 50 ms": self.p99_half_load_ms <= 50,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "targets_met": self.targets_met()}


def _digit_pngs() -> list[bytes]:
    from trainer.data import digits_images, png_bytes

    return [png_bytes(img) for img in digits_images()[0]]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class Bench:
    def __init__(self, settings: Settings, events: int, progress: ProgressFn, workers: int = 1) -> None:
        self.base, self.events, self.progress, self.workers = settings, events, progress, workers
        self.settings = settings.with_topic_prefix(f"bench-{uuid.uuid4().hex[:8]}")
        self.pngs = _digit_pngs()
        self.metrics_ports: list[int] = []
        self.expected_total = 0.0  # predictions the bench's worker has made so far

    # -- helpers ----------------------------------------------------------------------------------------------

    def _produce(self, count: int, rate_per_s: float | None = None) -> list[str]:
        """Publish ``count`` events (paced at ``rate_per_s`` when given); returns their ids."""
        from kafka import KafkaProducer

        producer = KafkaProducer(
            **kafka_options(self.settings.kafka),
            acks="all",
            linger_ms=2,
            batch_size=256 * 1024,
            max_request_size=self.settings.streams.max_request_bytes,
        )
        ids = []
        began = time.perf_counter()
        topic = self.settings.streams.images_topic
        for n in range(count):
            if rate_per_s:
                due = began + n / rate_per_s
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                    producer.flush()  # paced events leave now, not when a batch fills
            event_id = new_event_id()
            m = encode_image_event(ImageEvent(event_id, "image/png", self.pngs[n % len(self.pngs)], source="bench"))
            producer.send(topic, key=m.key, value=m.value, headers=list(m.headers), timestamp_ms=m.timestamp_ms)
            ids.append(event_id)
        producer.flush()
        producer.close()
        return ids

    def _predicted_so_far(self) -> float:
        """Predictions made so far, summed over the bench's workers' own counters."""
        return sum(
            value
            for port in self.metrics_ports
            for _, value in scrape(f"http://127.0.0.1:{port}/metrics", "inferloop_predictions_total")
        )

    def _collect(self, ids: list[str], timeout_s: float) -> list[tuple[int, int]]:
        """(produced_at_ms, predicted_at_ms) of the predictions for ``ids``.

        Waits on the worker's own counter (cheap), then reads the predictions topic once, so that the bench
        does not compete with the pipeline for the CPU while it runs.
        """
        target = self.expected_total + len(ids)
        deadline = time.monotonic() + timeout_s
        while self._predicted_so_far() < target:
            if time.monotonic() > deadline:
                raise InferloopError(f"bench: predictions stalled at {self._predicted_so_far():.0f} of {target}")
            time.sleep(0.2)
        self.expected_total = target
        wanted = set(ids)
        got = {
            p.event_id: (p.produced_at_ms, p.predicted_at_ms)
            for p in read_predictions(self.settings, idle_timeout_s=1.0)
            if p.event_id in wanted
        }
        if len(got) < len(wanted):
            raise InferloopError(f"bench: only {len(got)} of {len(wanted)} predictions were found on the topic")
        return list(got.values())

    # -- (b) raw Triton ---------------------------------------------------------------------------------------

    async def _triton(self, signature: ModelSignature, batch: int, concurrency: int, images: int) -> float:
        spec = InputSpec(*signature.input_shape)
        limits = ImageLimits()
        x = np.stack([to_model_input(decode_image(p, "image/png", limits), spec) for p in self.pngs[:batch]])
        client = triton_inference(self.settings)
        calls = max(concurrency, images // batch)
        counter = iter(range(calls))

        async def worker() -> None:
            for _ in counter:
                await client.infer(signature, x)

        await client.infer(signature, x)  # warm-up
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        await client.close()
        return calls * batch / elapsed

    def raw_triton(self) -> tuple[float, dict[str, int]]:
        async def grid() -> tuple[float, dict[str, int]]:
            client = triton_inference(self.settings)
            signature = await client.signature()
            await client.close()
            best, best_at = 0.0, {}
            sizes = sorted({min(signature.max_batch_size, b) for b in (8, 32, self.settings.streams.max_batch)})
            for batch in sizes:
                for concurrency in (1, 2, 4, 8):
                    rate = await self._triton(signature, batch, concurrency, images=max(2000, self.events // 2))
                    self.progress(f"raw Triton: batch {batch} x {concurrency} in flight: {rate:,.0f} images/s")
                    if rate > best:
                        best, best_at = rate, {"batch": batch, "concurrency": concurrency}
            return best, best_at

        return asyncio.run(grid())

    # -- (c) naive --------------------------------------------------------------------------------------------

    def naive(self, max_events: int = 1000, max_seconds: float = 10.0) -> float:
        """One kafka-python consumer, one synchronous Triton call per event."""
        from kafka import KafkaConsumer

        control = TritonControl(self.settings.triton.grpc_url, options=grpc_options(self.settings.triton))
        signature = ModelSignature.from_config(control.config(self.settings.model.name))
        spec = InputSpec(*signature.input_shape)
        consumer = KafkaConsumer(
            self.settings.streams.images_topic,
            **kafka_options(self.settings.kafka),
            group_id=f"naive-{uuid.uuid4().hex[:6]}",
            auto_offset_reset="earliest",
            max_poll_records=1,
        )
        limits = ImageLimits()
        done, began = 0, None
        try:
            while done < max_events:
                for records in consumer.poll(timeout_ms=1000).values():
                    for record in records:
                        began = began or time.perf_counter()
                        event = decode_image_event(
                            Record(
                                record.topic,
                                record.partition,
                                record.offset,
                                record.key,
                                record.value,
                                as_headers(record.headers),
                                record.timestamp,
                            )
                        )
                        x = to_model_input(decode_image(event.image, event.content_type, limits), spec)[None]
                        control.infer(self.settings.model.name, x, names=(signature.input_name, signature.output_name))
                        done += 1
                if began and time.perf_counter() - began > max_seconds:
                    break
        finally:
            consumer.close()
            control.close()
        return done / (time.perf_counter() - (began or time.perf_counter()))

    # -- (a) the pipeline -------------------------------------------------------------------------------------

    def run(self) -> BenchResult:
        control = TritonControl(self.settings.triton.grpc_url, options=grpc_options(self.settings.triton))
        if not control.is_ready(self.settings.model.name):
            raise InferloopError(
                f"model {self.settings.model.name!r} is not served by Triton at {self.settings.triton.grpc_url}: "
                "run `inferloop up` and `inferloop train --bootstrap` first"
            )
        ensure_topics(self.settings)
        triton_rate, triton_best = self.raw_triton()

        self.metrics_ports = free_ports(self.workers)
        self.expected_total = 0.0
        logs = Path(tempfile.mkdtemp(prefix="inferloop-bench-"))
        pids: list[int] = []
        try:
            for n, port in enumerate(self.metrics_ports):
                pids.append(start(WorkerProcess(self.settings.to_env(), port, logs / f"worker-{n}.log")).pid)
            self.progress("pipeline: warming up")
            self._collect(self._produce(500), timeout_s=120)
            self.progress(f"pipeline: {self.events} events at full load")
            full = self._collect(self._produce(self.events), timeout_s=600)
            first = min(p for p, _ in full)
            last = max(d for _, d in full)
            pipeline_rate = len(full) / max((last - first) / 1000, 1e-3)
            latencies = [float(d - p) for p, d in full]
            half_rate = pipeline_rate / 2
            half_count = int(min(self.events, half_rate * 10))
            self.progress(f"pipeline: {half_count} events at half load ({half_rate:,.0f}/s)")
            half = self._collect(self._produce(half_count, rate_per_s=half_rate), timeout_s=600)
            half_latencies = [float(d - p) for p, d in half]
            half_first, half_last = min(p for p, _ in half), max(d for _, d in half)
        finally:
            for pid in pids:
                stop_pid(pid)
        self.progress("naive: one consumer, one synchronous call per event")
        naive_rate = self.naive()

        import platform

        return BenchResult(
            events=self.events,
            pipeline_images_per_s=round(pipeline_rate, 1),
            triton_images_per_s=round(triton_rate, 1),
            naive_images_per_s=round(naive_rate, 1),
            p50_ms=round(_percentile(latencies, 50), 1),
            p99_ms=round(_percentile(latencies, 99), 1),
            half_load_images_per_s=round(len(half) / max((half_last - half_first) / 1000, 1e-3), 1),
            p50_half_load_ms=round(_percentile(half_latencies, 50), 1),
            p99_half_load_ms=round(_percentile(half_latencies, 99), 1),
            triton_best=triton_best,
            workers=self.workers,
            pipeline_vs_triton=round(pipeline_rate / triton_rate, 3),
            pipeline_vs_naive=round(pipeline_rate / max(naive_rate, 1e-9), 1),
            machine=f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        )


def run_bench(settings: Settings, events: int, progress: ProgressFn, workers: int = 1) -> BenchResult:
    return Bench(settings, events, progress, workers).run()
