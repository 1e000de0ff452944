"""Wire formats of inferloop's topics: image events, predictions, dead letters, feedback, labelled examples and
promotions.

One encode/decode pair each.

Image events carry the image bytes raw, never base64: a Kafka value is a small binary frame ::

    b"ILE" | schema version (1 byte) | header length (4 bytes, big-endian) | header (JSON) | image bytes

The JSON header holds the event id, time, source, content type, an optional image URI (for images too large to
travel inline; read through fsspec, so ``file://`` and object stores work) and optional metadata. The key of
the Kafka record is the event id. Predictions, dead letters, feedback and promotions (the announced version of
each model) are small JSON documents with a ``schema_version``; shadow predictions are predictions, on a topic
of their own. Labelled examples (the training log) use a frame like image events' (magic ``ILX``), since they
carry the image too. See ``docs/events.md``.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from inferloop.errors import EventDecodeError, PoisonError

IMAGE_MAGIC = b"ILE"
EXAMPLE_MAGIC = b"ILX"
IMAGE_SCHEMA_VERSION = 1
FEEDBACK_SCHEMA_VERSION = 1
EXAMPLE_SCHEMA_VERSION = 1
PREDICTION_SCHEMA_VERSION = 1
DEAD_LETTER_SCHEMA_VERSION = 1
PROMOTION_SCHEMA_VERSION = 1
_FRAME_HEAD = struct.Struct(">3sBI")
MAX_HEADER_BYTES = 64 * 1024
# Bounds of the text fields every decoder enforces (docs/events.md): a record within them always fits the next
# topic's record (a prediction, a training-log example) whatever its image.
MAX_ID_CHARS = 200  # event ids, labels, model names, content types
MAX_SOURCE_CHARS = 256  # the free-text ``source`` of image events and feedback
MAX_METADATA_ENTRIES = 32
MAX_METADATA_CHARS = 1024  # each metadata key or value
MAX_LABELS = 1000  # class labels (and scores) in one prediction
MAX_TOPIC_CHARS = 249  # Kafka's own limit on topic names
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
    return value


def _count(raw: dict[str, Any], name: str, *, required: bool = True) -> int:
    """``raw[name]`` as a non-negative integer (booleans refused); 0 when absent and optional."""
    value = raw.get(name)
    if value is None and not required:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise EventDecodeError(
            "missing_field" if required else "bad_field", f"field {name!r} is missing or not a non-negative integer"
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


def _optional(raw: dict[str, Any], name: str, kind: type) -> Any:
    """``raw[name]``, which may be absent or null, else of ``kind``."""
    value = raw.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise EventDecodeError("bad_field", f"field {name!r} is not a {kind.__name__}")
    return value


@dataclass(frozen=True)
class Record:
    """One Kafka record as consumed: where it came from, its key and value (``None``: a tombstone)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


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


def _frame(magic: bytes, version: int, header: dict[str, Any], payload: bytes) -> bytes:
    raw_header = json.dumps(header, separators=(",", ":")).encode()
    return _FRAME_HEAD.pack(magic, version, len(raw_header)) + raw_header + payload


def _unframe(value: bytes | None, magic: bytes, version_supported: int, what: str) -> tuple[dict[str, Any], bytes]:
    """``(header, payload)`` of a frame; raises :class:`EventDecodeError` with a specific reason."""
    if not value:
        raise EventDecodeError("empty_value", "the record has no value")
    if len(value) < _FRAME_HEAD.size or value[:3] != magic:
        article = "an" if what[0] in "aeiou" else "a"
        raise EventDecodeError(f"not_{article}_{what}", f"the value does not start with an inferloop {what} frame")
    _, version, header_len = _FRAME_HEAD.unpack_from(value)
    if version != version_supported:
        raise EventDecodeError(
            "unknown_schema_version",
            f"{what} schema version {version} is not supported (this worker: {version_supported})",
        )
    if header_len > MAX_HEADER_BYTES or _FRAME_HEAD.size + header_len > len(value):
        raise EventDecodeError("bad_header", f"header length {header_len} does not fit the {len(value)}-byte value")
    header = _json(value[_FRAME_HEAD.size : _FRAME_HEAD.size + header_len], "bad_header", "the header")
    if not isinstance(header, dict):
        raise EventDecodeError("bad_header", "header is not a JSON object")
    return header, bytes(value[_FRAME_HEAD.size + header_len :])


def _image_header(event: ImageEvent) -> dict[str, Any]:
    header: dict[str, Any] = {
        "event_id": event.event_id,
        "content_type": event.content_type,
        "source": event.source,
        "produced_at_ms": event.produced_at_ms,
    }
    if event.image_uri is not None:
        header["image_uri"] = event.image_uri
    if event.metadata:
        header["metadata"] = event.metadata
    return header


def encode_image_event(event: ImageEvent) -> bytes:
    return _frame(IMAGE_MAGIC, event.schema_version, _image_header(event), event.image)


def check_image_event(event: ImageEvent) -> None:
    """Raise the :class:`EventDecodeError` the worker would dead-let ``event`` with for its fields (producers
    call this before sending); the image itself is the worker's to judge."""
    _image_event_from_header(_image_header(event), event.image)


def decode_image_event(value: bytes | None) -> ImageEvent:
    """The event in a Kafka value; raises :class:`EventDecodeError` with a specific reason."""
    header, image = _unframe(value, IMAGE_MAGIC, IMAGE_SCHEMA_VERSION, "image_event")
    return _image_event_from_header(header, image)


def _image_event_from_header(header: dict[str, Any], image: bytes) -> ImageEvent:
    uri = _optional(header, "image_uri", str)
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise EventDecodeError("bad_field", "metadata must map strings to strings")
    if len(metadata) > MAX_METADATA_ENTRIES or any(
        len(k) > MAX_METADATA_CHARS or len(v) > MAX_METADATA_CHARS for k, v in metadata.items()
    ):
        raise EventDecodeError(
            "bad_field",
            f"metadata holds at most {MAX_METADATA_ENTRIES} entries of at most {MAX_METADATA_CHARS} characters",
        )
    event_id, content_type = _text(header, "event_id"), _text(header, "content_type")
    if not image and not uri:
        raise EventDecodeError("missing_image", "the event has neither inline image bytes nor an image_uri")
    return ImageEvent(
        event_id=event_id,
        content_type=content_type,
        image=image,
        image_uri=uri,
        source=_text(header, "source", required=False, max_chars=MAX_SOURCE_CHARS),
        produced_at_ms=_count(header, "produced_at_ms"),
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
    """``build`` applied to the JSON document in ``value``; :class:`EventDecodeError` with ``reason`` if it fails."""
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
        or not all(isinstance(label, str) and 0 < len(label) <= MAX_ID_CHARS for label in labels)
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in scores)
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
    return Prediction(**{**raw, "source": source})


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
    original: bytes | None = None
    failed_at_ms: int = field(default_factory=now_ms)
    schema_version: int = DEAD_LETTER_SCHEMA_VERSION


def build_dead_letter(error: PoisonError, origin: Record, event_id: str | None, keep_original_bytes: int) -> DeadLetter:
    """The dead letter of ``origin``, which failed with ``error``: its reason, where it came from and, up to
    ``keep_original_bytes``, its bytes (so that ``inferloop dlq replay`` can send it again)."""
    keep = origin.value is not None and len(origin.value) <= keep_original_bytes
    return DeadLetter(
        reason=error.reason,
        message=str(error),
        origin_topic=origin.topic,
        origin_partition=origin.partition,
        origin_offset=origin.offset,
        event_id=event_id,
        original=origin.value if keep else None,
    )


def encode_dead_letter(letter: DeadLetter) -> bytes:
    raw = {**letter.__dict__}
    raw["original"] = base64.b64encode(letter.original).decode() if letter.original is not None else None
    return json.dumps(raw, separators=(",", ":")).encode()


def _dead_letter(raw: Any) -> DeadLetter:
    if not isinstance(raw, dict):
        raise EventDecodeError("bad_dead_letter", "a dead letter is a JSON object")
    _schema(raw, DEAD_LETTER_SCHEMA_VERSION, "dead letter")
    original = raw.get("original")
    if original is not None and not isinstance(original, str):
        raise EventDecodeError("bad_field", "field 'original' is base64 text or null")
    try:
        image = base64.b64decode(original, validate=True) if original is not None else None
    except ValueError as exc:
        raise EventDecodeError("bad_field", f"field 'original' is not base64: {exc}") from None
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


def encode_labelled_example(example: LabelledExample) -> bytes:
    header = {k: v for k, v in example.__dict__.items() if k not in ("image", "schema_version")}
    if example.shadow_version is None:  # absent, so that readers from before shadow scoring read the record
        del header["shadow_version"], header["shadow_label"]
    if not example.feedback_trusted:  # likewise for readers from before the trusted topic
        del header["feedback_trusted"]
    return _frame(EXAMPLE_MAGIC, example.schema_version, header, example.image)


def decode_labelled_example(value: bytes | None) -> LabelledExample:
    """The example in a training-log value; :class:`EventDecodeError` when it is not one or a field has the
    wrong type, so that one bad record is skipped (and counted) rather than failing every later retraining."""
    header, image = _unframe(value, EXAMPLE_MAGIC, EXAMPLE_SCHEMA_VERSION, "labelled_example")
    for name in ("event_id", "label", "content_type", "predicted_label", "model_name"):
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
    score = header.get("predicted_score")
    if not isinstance(score, int | float) or isinstance(score, bool):
        raise EventDecodeError("missing_field", "field 'predicted_score' is missing or not a number")
    if not isinstance(header.get("feedback_trusted", False), bool):
        raise EventDecodeError("bad_field", "field 'feedback_trusted' is not a boolean")
    known = {k: v for k, v in header.items() if k in _EXAMPLE_FIELDS}  # fields of later versions are ignored
    return LabelledExample(**known, image=image)


_EXAMPLE_FIELDS = frozenset(LabelledExample.__dataclass_fields__) - {"image", "schema_version"}


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
        or not all(isinstance(k, str) and len(k) <= MAX_ID_CHARS for k in evidence)
        or not all(
            v is None or (isinstance(v, int | float | str) and not isinstance(v, bool) and len(str(v)) <= MAX_ID_CHARS)
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
