"""The worker's Faust app: the images topic, the classify agent, the batch producer and the metrics endpoint.

The app is built by :func:`create_app` from the settings (Faust itself is configured in :mod:`streams.faust_app`),
at-least-once: the agent, at concurrency 1, takes batches of what has arrived (:mod:`streams.consumption`; batch
and buffer sizes from the memory budget, :mod:`streams.worker.memory_plan`) and works on up to
``streams.batches_in_flight`` of them at once; a batch is acknowledged only once it and every batch before it
finished, and faust commits offsets only of acknowledged events; a batch finishes only once every output of it is
handed to the producer that faust flushes before committing. Every inference names the version announced on the
promotions topic (followed in the background by a :class:`~streams.promotions.PromotionWatcher`); the
candidate in shadow scores a share of the events onto the shadow-predictions topic.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry

from inferloop.events import Promotion
from inferloop.kafka.topics import ensure_topics
from inferloop.metrics import WorkerMetrics
from inferloop.settings import Settings
from inferloop.triton.inference import triton_inference
from streams.consumption import Taken, arrived_batches
from streams.faust_app import batch_deadline_s, faust_app, observe, process_in_order, run_app
from streams.promotions import PromotionWatcher
from streams.worker.classify_step import Classifier
from streams.worker.memory_plan import memory_plan


def worker_app(settings: Settings, app_id: str) -> faust.App:
    """A Faust app configured as the worker's (batch and buffer sizes from the memory budget); the bench's
    measure of faust's own floor runs an empty agent on the same."""
    plan = memory_plan(settings.streams)
    return faust_app(
        settings,
        app_id,
        broker_commit_every=1000,
        stream_buffer_maxsize=plan.buffered,
        broker_max_poll_records=plan.poll_records,
        consumer_max_fetch_size=plan.partition_fetch_bytes,
        producer_max_batch_size=256 * 1024,
    )


def take_batches(settings: Settings, stream: faust.StreamT[bytes]) -> AsyncIterator[Taken]:
    """The worker's batches of events from ``stream``: what has arrived, up to the memory plan's batch size."""
    s = settings.streams
    return arrived_batches(stream, memory_plan(s).batch, s.batch_within_ms / 1000)


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    s = settings.streams
    app = worker_app(settings, s.app_id)
    images = app.topic(s.images_topic, key_type=bytes, value_type=bytes, partitions=s.partitions)
    metrics = WorkerMetrics(registry or CollectorRegistry())
    app.inferloop_metrics = metrics  # type: ignore[attr-defined]

    async def send(topic: str, records: list[tuple[bytes, bytes]]) -> list[Any]:
        """Batches per partition straight into the app's producer (the one faust flushes before committing).

        Per-message sends cost about 0.2 ms each in faust and aiokafka; a batch per partition costs one call.
        Partitions follow the Java client's murmur2 of the key, like every other producer of these topics.
        """
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # the aiokafka producer
        partitions = sorted(await producer.partitions_for(topic))
        deliveries: list[Any] = [None] * len(records)
        batches: dict[int, tuple[Any, list[int]]] = {}  # partition -> (open batch, indices of its records)

        async def submit(partition: int) -> None:
            batch, indices = batches.pop(partition)
            future = await producer.send_batch(batch, topic, partition=partition)
            for index in indices:
                deliveries[index] = future

        for index, (key, value) in enumerate(records):
            partition = partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
            if partition in batches and batches[partition][0].append(key=key, value=value, timestamp=None):
                batches[partition][1].append(index)
                continue
            if partition in batches:  # the open batch is full
                await submit(partition)
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                raise ValueError(f"a {len(value)}-byte record does not fit an empty producer batch")
            batches[partition] = (batch, [index])
        for partition in list(batches):
            await submit(partition)
        return deliveries

    @app.agent(images, concurrency=1)
    async def classify(stream: faust.StreamT[bytes]) -> None:
        triton = triton_inference(settings)

        def announced(p: Promotion) -> None:
            if p.model_name != settings.model.name:
                return  # the topic holds every model's state; this worker serves one
            metrics.announced_version.labels(p.model_name).set(p.serving)
            metrics.announced_shadow_version.labels(p.model_name).set(p.shadow or 0)

        promotions = PromotionWatcher(settings, announced)  # every worker follows the whole promotions topic
        promotions.start()  # now, not at the first event: a worker knows (and exports) the state before traffic
        classifier = Classifier(settings, triton, metrics, send, promotions.current)
        try:
            await process_in_order(
                take_batches(settings, stream), classifier.process, batch_deadline_s(settings), s.batches_in_flight
            )
        finally:
            classifier.stop()
            await promotions.close()
            await triton.close()

    observe(app, s.app_id, metrics.registry, metrics.consumer_lag, {s.images_topic}, s.metrics_port)
    return app


def run_worker(settings: Settings, loglevel: str = "WARNING") -> None:
    """Run the worker in the foreground until SIGTERM/SIGINT."""
    run_worker_app(settings, create_app(settings), loglevel)


def run_worker_app(settings: Settings, app: faust.App, loglevel: str = "WARNING") -> None:
    """Run ``app`` (the worker's, or the bench's floor on the same configuration) as the worker process runs."""
    # gRPC's poller thread hands every Triton answer to the loop: hand the GIL over more often than every 5 ms,
    # so that an answer does not wait a whole interval (measured at 1,000 images/s with the consumer on the loop:
    # p50 15 against 18.5 ms, p99 32 against 37 ms).
    sys.setswitchinterval(0.0005)
    ensure_topics(settings)
    run_app(app, loglevel, settings.log_format)
