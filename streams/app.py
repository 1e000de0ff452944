"""The Faust app of the worker: topics, the classify agent, and its metrics endpoint.

The app is built by :func:`create_app` from the settings (the one place Faust is configured), at-least-once:
the agent consumes with ``take_events`` at concurrency 1 (faust acknowledges a batch only after the agent's
body returned, and commits offsets only of acknowledged events), and the body returns only once every output
of the batch is acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from prometheus_client import CollectorRegistry, start_http_server

from streams.agents import Classifier, RawEvent
from streams.inference import TritonInference
from streams.metrics import WorkerMetrics
from streams.settings import Settings
from streams.topics import ensure_topics

log = logging.getLogger(__name__)


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    s = settings.streams
    app = faust.App(
        s.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap.split(",")],
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_partitions=s.partitions,
        producer_acks=-1,
        producer_max_request_size=s.max_request_bytes,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=4 * s.max_batch,
    )
    topics = {
        name: app.topic(name, key_type=bytes, value_type=bytes, partitions=s.partitions)
        for name in (s.images_topic, s.predictions_topic, s.dead_letter_topic)
    }
    metrics = WorkerMetrics(registry or CollectorRegistry())
    app.inferloop_metrics = metrics  # type: ignore[attr-defined]

    async def send(topic: str, key: bytes, value: bytes) -> Any:
        return await topics[topic].send(key=key, value=value, force=True)

    @app.agent(topics[s.images_topic], concurrency=1)
    async def classify(stream: faust.StreamT[bytes]) -> None:
        triton = TritonInference(settings.triton.grpc_url, settings.model.name, timeout_s=s.triton_timeout_s)
        classifier = Classifier(settings, triton, metrics, send)
        try:
            batches = stream.take_events(s.max_batch, within=s.batch_within_ms / 1000)  # type: ignore[attr-defined]
            async for events in batches:
                batch = [
                    RawEvent(e.value, e.key, e.message.topic, e.message.partition, e.message.offset) for e in events
                ]
                await classifier.process(batch)
        finally:
            classifier.stop()
            await triton.close()

    @app.task  # type: ignore[untyped-decorator]
    async def _serve_metrics() -> None:
        if s.metrics_port:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: start_http_server(s.metrics_port, registry=metrics.registry)
            )
            log.info("metrics on :%d/metrics", s.metrics_port)

    return app


def run_worker(settings: Settings, loglevel: str = "WARNING") -> None:
    """Run the worker in the foreground until SIGTERM/SIGINT."""
    ensure_topics(settings)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
