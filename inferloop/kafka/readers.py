"""Reading inferloop's topics: predictions, dead letters, the training log, any topic by offsets.

No consumer group and nothing committed: a reader starts at the beginning (or at given offsets) and, unless it
follows, stops at the end the topic had when reading began. Synchronous (kafka-python).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from inferloop.errors import EventDecodeError
from inferloop.events import (
    DeadLetter,
    LabelledExample,
    Prediction,
    Record,
    decode_dead_letter,
    decode_labelled_example,
    decode_prediction,
    record_of,
)
from inferloop.kafka.errors import DeliveryRefused, ReadIncomplete
from inferloop.kafka.options import kafka_options
from inferloop.settings import Settings

log = logging.getLogger(__name__)


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The next offset of every partition of ``topic`` (empty when it does not exist)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_options(settings.kafka), enable_auto_commit=False, client_id="inferloop-reader")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or set())]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()} if tps else {}
    finally:
        consumer.close()


def read_topic(
    settings: Settings,
    topic: str,
    follow: bool = False,
    limit: int | None = None,
    idle_timeout_s: float = 2.0,
    start: dict[int, int] | None = None,
    until: dict[int, int] | None = None,
    complete: bool = False,
) -> Iterator[Record]:
    """Records of ``topic`` from the beginning, or from ``start`` offsets (no consumer group, nothing committed).

    Without ``follow`` it stops at the end the topic had when reading began (or before the ``until`` offsets),
    so that records written while it reads (a replay's own dead letters, say) are not read again. It also stops
    after ``idle_timeout_s`` without a record, which suits a look at a topic; with ``complete`` a stall before
    the end raises :class:`ReadIncomplete` instead, for readers that record the end as read (the trainer).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_options(settings.kafka), enable_auto_commit=False, client_id="inferloop-reader")
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            if complete and until and any(until.values()):  # the topic is gone, or the broker does not say
                raise ReadIncomplete(topic, {p: (0, end) for p, end in until.items()}, 0)
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        for tp in tps:
            if start and start.get(tp.partition):
                consumer.seek(tp, start[tp.partition])
        if follow:
            ends = {}
        else:
            stop = until if until is not None else {tp.partition: e for tp, e in consumer.end_offsets(tps).items()}
            begin = start or {}
            ends = {tp: stop[tp.partition] for tp in tps if stop.get(tp.partition, 0) > begin.get(tp.partition, 0)}
        count, idle_since = 0, time.monotonic()
        while follow or ends:
            batch = consumer.poll(timeout_ms=200)
            for tp, records in batch.items():
                for r in records:
                    if not follow and (tp not in ends or r.offset >= ends[tp]):
                        continue
                    yield record_of(r)
                    count += 1
                    if limit is not None and count >= limit:
                        return
            # a partition is done once its position reaches the end: read, compacted away, or only markers left
            ends = {tp: end for tp, end in ends.items() if consumer.position(tp) < end}
            if batch:
                idle_since = time.monotonic()
            elif ends and not follow and time.monotonic() - idle_since > idle_timeout_s:
                if complete:
                    missing = {tp.partition: (consumer.position(tp), end) for tp, end in ends.items()}
                    raise ReadIncomplete(topic, missing, idle_timeout_s)
                return
    finally:
        consumer.close()


def read_predictions(settings: Settings, **kwargs: Any) -> Iterator[Prediction]:
    for record in read_topic(settings, settings.streams.predictions_topic, **kwargs):
        yield decode_prediction(record.value)


def read_dead_letters(settings: Settings, skipped: Counter[str] | None = None, **kwargs: Any) -> Iterator[DeadLetter]:
    """The dead letters; a record that is not one (another writer's) is logged, counted by reason in ``skipped``
    and passed over, so that one bad record never hides the others from a listing or a replay."""
    topic = settings.streams.dead_letter_topic
    for record in read_topic(settings, topic, **kwargs):
        try:
            yield decode_dead_letter(record.value)
        except EventDecodeError as exc:
            log.warning("dead letters: skipping %s[%d]@%d: %s", topic, record.partition, record.offset, exc)
            if skipped is not None:
                skipped[exc.reason] += 1


def replay_dead_letters(settings: Settings, reason: str | None = None) -> tuple[int, int]:
    """Publish the original records of dead letters (value, key and headers as they were) to the topic they came
    from again, confirmed; returns (replayed, skipped). Only the images topic and the open feedback topic are
    replayed to: a letter names its origin itself, and anyone who can write the dead-letter topic could otherwise
    have an operator's replay write a forged label into the trusted feedback topic (letters from elsewhere are
    skipped)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    replayable = {settings.streams.images_topic, settings.feedback.topic}
    producer = KafkaProducer(**kafka_options(settings.kafka), acks="all", client_id="inferloop-replay")
    futures = []
    skipped = 0
    unreadable: Counter[str] = Counter()  # records on the topic that are no dead letters: skipped too
    try:
        for letter in read_dead_letters(settings, unreadable):
            if (reason and letter.reason != reason) or letter.original is None or letter.origin_topic not in replayable:
                skipped += 1
                continue
            key = letter.original_key or (letter.event_id or "").encode() or None
            headers = list(letter.original_headers)
            try:
                futures.append(producer.send(letter.origin_topic, key=key, value=letter.original, headers=headers))
            except (ValueError, TypeError, UnicodeError) as exc:  # a record no client can send: passed over
                log.warning("dead letters: not replaying %s@%d: %s", letter.origin_topic, letter.origin_offset, exc)
                skipped += 1
        producer.flush()
        for future in futures:
            future.get(timeout=60)
    except KafkaError as exc:
        raise DeliveryRefused(f"replaying dead letters: {exc}") from exc
    finally:
        producer.close()
    return len(futures), skipped + sum(unreadable.values())


def read_training_log(settings: Settings, **kwargs: Any) -> Iterator[tuple[Record, LabelledExample]]:
    for record in read_topic(settings, settings.feedback.training_log_topic, **kwargs):
        yield record, decode_labelled_example(record)


def latest_examples(
    settings: Settings,
    start: dict[int, int] | None = None,
    until: dict[int, int] | None = None,
    skipped: Counter[str] | None = None,
    idle_timeout_s: float = 5.0,
) -> dict[str, LabelledExample]:
    """The newest training-log record of each event id, without its image, between the offsets (a correction
    wins, as compaction will eventually decide); records that do not decode are counted by reason in
    ``skipped``. For quality figures: the trainer reads images with :func:`iter_training_log`."""
    latest: dict[str, tuple[tuple[int, int], LabelledExample]] = {}
    for record, example in iter_training_log(settings, start, until, skipped, idle_timeout_s, complete=False):
        position = (record.partition, record.offset)
        known = latest.get(example.event_id)
        if known is None or known[0] < position:
            latest[example.event_id] = (position, replace(example, image=b""))
    return {event_id: example for event_id, (_, example) in latest.items()}


def iter_training_log(
    settings: Settings,
    start: dict[int, int] | None = None,
    until: dict[int, int] | None = None,
    skipped: Counter[str] | None = None,
    idle_timeout_s: float = 30.0,
    complete: bool = True,
) -> Iterator[tuple[Record, LabelledExample]]:
    """Each decodable training-log record between the offsets, one at a time (the log is never held whole);
    records that do not decode (a wrong field type, another writer's bytes) are counted by reason in
    ``skipped`` and left out, so one bad record never stops a reader. With ``complete`` a read that stalls
    before ``until`` (or the end) raises :class:`ReadIncomplete` rather than end early."""
    topic = settings.feedback.training_log_topic
    records = read_topic(settings, topic, start=start, until=until, idle_timeout_s=idle_timeout_s, complete=complete)
    for record in records:
        try:
            example = decode_labelled_example(record)
        except EventDecodeError as exc:
            log.warning("training log: skipping %s[%d]@%d: %s", topic, record.partition, record.offset, exc)
            if skipped is not None:
                skipped[exc.reason] += 1
            continue
        yield record, example
