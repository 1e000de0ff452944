"""Publishing image events and feedback, keyed by event id, with delivery confirmed by :meth:`flush`.

Synchronous (kafka-python), for scripts, the CLI and tests; the worker itself is asynchronous.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from inferloop.errors import EventDecodeError, InferloopError
from inferloop.events import (
    Feedback,
    ImageEvent,
    check_image_event,
    decode_feedback,
    encode_feedback,
    encode_image_event,
    new_event_id,
)
from inferloop.kafka.errors import BrokerUnavailable, DeliveryRefused, EventTooLarge, FeedbackError
from inferloop.kafka.options import kafka_options
from inferloop.kafka.topics import RECORD_OVERHEAD_BYTES, ensure_topics
from inferloop.settings import Settings
from inferloop.uri_policy import ImageUriPolicy

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"}


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
    """A kafka-python producer (acks from all replicas) whose sends are confirmed together by :meth:`flush`."""

    def __init__(self, settings: Settings, source: str, client_id: str, **options: Any) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.settings, self.source = settings, source
        ensure_topics(settings)
        try:
            self._producer = KafkaProducer(
                **kafka_options(settings.kafka), acks="all", linger_ms=5, client_id=client_id, **options
            )
        except KafkaError as exc:
            raise BrokerUnavailable(settings.kafka.bootstrap, str(exc)) from exc
        self._pending: list[Any] = []

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker acknowledged everything published so far; :class:`DeliveryRefused` if it refused
        any record (a topic this principal may not write, for one)."""
        from kafka.errors import KafkaError, KafkaTimeoutError

        pending, self._pending = self._pending, []
        try:
            self._producer.flush(timeout=timeout_s)
            for future in pending:
                future.get(timeout=timeout_s)
        except KafkaTimeoutError as exc:  # no answer: an outage, not a refusal; the sends stay unconfirmed
            self._pending = pending + self._pending
            raise BrokerUnavailable(self.settings.kafka.bootstrap, f"delivery not confirmed: {exc}") from exc
        except KafkaError as exc:
            raise DeliveryRefused(str(exc)) from exc

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._producer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageProducer(_Producer):
    """Publishes image events to the images topic, keyed by event id."""

    def __init__(self, settings: Settings, source: str = "cli") -> None:
        super().__init__(settings, source, "inferloop-producer", max_request_size=settings.streams.max_request_bytes)
        self._uris = ImageUriPolicy.from_settings(settings.streams)

    def publish(self, event: ImageEvent, what: str = "the event") -> str:
        """Send ``event`` (confirmed by :meth:`flush`); before sending, :class:`EventTooLarge` if it cannot fit and
        :class:`~inferloop.errors.EventDecodeError` if a field is outside its bounds (docs/events.md)."""
        check_image_event(event)
        record = encode_image_event(event)
        if record.size > self.settings.streams.max_request_bytes - RECORD_OVERHEAD_BYTES:
            raise EventTooLarge(record.size, self.settings.streams.max_request_bytes, what)
        self._pending.append(
            self._producer.send(
                self.settings.streams.images_topic,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
                timestamp_ms=record.timestamp_ms,
            )
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

    def publish_uri(
        self, uri: str, content_type: str, event_id: str | None = None, metadata: dict[str, str] | None = None
    ) -> str:
        """An image by reference: the worker reads ``uri`` (within its ``streams.image_uri_roots``) when it comes."""
        return self.publish(
            ImageEvent(
                event_id=event_id or new_event_id(),
                content_type=content_type,
                image_uri=uri,
                source=self.source,
                metadata=metadata or {},
            ),
            what=uri,
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
            # a name that is not UTF-8 (bytes the OS kept as surrogates) is sent with replacement characters
            metadata={"filename": os.fsencode(path.name).decode("utf-8", "replace")},
        )
        return self.publish(event, what=str(path))


class FeedbackProducer(_Producer):
    """Publishes feedback (the true label of an event) to the feedback topic, keyed by event id; with
    ``trusted``, to the trusted feedback topic (which the broker lets only authorised principals write)."""

    def __init__(self, settings: Settings, source: str = "cli", trusted: bool = False) -> None:
        super().__init__(settings, source, "inferloop-feedback")
        self.topic = settings.feedback.trusted_topic if trusted else settings.feedback.topic

    def send(self, event_id: str, label: str, source: str | None = None) -> Feedback:
        feedback = Feedback(event_id=event_id, label=label, source=source if source is not None else self.source)
        value = encode_feedback(feedback)
        try:
            decode_feedback(value)  # the joiner's own checks, so that what it would dead-letter is refused here
        except EventDecodeError as exc:
            raise FeedbackError(f"feedback for event {event_id[:200]!r} refused: {exc}") from exc
        self._pending.append(self._producer.send(self.topic, key=event_id.encode(), value=value))
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


@dataclass(frozen=True)
class Published:
    """What :func:`publish_files` sent (event id and file) and refused (each with why)."""

    sent: list[tuple[str, Path]]
    refused: list[EventTooLarge]


def publish_files(
    settings: Settings, files: Sequence[Path], source: str = "cli", on_file: Callable[[], None] = lambda: None
) -> Published:
    """Publish each file as an image event, confirmed by the broker; a file over the record limit is refused and the
    others still go. ``on_file`` is called after each file (a progress bar)."""
    sent: list[tuple[str, Path]] = []
    refused: list[EventTooLarge] = []
    with ImageProducer(settings, source=source) as producer:
        for path in files:
            try:
                sent.append((producer.publish_file(path), path))
            except EventTooLarge as exc:
                refused.append(exc)
            on_file()
    return Published(sent, refused)


def send_feedback(
    settings: Settings, rows: Iterable[tuple[str, str, str | None]], source: str = "cli", trusted: bool = False
) -> int:
    """Send ``(event_id, label, source)`` rows (``None``: ``source``) as feedback, confirmed; returns how many.
    ``trusted``: to the trusted feedback topic (the broker refuses a principal not allowed to write it)."""
    count = 0
    with FeedbackProducer(settings, source=source, trusted=trusted) as producer:
        for event_id, label, row_source in rows:
            producer.send(event_id, label, row_source)
            count += 1
    return count
