"""Wire formats of inferloop's topics: image events, predictions, dead letters. One encode/decode pair each.

Image events carry the image bytes raw, never base64: a Kafka value is a small binary frame ::

    b"ILE" | schema version (1 byte) | header length (4 bytes, big-endian) | header (JSON) | image bytes

The JSON header holds the event id, time, source, content type, an optional image URI (for images too large to
travel inline; read through fsspec, so ``file://`` and object stores work) and optional metadata. The key of
the Kafka record is the event id. Predictions and dead letters are small JSON documents with a
``schema_version``. See ``docs/events.md``.
"""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from streams.errors import PoisonError

IMAGE_MAGIC = b"ILE"
IMAGE_SCHEMA_VERSION = 1
PREDICTION_SCHEMA_VERSION = 1
DEAD_LETTER_SCHEMA_VERSION = 1
_FRAME_HEAD = struct.Struct(">3sBI")
MAX_HEADER_BYTES = 64 * 1024


class EventDecodeError(PoisonError):
    """An event that cannot be decoded; ``reason`` is a stable code for the dead-letter topic."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def new_event_id() -> str:
    return uuid.uuid4().hex


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class ImageEvent:
    """One image to classify: inline ``image`` bytes, or an ``image_uri`` to read them from."""

    event_id: str
    content_type: str
    image: bytes = b""
    image_uri: str | None = None
    source: str = ""
    produced_at_ms: int = field(default_factory=now_ms)
    metadata: dict[str, str] = field(default_factory=dict)
    schema_version: int = IMAGE_SCHEMA_VERSION


def encode_image_event(event: ImageEvent) -> bytes:
    header = {
        "event_id": event.event_id,
        "content_type": event.content_type,
        "source": event.source,
        "produced_at_ms": event.produced_at_ms,
    }
    if event.image_uri is not None:
        header["image_uri"] = event.image_uri
    if event.metadata:
        header["metadata"] = event.metadata
    raw_header = json.dumps(header, separators=(",", ":")).encode()
    return _FRAME_HEAD.pack(IMAGE_MAGIC, event.schema_version, len(raw_header)) + raw_header + event.image


def decode_image_event(value: bytes | None) -> ImageEvent:
    """The event in a Kafka value; raises :class:`EventDecodeError` with a specific reason."""
    if not value:
        raise EventDecodeError("empty_value", "the record has no value")
    if len(value) < _FRAME_HEAD.size or value[:3] != IMAGE_MAGIC:
        raise EventDecodeError("not_an_image_event", "the value does not start with an inferloop image-event frame")
    _, version, header_len = _FRAME_HEAD.unpack_from(value)
    if version != IMAGE_SCHEMA_VERSION:
        raise EventDecodeError(
            "unknown_schema_version", f"image-event schema version {version} is not supported (this worker: 1)"
        )
    if header_len > MAX_HEADER_BYTES or _FRAME_HEAD.size + header_len > len(value):
        raise EventDecodeError("bad_header", f"header length {header_len} does not fit the {len(value)}-byte value")
    try:
        header = json.loads(value[_FRAME_HEAD.size : _FRAME_HEAD.size + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventDecodeError("bad_header", f"header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise EventDecodeError("bad_header", "header is not a JSON object")
    image = bytes(value[_FRAME_HEAD.size + header_len :])
    return _image_event_from_header(header, image)


def _image_event_from_header(header: dict[str, Any], image: bytes) -> ImageEvent:
    def text(name: str, required: bool) -> str:
        raw = header.get(name)
        if raw is None and not required:
            return ""
        if not isinstance(raw, str) or (required and not raw):
            raise EventDecodeError("missing_field", f"field {name!r} is missing or not a non-empty string")
        return raw

    event_id = text("event_id", True)
    if len(event_id) > 200:
        raise EventDecodeError("bad_field", "event_id is longer than 200 characters")
    content_type = text("content_type", True)
    produced = header.get("produced_at_ms")
    if not isinstance(produced, int) or isinstance(produced, bool) or produced < 0:
        raise EventDecodeError("missing_field", "field 'produced_at_ms' is missing or not a non-negative integer")
    uri = header.get("image_uri")
    if uri is not None and not isinstance(uri, str):
        raise EventDecodeError("bad_field", "image_uri is not a string")
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise EventDecodeError("bad_field", "metadata must map strings to strings")
    if not image and not uri:
        raise EventDecodeError("missing_image", "the event has neither inline image bytes nor an image_uri")
    return ImageEvent(
        event_id=event_id,
        content_type=content_type,
        image=image,
        image_uri=uri,
        source=text("source", False),
        produced_at_ms=produced,
        metadata=metadata,
    )


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one event."""

    event_id: str
    model_name: str
    model_version: int
    labels: list[str]
    scores: list[float]
    produced_at_ms: int
    received_at_ms: int
    predicted_at_ms: int
    source: str = ""
    schema_version: int = PREDICTION_SCHEMA_VERSION

    @property
    def label(self) -> str:
        return self.labels[0]


def encode_prediction(prediction: Prediction) -> bytes:
    return json.dumps(prediction.__dict__, separators=(",", ":")).encode()


def decode_prediction(value: bytes) -> Prediction:
    try:
        raw = json.loads(value)
        if raw.get("schema_version") != PREDICTION_SCHEMA_VERSION:
            raise EventDecodeError("unknown_schema_version", f"prediction schema {raw.get('schema_version')}")
        return Prediction(**raw)
    except (json.JSONDecodeError, TypeError, AttributeError) as exc:
        raise EventDecodeError("bad_prediction", f"not a prediction: {exc}") from exc


@dataclass(frozen=True)
class DeadLetter:
    """An event the worker could not process, with why, where it came from and (when small) its bytes."""

    reason: str
    message: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    event_id: str | None = None
    original: bytes | None = None
    failed_at_ms: int = field(default_factory=now_ms)
    schema_version: int = DEAD_LETTER_SCHEMA_VERSION


def encode_dead_letter(letter: DeadLetter) -> bytes:
    raw = {**letter.__dict__}
    raw["original"] = base64.b64encode(letter.original).decode() if letter.original is not None else None
    return json.dumps(raw, separators=(",", ":")).encode()


def decode_dead_letter(value: bytes) -> DeadLetter:
    try:
        raw = json.loads(value)
        original = raw.pop("original", None)
        return DeadLetter(**raw, original=base64.b64decode(original) if original is not None else None)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise EventDecodeError("bad_dead_letter", f"not a dead letter: {exc}") from exc
