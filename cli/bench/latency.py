"""The bench's load generator: image events at a fixed rate, and the time each one's prediction reaches a consumer.

``python -m cli.bench.latency RATE SECONDS`` (settings from ``INFERLOOP_*``) runs in a process of its own, so that
neither producing nor receiving competes with the measured worker inside one interpreter. An aiokafka producer
(``linger_ms=0``, ``acks=all``) sends event ``n`` at ``start + n / RATE``; an aiokafka consumer reads the
predictions topic from its end (assigned every partition before the first event leaves; the images topic's metadata
fetched and the start-up heap frozen before the clock starts, so that neither lands on an event). A latency is the
moment the consumer receives an event's prediction minus the event's production time (the record's timestamp,
this clock). Prints one JSON line: ``{"sent", "received", "p50_ms", "p99_ms"}``, and the medians of the two
first stages from the prediction's own times: production to the worker's batch, the batch to the prediction.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
import time

import numpy as np

from inferloop.events import ImageEvent, decode_prediction, encode_image_event, new_event_id
from inferloop.kafka.options import aiokafka_options
from inferloop.settings import Settings, load_settings


def digit_pngs() -> list[bytes]:
    from trainer.data import digits_images, png_bytes

    return [png_bytes(img) for img in digits_images()[0]]


async def measure(settings: Settings, rate: float, seconds: float, drain_s: float = 10.0) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    s = settings.streams
    pngs = digit_pngs()
    producer = AIOKafkaProducer(**aiokafka_options(settings.kafka), acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(**aiokafka_options(settings.kafka), enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    await producer.partitions_for(s.images_topic)  # its metadata now: the first event does not wait for it
    partitions = [TopicPartition(s.predictions_topic, p) for p in await producer.partitions_for(s.predictions_topic)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)  # resolved now: the first prediction is not missed
    sent: dict[str, int] = {}
    latencies: list[float] = []
    stages: list[tuple[float, float]] = []  # (production to the worker's batch, the batch to its prediction)
    total = int(rate * seconds)

    received: set[str] = set()

    async def receive() -> None:
        while len(received) < total:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                arrived = time.time() * 1000
                for r in records:
                    p = decode_prediction(r.value)
                    produced = sent.get(p.event_id)
                    if produced is not None and p.event_id not in received:  # the first prediction of each event
                        received.add(p.event_id)
                        latencies.append(arrived - produced)
                        stages.append((p.received_at_ms - produced, p.predicted_at_ms - p.received_at_ms))

    receiving = asyncio.ensure_future(receive())
    gc.collect()  # what start-up built (numpy, the images, the clients) is frozen: no long collection on the clock
    gc.freeze()
    began = time.perf_counter()
    for n in range(total):
        delay = began + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        m = encode_image_event(ImageEvent(new_event_id(), "image/png", pngs[n % len(pngs)], source="bench"))
        sent[str(m.key or b"", "utf-8")] = int(m.timestamp_ms or 0)
        await producer.send(s.images_topic, m.value, key=m.key, headers=list(m.headers), timestamp_ms=m.timestamp_ms)
    await producer.flush()
    with contextlib.suppress(TimeoutError):  # a missing prediction is counted, not waited for forever
        await asyncio.wait_for(receiving, drain_s)
    await producer.stop()
    await consumer.stop()
    values = np.asarray(latencies or [float("nan")])
    return {
        "sent": total,
        "received": len(received),  # distinct events: a redelivery does not stand in for a missing one
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
        "to_worker_p50_ms": round(float(np.percentile([a for a, _ in stages] or [float("nan")], 50)), 1),
        "in_worker_p50_ms": round(float(np.percentile([b for _, b in stages] or [float("nan")], 50)), 1),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure(load_settings(), float(sys.argv[1]), float(sys.argv[2])))))
