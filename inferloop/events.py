"""Wire formats of inferloop's topics: image events, predictions, dead letters, feedback, labelled examples and
promotions.

One encode/decode pair each.

An image event is a plain Kafka record any client can write (``kcat``, a Java or Go producer): the key is the
event id (UTF-8), the value the image's encoded bytes exactly as they are on disk, and the metadata travels in
record headers: ``content-type`` (required), ``source``, ``image-uri`` (the value is then empty: the image is read
through fsspec, so ``file://`` and object stores work), ``schema-version`` and user metadata under ``meta-``. The
record's timestamp is the time it was produced. Training-log records follow the same convention, their label and
lineage in one JSON header (``training-example``). Predictions, dead letters, feedback and promotions (the
announced version of each model) are small JSON documents with a ``schema_version`` and a JSON Schema each
(``docs/schemas``); shadow predictions are predictions, on a topic of their own. Decoders ignore fields and
headers they do not know (a later writer may add some) and refuse known ones that are missing or mistyped.
See ``docs/events.md``.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from inferloop.errors import EventDecodeError, PoisonError

IMAGE_SCHEMA_VERSION = 1
FEEDBACK_SCHEMA_VERSION = 1
EXAMPLE_SCHEMA_VERSION = 1
PREDICTION_SCHEMA_VERSION = 1
DEAD_LETTER_SCHEMA_VERSION = 1
PROMOTION_SCHEMA_VERSION = 1
# The record headers of image events and training-log records (docs/events.md, "Naming"): lower-case words joined
# by hyphens, matched without regard to case; headers of other names are left alone (tracing, a client's own).
CONTENT_TYPE_HEADER = "content-type"
SOURCE_HEADER = "source"
IMAGE_URI_HEADER = "image-uri"
SCHEMA_VERSION_HEADER = "schema-version"
METADATA_HEADER_PREFIX = "meta-"  # meta-<name>: one user metadata entry
EXAMPLE_HEADER = "training-example"  # a training-log record's label and lineage, a JSON object
MAX_HEADERS = 64  # headers of one record
MAX_COUNT = 2**63 - 1  # counts, versions, offsets and times: what Kafka (a Java long) holds
MAX_URI_CHARS = 4096
MAX_HEADER_NAME_CHARS = 1024  # a header name a dead letter keeps (and a replay sends)
MAX_MESSAGE_CHARS = 4096  # a dead letter's message
MAX_HEADER_BYTES = 64 * 1024  # one header's value (the training-example JSON, a dead letter's message)
# Bounds of the text fields every decoder enforces (docs/events.md): a record within them always fits the next
# topic's record (a prediction, a training-log example) whatever its image.
MAX_ID_CHARS = 200  # event ids, labels, model names, content types
MAX_SOURCE_CHARS = 256  # the free-text ``source`` of image events and feedback
MAX_METADATA_ENTRIES = 32
MAX_METADATA_CHARS = 1024  # each metadata key or value
MAX_LABELS = 1000  # class labels (and scores) in one prediction
MAX_TOPIC_CHARS = 249  # Kafka's own limit on topic names
# a whole prediction, dead letter or promotion: a prediction of 1,000 labels of 200 characters, or a dead letter
# keeping a 256 KiB original (its base64 and its headers), fit well within it
MAX_JSON_RECORD_BYTES = 1024 * 1024
MAX_DEAD_LETTER_BYTES = 900_000  # under the default record limit (1,000,000) and MAX_JSON_RECORD_BYTES
MAX_FEEDBACK_BYTES = 4096  # a whole feedback record: the joiner keeps it in its table until it is logged
MAX_EVIDENCE_ENTRIES = 32  # the evidence of a promotion: numbers and short texts
PROMOTION_ACTIONS = ("promote", "rollback", "shadow", "shadow_ended", "reconcile")
T = TypeVar("T")


def _text(raw: dict[str, Any], name: str, *, required: bool = True, max_chars: int = MAX_ID_CHARS) -> str:
    """``raw[name]`` as a string of at most ``max_chars`` (non-empty when required; "" when absent and optional)."""
    value = raw.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        qualifier = "a non-empty string" if required else "a string"
        raise EventDecodeError(
            "missing_field" if required else "bad_field", f"field {name!r} is missing or not {qualifier}"
        )
    if len(value) > max_chars:
        raise EventDecodeError("bad_field", f"field {name!r} is longer than {max_chars} characters")
    if not _encodable(value):
        raise EventDecodeError("bad_field", f"field {name!r} holds text no record can carry (a lone surrogate)")
    return value


def _encodable(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: JSON's ``\\ud800`` escapes decode to lone surrogates, which do not (and
    would fail whoever writes the text on, as a key or a metric label)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number(value: Any) -> bool:
    """Whether ``value`` is a JSON number a float holds (not a bool; ``1e400`` written as an integer is not)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _count(raw: dict[str, Any], name: str, *, required: bool = True) -> int:
    """``raw[name]`` as a non-negative integer (booleans refused); 0 when absent and optional."""
    value = raw.get(name)
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise EventDecodeError(
            "missing_field" if required else "bad_field",
            f"field {name!r} is missing or not an integer from 0 to {MAX_COUNT}",
        )
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is out of range")
    return value


def _json(data: bytes, reason: str, what: str) -> Any:
    """The JSON document in ``data``: strict (no NaN or infinities, nesting the parser can take); otherwise
    :class:`EventDecodeError` with ``reason``."""
    try:
        return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        message = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise EventDecodeError(reason, f"{what} is not JSON: {message}") from None


def _schema(raw: dict[str, Any], supported: int, what: str) -> None:
    """``schema_version`` is exactly the integer ``supported`` (not ``true``, not ``1.0``)."""
    version = raw.get("schema_version")
    if type(version) is not int or version != supported:
        raise EventDecodeError("unknown_schema_version", f"{what} schema version {version!r} is not supported")


Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Record:
    """One Kafka record as consumed: where it came from, its key and value (``None``: a tombstone), its headers and
    its timestamp (milliseconds; ``None`` when the broker gave none)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Message:
    """One Kafka record to produce: key, value, headers and timestamp (``None``: the producer's clock)."""

    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None

    @property
    def size(self) -> int:
        """Bytes of key, value and headers: what the record limit counts besides the fixed overhead."""
        return len(self.key or b"") + len(self.value or b"") + _headers_size(self.headers)

    def at(self, topic: str, partition: int = 0, offset: int = 0) -> Record:
        """This message as a consumer would read it at that position."""
        return Record(topic, partition, offset, self.key, self.value, self.headers, self.timestamp_ms)


class KafkaRecord(Protocol):
    """What the record decoders read: a :class:`Record`, a :class:`Message`, or a Kafka client's own record with
    these attributes."""

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Headers: ...

    @property
    def timestamp_ms(self) -> int | None: ...


def _headers_size(headers: Headers) -> int:
    return sum(len(k.encode("utf-8", "replace")) + len(v) for k, v in headers)


def as_headers(raw: Any) -> Headers:
    """Kafka clients' headers (a list of pairs, a mapping, ``None``) as a tuple of ``(name, value)``; a value that
    is not bytes becomes ``b""`` (the decoders judge what they read)."""
    items = raw.items() if hasattr(raw, "items") else (raw or ())
    return tuple((str(k), v if isinstance(v, bytes) else b"") for k, v in items)


def record_of(raw: Any) -> Record:
    """A Kafka client's consumer record (kafka-python's or aiokafka's: the timestamp in milliseconds) as a
    :class:`Record`."""
    return Record(raw.topic, raw.partition, raw.offset, raw.key, raw.value, as_headers(raw.headers), raw.timestamp)


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


def _event_id_of(key: bytes | None) -> str:
    """The event id a record's key holds: non-empty UTF-8 of at most ``MAX_ID_CHARS`` characters."""
    if not key:
        raise EventDecodeError("missing_key", "the record has no key: the key is the event id")
    try:
        event_id = key.decode("utf-8")
    except UnicodeDecodeError:
        raise EventDecodeError("bad_key", "the key (the event id) is not UTF-8") from None
    if len(event_id) > MAX_ID_CHARS:
        raise EventDecodeError("bad_key", f"the key (the event id) is longer than {MAX_ID_CHARS} characters")
    return event_id


def _known_headers(headers: Headers) -> tuple[dict[str, str], dict[str, str]]:
    """``(headers, metadata)``: the convention's headers by lower-case name, and the ``meta-`` entries by the name
    after the prefix, as text. Other headers are left alone; a known one twice, or not UTF-8, is ``bad_header``."""
    if len(headers) > MAX_HEADERS:
        raise EventDecodeError("bad_header", f"the record has {len(headers)} headers, more than {MAX_HEADERS}")
    known: dict[str, str] = {}
    metadata: dict[str, str] = {}
    names = (CONTENT_TYPE_HEADER, SOURCE_HEADER, IMAGE_URI_HEADER, SCHEMA_VERSION_HEADER, EXAMPLE_HEADER)
    for name, raw in headers:
        lowered = name.lower()
        is_meta = lowered.startswith(METADATA_HEADER_PREFIX)
        if lowered not in names and not is_meta:
            continue
        if len(raw) > MAX_HEADER_BYTES:
            raise EventDecodeError("bad_header", f"header {name[:80]!r} is longer than {MAX_HEADER_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EventDecodeError("bad_header", f"header {name[:80]!r} is not UTF-8 text") from None
        target, slot = (metadata, name[len(METADATA_HEADER_PREFIX) :]) if is_meta else (known, lowered)
        if slot in target:
            raise EventDecodeError("bad_header", f"header {name[:80]!r} appears more than once")
        target[slot] = text
    if len(metadata) > MAX_METADATA_ENTRIES or any(
        not k or len(k) > MAX_METADATA_CHARS or len(v) > MAX_METADATA_CHARS for k, v in metadata.items()
    ):
        raise EventDecodeError(
            "bad_header",
            f"metadata holds at most {MAX_METADATA_ENTRIES} named entries of at most {MAX_METADATA_CHARS} characters",
        )
    return known, metadata


def _header_text(known: dict[str, str], name: str, *, required: bool = True, max_chars: int = MAX_ID_CHARS) -> str:
    value = known.get(name, "")
    if required and not value:
        raise EventDecodeError("missing_header", f"header {name!r} is missing or empty")
    if len(value) > max_chars:
        raise EventDecodeError("bad_header", f"header {name!r} is longer than {max_chars} characters")
    return value


def _header_schema(known: dict[str, str], supported: int, what: str) -> None:
    version = known.get(SCHEMA_VERSION_HEADER)
    if version is not None and version != str(supported):
        raise EventDecodeError(
            "unknown_schema_version",
            f"{what} schema version {version[:40]!r} is not supported (this reader: {supported})",
        )


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no record can carry it
        raise EventDecodeError("bad_header", f"{what} is not encodable as UTF-8") from None


def encode_image_event(event: ImageEvent) -> Message:
    """The record of ``event``: key the event id, value the image bytes (empty when it travels by URI), the rest in
    headers, the production time as the record's timestamp; :class:`EventDecodeError` for text no record can
    carry (a lone surrogate) or a time that is no Kafka timestamp."""
    if not 0 <= event.produced_at_ms < 2**63:
        raise EventDecodeError("bad_field", f"produced_at_ms {event.produced_at_ms} is not a Kafka timestamp")
    headers = [
        (CONTENT_TYPE_HEADER, _utf8(event.content_type, "content-type")),
        (SCHEMA_VERSION_HEADER, str(event.schema_version).encode()),
    ]
    if event.source:
        headers.append((SOURCE_HEADER, _utf8(event.source, "source")))
    if event.image_uri is not None:
        headers.append((IMAGE_URI_HEADER, _utf8(event.image_uri, "image-uri")))
    for k, v in event.metadata.items():
        name = METADATA_HEADER_PREFIX + k
        _utf8(name, "a metadata name")  # kafka clients encode header names as UTF-8 themselves
        headers.append((name, _utf8(v, f"metadata {k[:80]!r}")))
    return Message(_utf8(event.event_id, "the event id"), event.image, tuple(headers), event.produced_at_ms)


def check_image_event(event: ImageEvent) -> None:
    """Raise the :class:`EventDecodeError` the worker would dead-letter ``event`` with for its fields (producers
    call this before sending); the image itself is the worker's to judge."""
    decode_image_event(encode_image_event(event))


def decode_image_event(record: KafkaRecord) -> ImageEvent:
    """The event in a Kafka record; raises :class:`EventDecodeError` with a specific reason (``missing_key``,
    ``bad_key``, ``missing_header``, ``bad_header``, ``unknown_schema_version``, ``missing_image``)."""
    event_id = _event_id_of(record.key)
    known, metadata = _known_headers(record.headers)
    _header_schema(known, IMAGE_SCHEMA_VERSION, "image event")
    content_type = _header_text(known, CONTENT_TYPE_HEADER)
    uri = _header_text(known, IMAGE_URI_HEADER, required=False, max_chars=MAX_URI_CHARS) or None
    image = bytes(record.value or b"")
    if not image and not uri:
        raise EventDecodeError("missing_image", "the record has neither image bytes nor an image-uri header")
    if image and uri:
        raise EventDecodeError("bad_header", "an image travels inline or by image-uri (with an empty value), not both")
    timestamp = record.timestamp_ms
    return ImageEvent(
        event_id=event_id,
        content_type=content_type,
        image=image,
        image_uri=uri,
        source=_header_text(known, SOURCE_HEADER, required=False, max_chars=MAX_SOURCE_CHARS),
        produced_at_ms=timestamp if timestamp is not None and timestamp >= 0 else now_ms(),
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
    image_topic: str | None = None  # where the input image is: the learning loop reads it back from there
    image_partition: int | None = None
    image_offset: int | None = None
    schema_version: int = PREDICTION_SCHEMA_VERSION

    @property
    def label(self) -> str:
        return self.labels[0]


def encode_prediction(prediction: Prediction) -> bytes:
    return json.dumps(prediction.__dict__, separators=(",", ":")).encode()


def _from_json(value: bytes | None, build: Callable[[Any], T], reason: str, what: str) -> T:
    """``build`` applied to the JSON document in ``value``; :class:`EventDecodeError` with ``reason`` if it fails,
    or if the record is over :data:`MAX_JSON_RECORD_BYTES` (unknown fields are ignored, but not without bound)."""
    if value is not None and len(value) > MAX_JSON_RECORD_BYTES:
        raise EventDecodeError(reason, f"{what} is at most {MAX_JSON_RECORD_BYTES} bytes, not {len(value)}")
    raw = _json(value or b"", reason, what)
    try:
        return build(raw)
    except (ValueError, TypeError, AttributeError) as exc:  # the dataclass's own refusals
        raise EventDecodeError(reason, f"not {what}: {exc}") from exc


def _prediction(raw: Any) -> Prediction:
    if not isinstance(raw, dict):
        raise EventDecodeError("bad_prediction", "a prediction is a JSON object")
    _schema(raw, PREDICTION_SCHEMA_VERSION, "prediction")
    labels, scores = raw.get("labels"), raw.get("scores")
    if (
        not isinstance(labels, list)
        or not isinstance(scores, list)
        or not 0 < len(labels) == len(scores) <= MAX_LABELS
        or not all(isinstance(label, str) and 0 < len(label) <= MAX_ID_CHARS and _encodable(label) for label in labels)
        or not all(_number(x) for x in scores)
    ):
        raise EventDecodeError(
            "bad_prediction", f"labels and scores must be 1-{MAX_LABELS} strings and as many numbers"
        )
    for name in ("event_id", "model_name"):
        _text(raw, name)
    for name in ("model_version", "produced_at_ms", "received_at_ms", "predicted_at_ms"):
        _count(raw, name)
    source = _text(raw, "source", required=False, max_chars=MAX_SOURCE_CHARS)
    _text(raw, "image_topic", required=False, max_chars=MAX_TOPIC_CHARS)
    for name in ("image_partition", "image_offset"):
        if raw.get(name) is not None:
            _count(raw, name)
    known = {k: v for k, v in raw.items() if k in _PREDICTION_FIELDS}  # fields of later writers are ignored
    return Prediction(**{**known, "source": source})


_PREDICTION_FIELDS = frozenset(Prediction.__dataclass_fields__)


def decode_prediction(value: bytes | None) -> Prediction:
    """The prediction in a Kafka value; :class:`EventDecodeError` (``bad_prediction``, ``unknown_schema_version``)."""
    return _from_json(value, _prediction, "bad_prediction", "a prediction")


@dataclass(frozen=True)
class DeadLetter:
    """An event the worker could not process, with why, where it came from and (when small) its bytes."""

    reason: str
    message: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    event_id: str | None = None
    original: bytes | None = None  # the original record's value, key and headers: a replay sends them as they were
    failed_at_ms: int = field(default_factory=now_ms)
    original_key: bytes | None = None
    original_headers: Headers = ()
    schema_version: int = DEAD_LETTER_SCHEMA_VERSION


def build_dead_letter(
    error: PoisonError,
    origin: Record,
    event_id: str | None,
    keep_original_bytes: int,
    max_letter_bytes: int = MAX_DEAD_LETTER_BYTES,
) -> DeadLetter:
    """The dead letter of ``origin``, which failed with ``error``: its reason, where it came from and, when its
    value, key and headers come to at most ``keep_original_bytes``, the record itself (so that ``inferloop dlq
    replay`` can send it again exactly as it was)."""
    size = len(origin.value or b"") + len(origin.key or b"") + _headers_size(origin.headers)
    # a record with more headers than a dead letter holds is kept by its position alone (it could not be
    # replayed as it is anyway: it breaks the same bound on the way in)
    keep = (
        origin.value is not None
        and size <= keep_original_bytes
        and len(origin.headers) <= MAX_HEADERS
        and all(len(k) <= MAX_HEADER_NAME_CHARS for k, _ in origin.headers)
    )
    letter = DeadLetter(
        reason=error.reason,
        # text a record can carry (a path the OS decoded with surrogates stays readable), and short
        message=str(error).encode("utf-8", "replace").decode("utf-8")[:MAX_MESSAGE_CHARS],
        origin_topic=origin.topic,
        origin_partition=origin.partition,
        origin_offset=origin.offset,
        event_id=event_id,
        original=origin.value if keep else None,
        original_key=origin.key if keep else None,
        original_headers=origin.headers if keep else (),
    )
    # base64 and JSON's escapes (a header name in CJK is six bytes a character) make the letter larger than the
    # record: one that would not fit ``max_letter_bytes`` (the topic's record limit) keeps the origin's position
    if keep and len(encode_dead_letter(letter)) > min(max_letter_bytes, MAX_DEAD_LETTER_BYTES):
        letter = replace(letter, original=None, original_key=None, original_headers=())
    return letter


def _b64(data: bytes | None) -> str | None:
    return base64.b64encode(data).decode() if data is not None else None


def _unb64(raw: dict[str, Any], name: str, value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventDecodeError("bad_field", f"field {name!r} is base64 text or null")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise EventDecodeError("bad_field", f"field {name!r} is not base64: {exc}") from None


def encode_dead_letter(letter: DeadLetter) -> bytes:
    raw = {**letter.__dict__}
    raw["original"], raw["original_key"] = _b64(letter.original), _b64(letter.original_key)
    raw["original_headers"] = [{"key": k, "value": _b64(v)} for k, v in letter.original_headers]
    return json.dumps(raw, separators=(",", ":")).encode()


def _dead_letter(raw: Any) -> DeadLetter:
    if not isinstance(raw, dict):
        raise EventDecodeError("bad_dead_letter", "a dead letter is a JSON object")
    _schema(raw, DEAD_LETTER_SCHEMA_VERSION, "dead letter")
    image = _unb64(raw, "original", raw.get("original"))
    headers = raw.get("original_headers")
    headers = [] if headers is None else headers
    if (
        not isinstance(headers, list)
        or len(headers) > MAX_HEADERS
        or not all(
            isinstance(h, dict)
            and isinstance(h.get("key"), str)
            and len(h["key"]) <= MAX_HEADER_NAME_CHARS
            and _encodable(h["key"])
            for h in headers
        )
    ):
        raise EventDecodeError(
            "bad_field",
            f"field 'original_headers' is a list of at most {MAX_HEADERS} key/value pairs, each key UTF-8 text of at "
            f"most {MAX_HEADER_NAME_CHARS} characters",
        )
    original_headers = tuple((h["key"], _unb64(h, "original_headers", h.get("value")) or b"") for h in headers)
    event_id = raw.get("event_id")
    return DeadLetter(
        reason=_text(raw, "reason"),
        message=_text(raw, "message", required=False, max_chars=MAX_HEADER_BYTES),
        origin_topic=_text(raw, "origin_topic", max_chars=MAX_TOPIC_CHARS),
        origin_partition=_count(raw, "origin_partition"),
        origin_offset=_count(raw, "origin_offset"),
        event_id=_text(raw, "event_id", required=False) if event_id is not None else None,
        original=image,
        failed_at_ms=_count(raw, "failed_at_ms"),
        original_key=_unb64(raw, "original_key", raw.get("original_key")),
        original_headers=original_headers,
    )


def decode_dead_letter(value: bytes | None) -> DeadLetter:
    """The dead letter in a Kafka value, its original bytes decoded from base64; :class:`EventDecodeError`
    (``bad_dead_letter``) if it is not one."""
    return _from_json(value, _dead_letter, "bad_dead_letter", "a dead letter")


@dataclass(frozen=True)
class Feedback:
    """The true label of an event, from a person or a downstream system. Keyed by event id on its topic."""

    event_id: str
    label: str
    source: str = ""
    at_ms: int = field(default_factory=now_ms)
    schema_version: int = FEEDBACK_SCHEMA_VERSION


def encode_feedback(feedback: Feedback) -> bytes:
    return json.dumps(feedback.__dict__, separators=(",", ":")).encode()


def decode_feedback(value: bytes | None) -> Feedback:
    """Feedback in a Kafka value; raises :class:`EventDecodeError` with a specific reason."""
    if not value:
        raise EventDecodeError("empty_value", "the record has no value")
    if len(value) > MAX_FEEDBACK_BYTES:
        message = f"a feedback record is at most {MAX_FEEDBACK_BYTES} bytes, not {len(value)}"
        raise EventDecodeError("bad_field", message)
    raw = _json(value, "not_feedback", "feedback")
    if not isinstance(raw, dict):
        raise EventDecodeError("not_feedback", "feedback is not a JSON object")
    _schema(raw, FEEDBACK_SCHEMA_VERSION, "feedback")
    event_id, label = _text(raw, "event_id"), _text(raw, "label")
    at = _count(raw, "at_ms")
    source = _text(raw, "source", required=False, max_chars=MAX_SOURCE_CHARS)
    return Feedback(event_id=event_id, label=label, source=source, at_ms=at)


@dataclass(frozen=True)
class LabelledExample:
    """One record of the training log: an input image with its true label and what the model had predicted."""

    event_id: str
    label: str
    content_type: str
    image: bytes
    predicted_label: str
    predicted_score: float
    model_name: str
    model_version: int
    feedback_source: str = ""
    feedback_at_ms: int = 0
    predicted_at_ms: int = 0
    logged_at_ms: int = field(default_factory=now_ms)
    shadow_version: int | None = None  # the candidate scored in shadow on the same event, if any
    shadow_label: str = ""  # its top label
    # the label came from the trusted feedback topic (only authorised principals write it), not the open one;
    # set by the joiner from the topic, never from a field a producer writes
    feedback_trusted: bool = False
    schema_version: int = EXAMPLE_SCHEMA_VERSION

    @property
    def correct(self) -> bool:
        return self.label == self.predicted_label

    @property
    def shadow_correct(self) -> bool | None:
        return None if self.shadow_version is None else self.label == self.shadow_label


def encode_labelled_example(example: LabelledExample) -> Message:
    """The training-log record of ``example``, in the image events' convention: key the event id, value the image
    bytes, ``content-type`` and ``schema-version`` headers, and the label and lineage in the ``training-example``
    header (a JSON object, docs/schemas/training-example.schema.json); the logging time is the record's timestamp."""
    header = {
        k: v for k, v in example.__dict__.items() if k not in ("event_id", "image", "content_type", "schema_version")
    }
    if example.shadow_version is None:  # absent rather than null: a candidate answered, or nothing is said
        del header["shadow_version"], header["shadow_label"]
    headers = (
        (CONTENT_TYPE_HEADER, example.content_type.encode()),
        (SCHEMA_VERSION_HEADER, str(example.schema_version).encode()),
        (EXAMPLE_HEADER, json.dumps(header, separators=(",", ":")).encode()),
    )
    return Message(example.event_id.encode(), example.image, headers, example.logged_at_ms)


def decode_labelled_example(record: KafkaRecord) -> LabelledExample:
    """The example in a training-log record; :class:`EventDecodeError` when it is not one or a field has the
    wrong type, so that one bad record is skipped (and counted) rather than failing every later retraining."""
    event_id = _event_id_of(record.key)
    known, _ = _known_headers(record.headers)
    _header_schema(known, EXAMPLE_SCHEMA_VERSION, "training-log record")
    content_type = _header_text(known, CONTENT_TYPE_HEADER)
    if EXAMPLE_HEADER not in known:
        raise EventDecodeError("missing_header", f"header {EXAMPLE_HEADER!r} is missing")
    header = _json(known[EXAMPLE_HEADER].encode(), "bad_header", f"header {EXAMPLE_HEADER!r}")
    if not isinstance(header, dict):
        raise EventDecodeError("bad_header", f"header {EXAMPLE_HEADER!r} is not a JSON object")
    if not record.value:
        raise EventDecodeError("missing_image", "a training-log record's value is the image, and it is empty")
    for name in ("label", "predicted_label", "model_name"):
        _text(header, name)
    header["feedback_source"] = _text(header, "feedback_source", required=False, max_chars=MAX_SOURCE_CHARS)
    for name in ("model_version", "logged_at_ms"):
        _count(header, name)
    for name in ("feedback_at_ms", "predicted_at_ms"):
        header[name] = _count(header, name, required=False)
    if header.get("shadow_version") is not None:
        _count(header, "shadow_version")
        _text(header, "shadow_label")
    else:  # no candidate answered: a label without its version means nothing
        _text(header, "shadow_label", required=False)
        header["shadow_version"], header["shadow_label"] = None, ""
    if not _number(header.get("predicted_score")):
        raise EventDecodeError("missing_field", "field 'predicted_score' is missing or not a number")
    if not isinstance(header.get("feedback_trusted", False), bool):
        raise EventDecodeError("bad_field", "field 'feedback_trusted' is not a boolean")
    known_fields = {k: v for k, v in header.items() if k in _EXAMPLE_FIELDS}  # fields of later versions are ignored
    return LabelledExample(**known_fields, event_id=event_id, content_type=content_type, image=bytes(record.value))


_EXAMPLE_FIELDS = frozenset(LabelledExample.__dataclass_fields__) - {
    "event_id",
    "image",
    "content_type",
    "schema_version",
}


@dataclass(frozen=True)
class Promotion:
    """The announced state of one model, keyed by its name on the compacted promotions topic: the version that
    computes every prediction (``serving``) and the candidate scored in shadow beside it (``shadow``), with why.

    Only versions the publisher verified (loaded on every Triton replica, smoke-tested by pinned requests) are
    announced; the latest record of a model is its state, so a rollback is one more record.
    """

    model_name: str
    serving: int
    shadow: int | None = None
    action: str = "promote"  # one of PROMOTION_ACTIONS
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    announced_at_ms: int = field(default_factory=now_ms)
    schema_version: int = PROMOTION_SCHEMA_VERSION


def encode_promotion(promotion: Promotion) -> bytes:
    return json.dumps(promotion.__dict__, separators=(",", ":"), sort_keys=True).encode()


def _promotion(raw: Any) -> Promotion:
    if not isinstance(raw, dict):
        raise EventDecodeError("bad_promotion", "a promotion is a JSON object")
    _schema(raw, PROMOTION_SCHEMA_VERSION, "promotion")
    model = _text(raw, "model_name")
    serving = _count(raw, "serving")
    if serving < 1:
        raise EventDecodeError("bad_field", "field 'serving' is a version number (1 or more)")
    shadow = raw.get("shadow")
    if shadow is not None and (_count(raw, "shadow") < 1 or shadow == serving):
        raise EventDecodeError("bad_field", "field 'shadow' is another version number than 'serving'")
    action = _text(raw, "action")
    if action not in PROMOTION_ACTIONS:
        raise EventDecodeError("bad_field", f"field 'action' is one of {', '.join(PROMOTION_ACTIONS)}")
    evidence = raw.get("evidence")
    evidence = {} if evidence is None else evidence
    if (
        not isinstance(evidence, dict)
        or len(evidence) > MAX_EVIDENCE_ENTRIES
        or not all(isinstance(k, str) and len(k) <= MAX_ID_CHARS and _encodable(k) for k in evidence)
        or not all(
            v is None
            or (_number(v) and len(str(v)) <= MAX_ID_CHARS)
            or (isinstance(v, str) and len(v) <= MAX_ID_CHARS and _encodable(v))
            for v in evidence.values()
        )
    ):
        raise EventDecodeError("bad_field", f"field 'evidence' is up to {MAX_EVIDENCE_ENTRIES} numbers or short texts")
    return Promotion(
        model_name=model,
        serving=serving,
        shadow=shadow,
        action=action,
        reason=_text(raw, "reason", required=False, max_chars=MAX_SOURCE_CHARS),
        evidence=dict(evidence),
        announced_at_ms=_count(raw, "announced_at_ms"),
    )


def decode_promotion(value: bytes | None) -> Promotion:
    """The promotion in a Kafka value; :class:`EventDecodeError` (``bad_promotion``, ``bad_field``...)."""
    return _from_json(value, _promotion, "bad_promotion", "a promotion")
