"""Python client API: publish images and feedback, read predictions, dead letters and the training log.

Synchronous (kafka-python), for scripts, the CLI and tests; the worker itself is asynchronous.
"""

from __future__ import annotations

import logging
import mimetypes
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from streams.errors import InferloopError, PoisonError
from streams.events import (
    DeadLetter,
    Feedback,
    ImageEvent,
    LabelledExample,
    Prediction,
    decode_dead_letter,
    decode_labelled_example,
    decode_prediction,
    encode_feedback,
    encode_image_event,
    new_event_id,
)
from streams.settings import Settings
from streams.topics import BrokerUnavailable, ensure_topics

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


def _drop_close_noise(record: logging.LogRecord) -> bool:
    """kafka-python logs a metadata refresh cancelled by ``close()`` as an error; it is not one."""
    return "failed Cancelled" not in record.getMessage()


logging.getLogger("kafka.cluster").addFilter(_drop_close_noise)


class EventTooLarge(PoisonError):
    """An event over the Kafka record size limit: refused before it is sent."""

    def __init__(self, size: int, limit: int, what: str = "the event") -> None:
        self.size, self.limit = size, limit
        super().__init__(
            f"{what} is {size} bytes as an event, over the {limit}-byte Kafka record limit "
            "(INFERLOOP_STREAMS__MAX_REQUEST_BYTES); larger images travel as a URI: put them in a folder named by "
            "INFERLOOP_STREAMS__IMAGE_URI_ROOTS, which the workers can read"
        )


def content_type_of(path: Path) -> str:
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return guessed


def expand_paths(paths: Iterable[str]) -> list[Path]:
    """Files, folders (recursively, image files only) and globs, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if any(ch in raw for ch in "*?["):
            matches = sorted(Path().glob(raw)) if not p.is_absolute() else sorted(Path(p.anchor).glob(str(p)[1:]))
            found.extend(m for m in matches if m.is_file())
        elif p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            found.append(p)
        else:
            raise InferloopError(f"{raw}: no such file, folder or matching glob")
    return found


class _Producer:
    """A kafka-python producer whose sends are confirmed together by :meth:`flush`."""

    _producer: Any
    _pending: list[Any]

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker acknowledged everything published so far; raise if anything failed."""
        self._producer.flush(timeout=timeout_s)
        pending, self._pending = self._pending, []
        for future in pending:
            future.get(timeout=timeout_s)

    def close(self) -> None:
        self.flush()
        self._producer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageProducer(_Producer):
    """Publishes image events to the images topic, keyed by event id."""

    def __init__(self, settings: Settings, source: str = "cli") -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.settings, self.source = settings, source
        ensure_topics(settings)
        try:
            self._producer = KafkaProducer(
                **settings.kafka.client_options(),
                acks="all",
                linger_ms=5,
                max_request_size=settings.streams.max_request_bytes,
                client_id="inferloop-producer",
            )
        except KafkaError as exc:
            raise BrokerUnavailable(settings.kafka.bootstrap, str(exc)) from exc
        self._pending: list[Any] = []
        self._uris = settings.streams.image_uris()

    def publish(self, event: ImageEvent, what: str = "the event") -> str:
        """Send ``event`` (confirmed by :meth:`flush`); :class:`EventTooLarge` before sending if it cannot fit."""
        value = encode_image_event(event)
        if len(value) > self.settings.streams.max_request_bytes - 512:  # record overhead
            raise EventTooLarge(len(value), self.settings.streams.max_request_bytes, what)
        self._pending.append(
            self._producer.send(self.settings.streams.images_topic, key=event.event_id.encode(), value=value)
        )
        return event.event_id

    def publish_bytes(
        self, data: bytes, content_type: str, event_id: str | None = None, metadata: dict[str, str] | None = None
    ) -> str:
        return self.publish(
            ImageEvent(
                event_id=event_id or new_event_id(),
                content_type=content_type,
                image=data,
                source=self.source,
                metadata=metadata or {},
            )
        )

    def publish_file(self, path: Path, event_id: str | None = None) -> str:
        """Inline, or as a ``file://`` URI when larger than ``inline_max_bytes`` and inside an image URI root."""
        by_uri = path.stat().st_size > self.settings.streams.inline_max_bytes and self._uris.allows_path(path)
        event = ImageEvent(
            event_id=event_id or new_event_id(),
            content_type=content_type_of(path),
            image=b"" if by_uri else path.read_bytes(),
            image_uri=path.resolve().as_uri() if by_uri else None,
            source=self.source,
            metadata={"filename": path.name},
        )
        return self.publish(event, what=str(path))


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The next offset of every partition of ``topic`` (empty when it does not exist)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False, client_id="inferloop-reader")
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
) -> Iterator[Record]:
    """Records of ``topic`` from the beginning, or from ``start`` offsets (no consumer group, nothing committed).

    Without ``follow`` it stops at the end the topic had when reading began (or before the ``until`` offsets),
    so that records written while it reads (a replay's own dead letters, say) are not read again.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False, client_id="inferloop-reader")
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
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
            if not batch:
                if not follow and time.monotonic() - idle_since > idle_timeout_s:
                    return
                continue
            idle_since = time.monotonic()
            for tp, records in batch.items():
                for r in records:
                    if not follow and (tp not in ends or r.offset >= ends[tp]):
                        continue
                    yield Record(r.topic, r.partition, r.offset, r.key, r.value)
                    count += 1
                    if limit is not None and count >= limit:
                        return
                if not follow and tp in ends and consumer.position(tp) >= ends[tp]:
                    del ends[tp]
    finally:
        consumer.close()


def read_predictions(settings: Settings, **kwargs: Any) -> Iterator[Prediction]:
    for record in read_topic(settings, settings.streams.predictions_topic, **kwargs):
        yield decode_prediction(record.value)


def read_dead_letters(settings: Settings, **kwargs: Any) -> Iterator[DeadLetter]:
    for record in read_topic(settings, settings.streams.dead_letter_topic, **kwargs):
        yield decode_dead_letter(record.value)


def replay_dead_letters(settings: Settings, reason: str | None = None) -> tuple[int, int]:
    """Publish the original bytes of dead letters to the topic they came from again; returns (replayed, skipped)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(**settings.kafka.client_options(), acks="all", client_id="inferloop-replay")
    replayed = skipped = 0
    try:
        for letter in read_dead_letters(settings):
            if (reason and letter.reason != reason) or letter.original is None:
                skipped += 1
                continue
            producer.send(letter.origin_topic, key=(letter.event_id or "").encode() or None, value=letter.original)
            replayed += 1
        producer.flush()
    finally:
        producer.close()
    return replayed, skipped


def read_training_log(settings: Settings, **kwargs: Any) -> Iterator[tuple[Record, LabelledExample]]:
    for record in read_topic(settings, settings.feedback.training_log_topic, **kwargs):
        yield record, decode_labelled_example(record.value)


class FeedbackError(InferloopError):
    """Feedback that cannot be sent as given (a bad line in a bulk file, an empty label)."""


class FeedbackProducer(_Producer):
    """Publishes feedback (the true label of an event) to the feedback topic, keyed by event id."""

    def __init__(self, settings: Settings, source: str = "cli") -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.settings, self.source = settings, source
        ensure_topics(settings)
        try:
            self._producer = KafkaProducer(
                **settings.kafka.client_options(), acks="all", linger_ms=5, client_id="inferloop-feedback"
            )
        except KafkaError as exc:
            raise BrokerUnavailable(settings.kafka.bootstrap, str(exc)) from exc
        self._pending: list[Any] = []

    def send(self, event_id: str, label: str, source: str | None = None) -> Feedback:
        if not event_id or not label or len(event_id) > 200 or len(label) > 200:
            raise FeedbackError(
                f"feedback needs an event id and a label of 1-200 characters, got {event_id!r}, {label!r}"
            )
        feedback = Feedback(event_id=event_id, label=label, source=source if source is not None else self.source)
        self._pending.append(
            self._producer.send(self.settings.feedback.topic, key=event_id.encode(), value=encode_feedback(feedback))
        )
        return feedback


def parse_feedback_file(path: Path) -> list[tuple[str, str, str | None]]:
    """``(event_id, label, source)`` rows of a CSV (``event_id,label[,source]``, header optional) or JSON-lines
    file (``{"event_id": ..., "label": ..., "source": ...}``); raises :class:`FeedbackError` naming the bad line."""
    import csv
    import json

    rows: list[tuple[str, str, str | None]] = []
    text = path.read_text()
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                rows.append((str(raw["event_id"]), str(raw["label"]), raw.get("source")))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise FeedbackError(f"{path}:{n}: not a JSON object with event_id and label ({exc})") from exc
        return rows
    for n, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip():
            continue
        if n == 1 and [c.strip().lower() for c in row[:2]] == ["event_id", "label"]:
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise FeedbackError(f"{path}:{n}: expected event_id,label[,source], got {row!r}")
        rows.append((row[0].strip(), row[1].strip(), row[2].strip() if len(row) > 2 else None))
    return rows
