"""The bench's framework-free peer: the loop a user would write by hand with aiokafka, doing the worker's work.

``python -m cli.bench.peer VERSION`` (settings from ``INFERLOOP_*``): ``getmany`` batches of up to the worker's
batch size (its memory plan), the project's own event and image decoders and preprocessing, Triton's async gRPC
in requests of the model's max batch size (all of a batch's requests in flight together), one JSON prediction per
event (a dead letter per bad one) sent with aiokafka (the worker's producer settings), and every second the
producer flushed, each delivery checked and only then the offsets consumed so far committed: the worker's
delivery guarantee and commit interval, with nothing else (no metrics, no shadow, no promotions to follow, no
retries: the bench's stack is healthy). The consumer has the worker's group timeouts. Naming ``--naive`` runs the
one-event-at-a-time consumer instead: one record per fetch, one synchronous Triton call, one acknowledged
prediction and one commit per event.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from inferloop.errors import PoisonError
from inferloop.events import (
    Prediction,
    Record,
    build_dead_letter,
    decode_image_event,
    encode_dead_letter,
    encode_prediction,
    now_ms,
    record_of,
)
from inferloop.images.decode import ImageLimits, decode_image
from inferloop.images.preprocess import InputSpec, to_model_input
from inferloop.kafka.options import aiokafka_options
from inferloop.settings import Settings, load_settings
from inferloop.triton.control import TritonControl
from inferloop.triton.inference import triton_inference
from inferloop.triton.options import grpc_options
from inferloop.triton.signature import ModelSignature
from streams.worker.memory_plan import memory_plan

COMMIT_INTERVAL_S = 1.0  # as the worker (faust's broker_commit_interval)


def _prediction(settings: Settings, record: Record, event_id: str, produced_at_ms: int, received_at_ms: int,
                scores: Any, top: Any, version: int, signature: ModelSignature) -> Prediction:  # fmt: skip
    return Prediction(
        event_id=event_id,
        model_name=signature.model,
        model_version=version,
        labels=[signature.labels[i] for i in top],
        scores=[round(float(scores[i]), 6) for i in top],
        produced_at_ms=produced_at_ms,
        received_at_ms=received_at_ms,
        predicted_at_ms=now_ms(),
        source="bench",
        image_topic=record.topic,
        image_partition=record.partition,
        image_offset=record.offset,
    )


async def peer(settings: Settings, version: int) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    s = settings.streams
    plan = memory_plan(s)
    consumer = AIOKafkaConsumer(
        s.images_topic,
        **aiokafka_options(settings.kafka),
        group_id=f"{s.app_id}-peer",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=plan.partition_fetch_bytes,  # the worker's memory plan, as the worker
        session_timeout_ms=int(s.session_timeout_s * 1000),  # the worker's group settings
        heartbeat_interval_ms=int(min(3.0, s.session_timeout_s / 3) * 1000),
        max_poll_interval_ms=int(s.max_poll_interval_s * 1000),
    )
    producer = AIOKafkaProducer(  # the worker's producer settings
        **aiokafka_options(settings.kafka),
        acks="all",
        linger_ms=0,
        max_batch_size=256 * 1024,
        max_request_size=s.max_request_bytes,
    )
    triton = triton_inference(settings)
    await consumer.start()
    await producer.start()
    limits = ImageLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
    signature = await triton.signature(version)
    spec = InputSpec(*signature.input_shape)
    chunk = signature.max_batch_size or plan.batch
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumed: dict[Any, int] = {}  # partition -> the offset after the last record handed to the producer
    unconfirmed: list[Any] = []  # delivery futures since the last commit
    committed_at = time.monotonic()

    async def commit() -> None:
        """Offsets only after every output before them is acknowledged: flush, check each delivery, commit."""
        await producer.flush()
        for delivery in unconfirmed:
            delivery.result()  # a refused output stops the peer before the commit
        unconfirmed.clear()
        if consumed:
            await consumer.commit(dict(consumed))

    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100, max_records=plan.batch)
            received_at = now_ms()
            good: list[tuple[Record, str, int, Any]] = []
            for messages in fetched.values():
                for m in messages:
                    record = record_of(m)
                    try:
                        event = decode_image_event(record)
                        pixels = to_model_input(decode_image(event.image, event.content_type, limits), spec)
                        good.append((record, event.event_id, event.produced_at_ms, pixels))
                    except PoisonError as exc:
                        letter = build_dead_letter(exc, record, None, s.dead_letter_max_original_bytes, 900_000)
                        value = encode_dead_letter(letter)
                        unconfirmed.append(await producer.send(s.dead_letter_topic, value, key=m.key))
            parts = [good[i : i + chunk] for i in range(0, len(good), chunk)]
            results = await asyncio.gather(
                *(triton.infer(signature, np.stack([g[3] for g in part]), version) for part in parts)
            )
            for part, (scores, served) in zip(parts, results, strict=True):
                order = np.argsort(-scores, axis=1)[:, : s.top_k]
                for (record, event_id, produced_at, _), row, top in zip(part, scores, order, strict=True):
                    p = _prediction(settings, record, event_id, produced_at, received_at, row, top, served, signature)
                    value = encode_prediction(p)
                    unconfirmed.append(await producer.send(s.predictions_topic, value, key=record.key))
            for tp, messages in fetched.items():
                consumed[TopicPartition(tp.topic, tp.partition)] = messages[-1].offset + 1
            if time.monotonic() - committed_at >= COMMIT_INTERVAL_S:
                await commit()
                committed_at = time.monotonic()
        await commit()
    finally:
        await consumer.stop()
        await producer.stop()
        await triton.close()


async def naive(settings: Settings, version: int) -> None:
    """One event at a time: fetch one record, decode, call Triton synchronously, send and await the broker's
    acknowledgement, commit."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    s = settings.streams
    control = TritonControl(settings.triton.grpc_url, options=grpc_options(settings.triton))
    signature = ModelSignature.from_config(control.config(settings.model.name))
    names = (signature.input_name, signature.output_name)
    spec = InputSpec(*signature.input_shape)
    limits = ImageLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
    consumer = AIOKafkaConsumer(
        s.images_topic,
        **aiokafka_options(settings.kafka),
        group_id=f"{s.app_id}-naive",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**aiokafka_options(settings.kafka), acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("naive: consuming", file=sys.stderr, flush=True)
    try:
        while not stop.is_set():
            for messages in (await consumer.getmany(timeout_ms=100, max_records=1)).values():
                for m in messages:
                    record = record_of(m)
                    received_at = now_ms()
                    event = decode_image_event(record)
                    x = to_model_input(decode_image(event.image, event.content_type, limits), spec)[None]
                    scores, served = control.infer(settings.model.name, x, version, names=names)  # blocking
                    row = np.asarray(scores)[0]
                    top = np.argsort(-row)[: s.top_k]
                    p = _prediction(settings, record, event.event_id, event.produced_at_ms, received_at,
                                    row, top, served, signature)  # fmt: skip
                    await producer.send_and_wait(s.predictions_topic, encode_prediction(p), key=m.key)
                    await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        control.close()


def main(argv: Sequence[str]) -> None:
    settings = load_settings()
    version = int(argv[0])
    gc.collect()  # the start-up heap frozen, as the worker's is (streams.faust_app.run_app): like for like
    gc.freeze()
    asyncio.run(naive(settings, version) if "--naive" in argv else peer(settings, version))


if __name__ == "__main__":
    main(sys.argv[1:])
