"""The joiner's Faust app: feedback joined with predictions and input images, logged for the trainer.

A Faust app of its own (``inferloop joiner``, group ``feedback.app_id``), so that it scales and fails apart from
the classify workers. One agent consumes the predictions and the feedback topics (both keyed by event id, with
the same partitions, so an event's prediction and feedback meet in one partition) and keeps its state in a
Faust table (``<app_id>-join-changelog``, compacted, recovered on start); :mod:`streams.joiner.join_step` does
the work of each batch. Whatever a batch (or the sweep) raises that no step plans for stops the process before
faust can acknowledge the batch (:func:`~streams.faust_app.exit_before_commit`): a restarted joiner gets the
batch again, and the table still holds every label not yet logged. A timer expires the table; online quality
is exported on ``/metrics``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from inferloop.events import Message, Record
from inferloop.kafka.options import aiokafka_options
from inferloop.kafka.topics import check_partitions, ensure_topics
from inferloop.metrics import JoinerMetrics
from inferloop.settings import Settings
from streams.faust_app import (
    batch_deadline_s,
    exit_on_batch_error,
    faust_app,
    observe,
    process_batches,
    run_app,
    within,
)
from streams.joiner.join_step import Joiner, partition_of
from streams.joiner.lookups import ImageLookup, TritonLabels


def create_joiner_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    s, f = settings.streams, settings.feedback
    # no standby replicas: the timer sweeps the table of the partitions this instance owns, and only those
    app = faust_app(settings, f.app_id, table_standby_replicas=0)
    min_isr = settings.kafka.min_insync_replicas
    table = app.Table(
        "join",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=s.partitions,
        use_partitioner=True,
        extra_topic_configs={"min.insync.replicas": str(min_isr)} if min_isr else {},
    )
    metrics = JoinerMetrics(registry or CollectorRegistry())
    lookup = ImageLookup(aiokafka_options(settings.kafka), s.max_request_bytes)

    async def send_all(records: list[tuple[str, Message]]) -> None:
        producer = app.producer._ensure_producer()  # type: ignore[attr-defined]  # the aiokafka producer
        futures = [
            await producer.send(topic, value=m.value, key=m.key, headers=list(m.headers), timestamp_ms=m.timestamp_ms)
            for topic, m in records
        ]
        await asyncio.gather(*futures)

    def owns(key: bytes) -> bool:
        """Whether the key's partition (murmur2, as every producer of these topics and the table place it) is
        one this instance consumes."""
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == s.predictions_topic}
        return partition_of(key, s.partitions) in assigned

    async def drained() -> None:
        """Every table write handed to the producer: faust buffers them and its pre-commit flush gives up on
        the buffer after 0.1 s without progress, so a commit could otherwise overtake a queued changelog write."""
        buffer = app.producer.buffer
        while buffer.size:
            await buffer.flush()

    joiner = Joiner(settings, table, metrics, send_all, lookup, TritonLabels(settings), owns=owns)
    app.inferloop_joiner = joiner  # type: ignore[attr-defined]

    # co-partitioned by event id with the table: predictions, shadow predictions, open and trusted feedback
    topics = app.topic(
        s.predictions_topic, s.shadow_predictions_topic, f.topic, f.trusted_topic, key_type=bytes, value_type=bytes
    )

    async def process_and_drain(batch: list[Record]) -> None:
        await joiner.process(batch)
        await drained()

    async def sweep_and_drain() -> None:
        await joiner.sweep()
        await drained()

    @app.agent(topics, concurrency=1)
    async def join(stream: Any) -> None:
        try:
            await process_batches(stream.take_events(256, within=0.1), process_and_drain, batch_deadline_s(settings))
        finally:
            await lookup.close()

    @app.timer(f.sweep_interval_s)  # type: ignore[untyped-decorator]
    async def sweep() -> None:
        if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return  # the table is not whole yet
        try:
            await within(batch_deadline_s(settings), sweep_and_drain(), "the sweep")
        except Exception as exc:  # the table still holds what the sweep found due: a restart sweeps it again
            exit_on_batch_error(exc, "the sweep")

    observed = {s.predictions_topic, s.shadow_predictions_topic, f.topic, f.trusted_topic}
    observe(app, f.app_id, metrics.registry, metrics.consumer_lag, observed, f.metrics_port)
    return app


def run_joiner(settings: Settings, loglevel: str = "WARNING") -> None:
    """Run the joiner in the foreground until SIGTERM/SIGINT; first :class:`ConfigurationError` when a topic it
    joins has another partition count than ``streams.partitions`` (:func:`check_partitions`)."""
    ensure_topics(settings)
    s, f = settings.streams, settings.feedback
    check_partitions(settings, [s.predictions_topic, s.shadow_predictions_topic, f.topic, f.trusted_topic])
    run_app(create_joiner_app(settings), loglevel, settings.log_format)
