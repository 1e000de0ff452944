"""The published JSON Schemas (``docs/schemas``) against the project's own encoders and decoders.

Every schema is a valid draft 2020-12 schema with a unique ``$id``; every record the encoders write validates; the
schemas and the decoders agree, both ways, on hand-written documents (each bad one refused by both, each at a
bound or with an unknown field accepted by both) and on documents a property test damages field by field. Where
a schema cannot say what its decoder enforces (or deliberately says more), the case is listed here, the schema's
text says so, and the test checks that it is still so.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing.exceptions import Unresolvable

from inferloop import events as ev
from inferloop.errors import EventDecodeError
from tests.fuzz.decoder_formats import without_project_constants
from tests.schemas import (
    SCHEMA_DIR,
    assert_valid,
    errors,
    headers_document,
    load_schema,
    registry,
    schema_names,
    validator,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_URI = "https://inferloop.dev/schemas/"
EXPECTED = {
    "prediction",
    "shadow-prediction",
    "dead-letter",
    "feedback",
    "training-example",
    "promotion",
    "image-event-headers",
}
# Formats whose document carries its own schema_version; the other two are versioned by the record's
# schema-version header.
DOCUMENTS = ("prediction", "shadow-prediction", "dead-letter", "feedback", "promotion")
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# -- the records: one full and one minimal of each format, from the project's own encoders --------------------------

FULL = {
    "prediction": ev.Prediction(
        event_id="e1",
        model_name="digits",
        model_version=2,
        labels=["3", "8", "5"],
        scores=[0.981, 0.012, 0],
        produced_at_ms=1795885923605,
        received_at_ms=1795885923611,
        predicted_at_ms=1795885923617,
        source="cam-3",
        image_topic="inferloop.images",
        image_partition=2,
        image_offset=1187,
    ),
    "dead-letter": ev.DeadLetter(
        reason="unknown_schema_version",
        message="image event schema version '9' is not supported",
        origin_topic="inferloop.images",
        origin_partition=2,
        origin_offset=1187,
        event_id="e1",
        original=b"\x89PNG\r\n\x1a\n",
        failed_at_ms=1795885923700,
        original_key=b"e1",
        original_headers=(("content-type", b"image/png"), ("traceparent", b"\xff\x00"), ("empty", b"")),
    ),
    "feedback": ev.Feedback(event_id="e1", label="7", source="reviewer-12", at_ms=1795885930000),
    "training-example": ev.LabelledExample(
        event_id="e1",
        label="7",
        content_type="image/png",
        image=b"\x89PNG",
        predicted_label="1",
        predicted_score=0.62,
        model_name="digits",
        model_version=2,
        feedback_source="reviewer-12",
        feedback_at_ms=1795885930000,
        predicted_at_ms=1795885923617,
        logged_at_ms=1795885931000,
        shadow_version=3,
        shadow_label="7",
        feedback_trusted=True,
    ),
    "promotion": ev.Promotion(
        model_name="digits",
        serving=3,
        shadow=4,
        action="shadow",
        reason="v4 passed the gate",
        evidence={"candidate_version": 4, "accuracy": 0.97, "note": "gate", "missing": None},
        announced_at_ms=1795885990617,
    ),
    "image-event-headers": ev.ImageEvent(
        "e1", "image/png", b"\x89PNG", source="cam-3", produced_at_ms=7, metadata={"camera": "north", "Site": ""}
    ),
}
MINIMAL = {
    "prediction": ev.Prediction("e2", "digits", 0, ["7"], [1.0], 0, 0, 0),
    "dead-letter": ev.DeadLetter("internal_error", "", "inferloop.images", 0, 0, failed_at_ms=0),
    "feedback": ev.Feedback(event_id="e2", label="7", at_ms=0),
    "training-example": ev.LabelledExample("e2", "7", "image/png", b"\x01", "7", 1.0, "digits", 0, logged_at_ms=0),
    "promotion": ev.Promotion(model_name="digits", serving=1, announced_at_ms=0),
    "image-event-headers": ev.ImageEvent("e2", "image/png", b"\x01", produced_at_ms=0),
}
BY_URI = ev.ImageEvent("e3", "image/jpeg", image_uri="file:///data/7.jpg", produced_at_ms=0)


def _schema_of(name: str) -> str:
    return "prediction" if name == "shadow-prediction" else name


def encode(record: Any) -> bytes | ev.Message:
    """The record's encoding by its own encoder: JSON bytes, or a Kafka message for the two header formats."""
    encoders: dict[type, Callable[[Any], Any]] = {
        ev.Prediction: ev.encode_prediction,
        ev.DeadLetter: ev.encode_dead_letter,
        ev.Feedback: ev.encode_feedback,
        ev.LabelledExample: ev.encode_labelled_example,
        ev.Promotion: ev.encode_promotion,
        ev.ImageEvent: ev.encode_image_event,
    }
    out: bytes | ev.Message = encoders[type(record)](record)
    return out


def document_of(record: Any) -> Any:
    """What the schema of ``record``'s format describes, from the encoder's output: the JSON document, the
    training-example header's object, or an image event's headers as an object."""
    encoded = encode(record)
    if isinstance(record, ev.LabelledExample):
        assert isinstance(encoded, ev.Message)
        return json.loads(dict(encoded.headers)[ev.EXAMPLE_HEADER])
    if isinstance(record, ev.ImageEvent):
        assert isinstance(encoded, ev.Message)
        return headers_document(encoded.headers)
    assert isinstance(encoded, bytes)
    return json.loads(encoded)


def base(name: str, *, minimal: bool = False) -> Any:
    """A fresh copy of the valid document of ``name``'s format (full, or with only what is required)."""
    return document_of((MINIMAL if minimal else FULL)[_schema_of(name)])


def changed(name: str, fields: dict[str, Any]) -> Any:
    return {**base(name), **fields}


def without(name: str, *fields: str) -> Any:
    document = base(name)
    for field in fields:
        del document[field]
    return document


# -- the decoders, given a document ----------------------------------------------------------------------------------


def _dumps(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _decode_training_example(document: Any) -> Any:
    headers = (
        (ev.CONTENT_TYPE_HEADER, b"image/png"),
        (ev.SCHEMA_VERSION_HEADER, b"1"),
        (ev.EXAMPLE_HEADER, _dumps(document)),
    )
    return ev.decode_labelled_example(ev.Message(b"e1", b"\x89PNG", headers, 7))


def _decode_image_event_headers(document: dict[str, str]) -> Any:
    """The image event of a record with these headers: an inline image, or an empty value when an image-uri is given."""
    by_uri = any(name.lower() == ev.IMAGE_URI_HEADER and value for name, value in document.items())
    headers = tuple((name, value.encode()) for name, value in document.items())
    return ev.decode_image_event(ev.Message(b"e1", b"" if by_uri else b"\x89PNG", headers, 7))


DECODERS: dict[str, Callable[[Any], Any]] = {
    "prediction": lambda document: ev.decode_prediction(_dumps(document)),
    "shadow-prediction": lambda document: ev.decode_prediction(_dumps(document)),
    "dead-letter": lambda document: ev.decode_dead_letter(_dumps(document)),
    "feedback": lambda document: ev.decode_feedback(_dumps(document)),
    "training-example": _decode_training_example,
    "promotion": lambda document: ev.decode_promotion(_dumps(document)),
    "image-event-headers": _decode_image_event_headers,
}


def decoder_accepts(name: str, document: Any) -> bool:
    """Whether the decoder of ``name``'s format reads ``document``; any error but its decode error propagates."""
    try:
        DECODERS[name](document)
    except EventDecodeError:
        return False
    return True


def schema_accepts(name: str, document: Any) -> bool:
    return bool(validator(name).is_valid(document))


# -- (1) the schema files ----------------------------------------------------------------------------------------------


def _walk(node: Any) -> list[dict[str, Any]]:
    """Every object in a JSON value, itself included."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found += _walk(value)
    elif isinstance(node, list):
        for value in node:
            found += _walk(value)
    return found


def test_the_published_schemas_are_the_expected_ones_with_unique_ids() -> None:
    assert set(schema_names()) == EXPECTED
    ids = [load_schema(name)["$id"] for name in schema_names()]
    assert len(set(ids)) == len(ids), f"two schemas share an $id: {sorted(ids)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_schema_is_a_valid_draft_2020_12_schema_open_to_unknown_fields(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT
    assert schema["$id"] == f"{BASE_URI}{name}.schema.json"
    assert schema["title"].strip() and schema["description"].strip()
    assert re.search("Readers must ignore (fields|headers) they do not know", schema["description"])
    for node in _walk(schema):
        assert node.get("additionalProperties", True) is not False, f"{name} closes an object to unknown fields"
        assert node.get("unevaluatedProperties", True) is not False, f"{name} closes an object to unknown fields"
    text = (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    assert text == json.dumps(schema, indent=2, ensure_ascii=False) + "\n", "format it: 2-space JSON, one final newline"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_a_document_format_requires_schema_version_1(name: str) -> None:
    schema = load_schema(name)
    assert schema["properties"]["schema_version"]["const"] == 1
    assert schema["properties"]["schema_version"]["type"] == "integer"
    assert "schema_version" in schema["required"]


@pytest.mark.parametrize("name", ["training-example", "image-event-headers"])
def test_a_header_format_is_versioned_by_the_schema_version_header(name: str) -> None:
    schema = load_schema(name)
    assert "schema_version" not in schema.get("required", []), "the version travels in the record's header"
    assert "schema-version" in schema["description"] or "schema-version" in schema["properties"]


# -- the helper ---------------------------------------------------------------------------------------------------


def test_assert_valid_lists_every_error_and_takes_bytes_or_text() -> None:
    assert_valid("prediction", ev.encode_prediction(FULL["prediction"]))  # the encoder's bytes as they are
    assert_valid("prediction", ev.encode_prediction(FULL["prediction"]).decode())
    bad = {**base("prediction"), "event_id": "", "model_version": -1, "schema_version": 2}
    del bad["labels"]
    with pytest.raises(AssertionError) as failure:
        assert_valid("prediction", bad)
    report = str(failure.value)
    assert "4 error(s)" in report
    for where in ("$.event_id", "$.model_version", "$.schema_version", "'labels' is a required property"):
        assert where in report, report
    assert len(errors("prediction", bad)) == 4
    with pytest.raises(ValueError, match="NaN"):  # parsed strictly, as the decoders parse
        assert_valid("prediction", b'{"scores": [NaN]}')
    with pytest.raises(LookupError, match="no schema"):
        validator("no-such-format")


def test_references_resolve_from_the_local_files_and_nothing_is_fetched() -> None:
    bad = {**base("prediction"), "labels": []}
    assert not schema_accepts("shadow-prediction", bad), "the $ref to the prediction schema was not followed"
    assert schema_accepts("shadow-prediction", base("prediction"))
    elsewhere = Draft202012Validator({"$ref": "https://example.com/elsewhere.schema.json"}, registry=registry())
    with pytest.raises(Unresolvable):
        elsewhere.validate({})


def test_headers_document_refuses_what_a_reader_refuses_and_leaves_other_headers_alone() -> None:
    assert headers_document([("content-type", b"image/png"), ("traceparent", b"\xff")]) == {
        "content-type": "image/png",
        "traceparent": "\ufffd",
    }
    with pytest.raises(AssertionError, match="more than once"):
        headers_document([("content-type", b"image/png"), ("Content-Type", b"image/jpeg")])
    with pytest.raises(AssertionError, match="more than once"):
        headers_document([("meta-a", b"1"), ("META-a", b"2")])
    with pytest.raises(AssertionError, match="not UTF-8"):
        headers_document([("content-type", b"\xff")])


# -- (2) the encoders' records validate ----------------------------------------------------------------------------


@pytest.mark.parametrize("minimal", [False, True], ids=["full", "minimal"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_records_of_the_projects_own_encoders_validate(name: str, minimal: bool) -> None:
    document = base(name, minimal=minimal)
    assert decoder_accepts(name, document), "the example record itself is not valid: fix the test"
    assert_valid(name, document)


def test_the_headers_of_an_image_event_sent_by_uri_validate() -> None:
    document = document_of(BY_URI)
    assert document["image-uri"] == "file:///data/7.jpg"
    assert ev.decode_image_event(ev.encode_image_event(BY_URI)) == BY_URI
    assert_valid("image-event-headers", document)


def test_the_optional_fields_are_what_full_and_minimal_records_differ_by() -> None:
    """The minimal records leave out (or null) the optional fields the full ones fill, so the test above covers both."""
    for name in EXPECTED:
        full, minimal = base(name), base(name, minimal=True)
        required = set(load_schema(_schema_of(name)).get("required", []))
        optional_in_full = {k for k, v in full.items() if k not in required and v not in (None, "", [], {}, False)}
        optional_in_minimal = {k for k, v in minimal.items() if k not in required and v not in (None, "", [], {}, 0)}
        assert optional_in_full, f"the full {name} fills no optional field"
        assert optional_in_minimal <= {"schema-version"}, f"the minimal {name} fills {optional_in_minimal}"


def test_a_dead_letter_of_a_kept_record_and_of_a_dropped_one_validate() -> None:
    origin = ev.Record("inferloop.images", 1, 5, b"e1", b"x" * 10, (("content-type", b"image/png"),), 7)
    error = EventDecodeError("missing_header", "header 'content-type' is missing or empty")
    for keep in (1024, 0):
        letter = ev.build_dead_letter(error, origin, "e1", keep_original_bytes=keep)
        assert (letter.original is not None) == (keep > 0)
        assert_valid("dead-letter", ev.encode_dead_letter(letter))


# -- (3) the schemas agree with the decoders on hand-written documents -----------------------------------------------

A201, A250, A257 = "a" * 201, "a" * 250, "a" * 257


def _more_headers(total: int) -> dict[str, str]:
    """Unknown headers that bring the full image event's headers to ``total``."""
    return {f"x-{i}": "" for i in range(total - len(base("image-event-headers")))}


REFUSED: list[tuple[str, str, Any]] = [
    ("prediction", "a count past a Java long", changed("prediction", {"model_version": 2**63})),
    ("prediction", "a score past a float", changed("prediction", {"scores": [10**400, 0.1, 0.0]})),
    ("prediction", "not an object", ["e1"]),
    ("prediction", "missing event_id", without("prediction", "event_id")),
    ("prediction", "missing labels", without("prediction", "labels")),
    ("prediction", "missing scores", without("prediction", "scores")),
    ("prediction", "missing model_version", without("prediction", "model_version")),
    ("prediction", "missing predicted_at_ms", without("prediction", "predicted_at_ms")),
    ("prediction", "missing schema_version", without("prediction", "schema_version")),
    ("prediction", "schema_version 2", changed("prediction", {"schema_version": 2})),
    ("prediction", "schema_version 0", changed("prediction", {"schema_version": 0})),
    ("prediction", "schema_version as text", changed("prediction", {"schema_version": "1"})),
    ("prediction", "schema_version a boolean", changed("prediction", {"schema_version": True})),
    ("prediction", "model_version as text", changed("prediction", {"model_version": "2"})),
    ("prediction", "model_version a boolean", changed("prediction", {"model_version": True})),
    ("prediction", "model_version a fraction", changed("prediction", {"model_version": 2.5})),
    ("prediction", "model_version null", changed("prediction", {"model_version": None})),
    ("prediction", "event_id a number", changed("prediction", {"event_id": 5})),
    ("prediction", "empty event_id", changed("prediction", {"event_id": ""})),
    ("prediction", "event_id over 200", changed("prediction", {"event_id": A201})),
    ("prediction", "model_name over 200", changed("prediction", {"model_name": A201})),
    ("prediction", "labels a string", changed("prediction", {"labels": "3"})),
    ("prediction", "a label over 200", changed("prediction", {"labels": [A201, "8", "5"]})),
    ("prediction", "an empty label", changed("prediction", {"labels": ["", "8", "5"]})),
    ("prediction", "a label a number", changed("prediction", {"labels": [3, "8", "5"]})),
    ("prediction", "no labels", changed("prediction", {"labels": [], "scores": []})),
    ("prediction", "1001 labels", changed("prediction", {"labels": ["x"] * 1001, "scores": [0.0] * 1001})),
    ("prediction", "1001 labels, 1000 scores", changed("prediction", {"labels": ["x"] * 1001, "scores": [0] * 1000})),
    ("prediction", "1000 labels, 1001 scores", changed("prediction", {"labels": ["x"] * 1000, "scores": [0] * 1001})),
    ("prediction", "a score as text", changed("prediction", {"scores": ["0.9", 0.1, 0.0]})),
    ("prediction", "a score a boolean", changed("prediction", {"scores": [True, 0.1, 0.0]})),
    ("prediction", "a score null", changed("prediction", {"scores": [None, 0.1, 0.0]})),
    ("prediction", "negative produced_at_ms", changed("prediction", {"produced_at_ms": -1})),
    ("prediction", "negative received_at_ms", changed("prediction", {"received_at_ms": -1})),
    ("prediction", "negative image_offset", changed("prediction", {"image_offset": -1})),
    ("prediction", "image_partition as text", changed("prediction", {"image_partition": "2"})),
    ("prediction", "source over 256", changed("prediction", {"source": A257})),
    ("prediction", "source a number", changed("prediction", {"source": 3})),
    ("prediction", "image_topic over 249", changed("prediction", {"image_topic": A250})),
    ("prediction", "image_topic a list", changed("prediction", {"image_topic": []})),
    ("shadow-prediction", "missing scores", without("prediction", "scores")),
    ("shadow-prediction", "negative model_version", changed("prediction", {"model_version": -1})),
    ("shadow-prediction", "schema_version 2", changed("prediction", {"schema_version": 2})),
    ("dead-letter", "not an object", "internal_error"),
    ("dead-letter", "missing reason", without("dead-letter", "reason")),
    ("dead-letter", "missing origin_topic", without("dead-letter", "origin_topic")),
    ("dead-letter", "missing origin_partition", without("dead-letter", "origin_partition")),
    ("dead-letter", "missing origin_offset", without("dead-letter", "origin_offset")),
    ("dead-letter", "missing failed_at_ms", without("dead-letter", "failed_at_ms")),
    ("dead-letter", "missing schema_version", without("dead-letter", "schema_version")),
    ("dead-letter", "schema_version 2", changed("dead-letter", {"schema_version": 2})),
    ("dead-letter", "empty reason", changed("dead-letter", {"reason": ""})),
    ("dead-letter", "reason over 200", changed("dead-letter", {"reason": A201})),
    ("dead-letter", "message over 65536", changed("dead-letter", {"message": "m" * (ev.MAX_HEADER_BYTES + 1)})),
    ("dead-letter", "message a number", changed("dead-letter", {"message": 5})),
    ("dead-letter", "empty origin_topic", changed("dead-letter", {"origin_topic": ""})),
    ("dead-letter", "origin_topic over 249", changed("dead-letter", {"origin_topic": A250})),
    ("dead-letter", "negative origin_offset", changed("dead-letter", {"origin_offset": -1})),
    ("dead-letter", "origin_partition a boolean", changed("dead-letter", {"origin_partition": False})),
    ("dead-letter", "failed_at_ms as text", changed("dead-letter", {"failed_at_ms": "now"})),
    ("dead-letter", "event_id a number", changed("dead-letter", {"event_id": 5})),
    ("dead-letter", "event_id over 200", changed("dead-letter", {"event_id": A201})),
    ("dead-letter", "original not base64", changed("dead-letter", {"original": "not base64!"})),
    ("dead-letter", "original badly padded", changed("dead-letter", {"original": "AAA"})),
    ("dead-letter", "original with a newline", changed("dead-letter", {"original": "AAAA\n"})),
    ("dead-letter", "original a number", changed("dead-letter", {"original": 5})),
    ("dead-letter", "original_key not base64", changed("dead-letter", {"original_key": "A"})),
    ("dead-letter", "original_headers a string", changed("dead-letter", {"original_headers": "content-type"})),
    ("dead-letter", "a header not an object", changed("dead-letter", {"original_headers": ["content-type"]})),
    ("dead-letter", "a header without key", changed("dead-letter", {"original_headers": [{"value": "AA=="}]})),
    ("dead-letter", "a header key a number", changed("dead-letter", {"original_headers": [{"key": 1}]})),
    (
        "dead-letter",
        "a header value not base64",
        changed("dead-letter", {"original_headers": [{"key": "k", "value": "?"}]}),
    ),
    (
        "dead-letter",
        "a header value a number",
        changed("dead-letter", {"original_headers": [{"key": "k", "value": 1}]}),
    ),
    ("dead-letter", "65 headers", changed("dead-letter", {"original_headers": [{"key": "k", "value": ""}] * 65})),
    ("feedback", "not an object", [1]),
    ("feedback", "missing event_id", without("feedback", "event_id")),
    ("feedback", "missing label", without("feedback", "label")),
    ("feedback", "missing at_ms", without("feedback", "at_ms")),
    ("feedback", "missing schema_version", without("feedback", "schema_version")),
    ("feedback", "schema_version 2", changed("feedback", {"schema_version": 2})),
    ("feedback", "negative at_ms", changed("feedback", {"at_ms": -1})),
    ("feedback", "at_ms a fraction", changed("feedback", {"at_ms": 1.5})),
    ("feedback", "at_ms as text", changed("feedback", {"at_ms": "1"})),
    ("feedback", "empty label", changed("feedback", {"label": ""})),
    ("feedback", "label over 200", changed("feedback", {"label": A201})),
    ("feedback", "label a list", changed("feedback", {"label": ["7"]})),
    ("feedback", "event_id over 200", changed("feedback", {"event_id": A201})),
    ("feedback", "source over 256", changed("feedback", {"source": A257})),
    ("feedback", "source a number", changed("feedback", {"source": 5})),
    ("training-example", "not an object", ["7"]),
    ("training-example", "missing label", without("training-example", "label")),
    ("training-example", "missing predicted_label", without("training-example", "predicted_label")),
    ("training-example", "missing predicted_score", without("training-example", "predicted_score")),
    ("training-example", "missing model_name", without("training-example", "model_name")),
    ("training-example", "missing model_version", without("training-example", "model_version")),
    ("training-example", "missing logged_at_ms", without("training-example", "logged_at_ms")),
    ("training-example", "predicted_score as text", changed("training-example", {"predicted_score": "0.9"})),
    ("training-example", "predicted_score a boolean", changed("training-example", {"predicted_score": True})),
    ("training-example", "negative model_version", changed("training-example", {"model_version": -1})),
    ("training-example", "logged_at_ms a fraction", changed("training-example", {"logged_at_ms": 1.5})),
    ("training-example", "negative feedback_at_ms", changed("training-example", {"feedback_at_ms": -1})),
    ("training-example", "predicted_at_ms as text", changed("training-example", {"predicted_at_ms": "0"})),
    ("training-example", "feedback_trusted null", changed("training-example", {"feedback_trusted": None})),
    ("training-example", "feedback_trusted as text", changed("training-example", {"feedback_trusted": "yes"})),
    ("training-example", "empty label", changed("training-example", {"label": ""})),
    ("training-example", "label over 200", changed("training-example", {"label": A201})),
    ("training-example", "feedback_source over 256", changed("training-example", {"feedback_source": A257})),
    ("training-example", "shadow_version without shadow_label", without("training-example", "shadow_label")),
    ("training-example", "negative shadow_version", changed("training-example", {"shadow_version": -1})),
    ("training-example", "shadow_version as text", changed("training-example", {"shadow_version": "3"})),
    ("training-example", "empty shadow_label", changed("training-example", {"shadow_label": ""})),
    ("training-example", "shadow_label null", changed("training-example", {"shadow_label": None})),
    ("training-example", "shadow_label over 200", changed("training-example", {"shadow_label": A201})),
    ("promotion", "not an object", None),
    ("promotion", "missing model_name", without("promotion", "model_name")),
    ("promotion", "missing serving", without("promotion", "serving")),
    ("promotion", "missing action", without("promotion", "action")),
    ("promotion", "missing announced_at_ms", without("promotion", "announced_at_ms")),
    ("promotion", "missing schema_version", without("promotion", "schema_version")),
    ("promotion", "schema_version 2", changed("promotion", {"schema_version": 2})),
    ("promotion", "an unknown action", changed("promotion", {"action": "promote!"})),
    ("promotion", "an action in capitals", changed("promotion", {"action": "PROMOTE"})),
    ("promotion", "empty action", changed("promotion", {"action": ""})),
    ("promotion", "action a number", changed("promotion", {"action": 1})),
    ("promotion", "serving 0", changed("promotion", {"serving": 0})),
    ("promotion", "negative serving", changed("promotion", {"serving": -1})),
    ("promotion", "serving as text", changed("promotion", {"serving": "3"})),
    ("promotion", "shadow 0", changed("promotion", {"shadow": 0})),
    ("promotion", "shadow as text", changed("promotion", {"shadow": "4"})),
    ("promotion", "shadow a boolean", changed("promotion", {"shadow": True})),
    ("promotion", "empty model_name", changed("promotion", {"model_name": ""})),
    ("promotion", "model_name over 200", changed("promotion", {"model_name": A201})),
    ("promotion", "reason over 256", changed("promotion", {"reason": A257})),
    ("promotion", "negative announced_at_ms", changed("promotion", {"announced_at_ms": -1})),
    ("promotion", "evidence a list", changed("promotion", {"evidence": [1]})),
    ("promotion", "33 evidence entries", changed("promotion", {"evidence": {str(i): i for i in range(33)}})),
    ("promotion", "evidence nested", changed("promotion", {"evidence": {"a": {"b": 1}}})),
    ("promotion", "an evidence list", changed("promotion", {"evidence": {"a": [1]}})),
    ("promotion", "an evidence boolean", changed("promotion", {"evidence": {"a": True}})),
    ("promotion", "an evidence text over 200", changed("promotion", {"evidence": {"a": A201}})),
    ("promotion", "an evidence name over 200", changed("promotion", {"evidence": {A201: 1}})),
    ("image-event-headers", "missing content-type", without("image-event-headers", "content-type")),
    ("image-event-headers", "empty content-type", changed("image-event-headers", {"content-type": ""})),
    ("image-event-headers", "content-type over 200", changed("image-event-headers", {"content-type": A201})),
    ("image-event-headers", "schema-version 2", changed("image-event-headers", {"schema-version": "2"})),
    ("image-event-headers", "schema-version 1.0", changed("image-event-headers", {"schema-version": "1.0"})),
    ("image-event-headers", "source over 256", changed("image-event-headers", {"source": A257})),
    ("image-event-headers", "image-uri over 4096", changed("image-event-headers", {"image-uri": "f" * 4097})),
    ("image-event-headers", "a metadata value over 1024", changed("image-event-headers", {"meta-x": "v" * 1025})),
    ("image-event-headers", "a metadata name over 1024", changed("image-event-headers", {"meta-" + "n" * 1025: "v"})),
    ("image-event-headers", "a metadata entry without a name", changed("image-event-headers", {"meta-": "v"})),
    ("image-event-headers", "65 headers", changed("image-event-headers", _more_headers(ev.MAX_HEADERS + 1))),
]
ACCEPTED: list[tuple[str, str, Any]] = [
    ("prediction", "an unknown field", changed("prediction", {"explanation": {"saliency": [0.1, None]}})),
    ("prediction", "ids and labels of 200", changed("prediction", {"event_id": "a" * 200, "labels": ["b" * 200] * 3})),
    ("prediction", "1000 labels", changed("prediction", {"labels": ["x"] * 1000, "scores": [0] * 1000})),
    (
        "prediction",
        "source of 256, image_topic of 249",
        changed("prediction", {"source": "s" * 256, "image_topic": "t" * 249}),
    ),
    (
        "prediction",
        "source and image position null",
        changed("prediction", {"source": None, "image_topic": None, "image_partition": None, "image_offset": None}),
    ),
    ("prediction", "empty image_topic", changed("prediction", {"image_topic": ""})),
    ("prediction", "negative and integer scores", changed("prediction", {"scores": [-1.5, 2, 1e300]})),
    (
        "prediction",
        "the largest counts",
        changed("prediction", {"model_version": 2**63 - 1, "produced_at_ms": 2**63 - 1}),
    ),
    ("shadow-prediction", "an unknown field", changed("prediction", {"candidate_of": "digits:2"})),
    (
        "dead-letter",
        "an unknown field, and one in a header",
        changed("dead-letter", {"retries": 3, "original_headers": [{"key": "k", "value": "", "note": 1}]}),
    ),
    (
        "dead-letter",
        "texts at their bounds",
        changed(
            "dead-letter",
            {
                "reason": "r" * 200,
                "origin_topic": "t" * 249,
                "event_id": "e" * 200,
                "message": "m" * ev.MAX_HEADER_BYTES,
            },
        ),
    ),
    (
        "dead-letter",
        "empty event_id and original",
        changed("dead-letter", {"event_id": "", "original": "", "original_key": ""}),
    ),
    (
        "dead-letter",
        "original_headers and message null",
        changed("dead-letter", {"original_headers": None, "message": None}),
    ),
    (
        "dead-letter",
        "a header without value, an empty key",
        changed("dead-letter", {"original_headers": [{"key": ""}]}),
    ),
    ("dead-letter", "64 headers", changed("dead-letter", {"original_headers": [{"key": "k", "value": "AAEC"}] * 64})),
    (
        "dead-letter",
        "base64 padded once and twice",
        changed("dead-letter", {"original": "AAE=", "original_key": "AA=="}),
    ),
    ("feedback", "an unknown field (trusted is not a field)", changed("feedback", {"trusted": True})),
    (
        "feedback",
        "texts at their bounds",
        changed("feedback", {"event_id": "e" * 200, "label": "l" * 200, "source": "s" * 256}),
    ),
    ("feedback", "source null", changed("feedback", {"source": None})),
    ("training-example", "an unknown field", changed("training-example", {"crop": [0, 0, 8, 8]})),
    (
        "training-example",
        "a schema_version field (not the header's version)",
        changed("training-example", {"schema_version": 2}),
    ),
    (
        "training-example",
        "optional fields null",
        changed("training-example", {"feedback_source": None, "feedback_at_ms": None, "predicted_at_ms": None}),
    ),
    ("training-example", "shadow_version 0", changed("training-example", {"shadow_version": 0})),
    (
        "training-example",
        "no shadow, not trusted",
        without("training-example", "shadow_version", "shadow_label", "feedback_trusted"),
    ),
    (
        "training-example",
        "texts at their bounds",
        changed("training-example", {"label": "l" * 200, "shadow_label": "s" * 200, "feedback_source": "f" * 256}),
    ),
    ("training-example", "an integer score", changed("training-example", {"predicted_score": 1})),
    *[("promotion", f"action {action}", changed("promotion", {"action": action})) for action in ev.PROMOTION_ACTIONS],
    ("promotion", "an unknown field", changed("promotion", {"approved_by": "ops"})),
    (
        "promotion",
        "shadow, reason and evidence null",
        changed("promotion", {"shadow": None, "reason": None, "evidence": None}),
    ),
    ("promotion", "32 evidence entries", changed("promotion", {"evidence": {str(i): i for i in range(32)}})),
    (
        "promotion",
        "evidence at its bounds",
        changed("promotion", {"evidence": {"n" * 200: "v" * 200, "f": -1e300, "i": -(10**198)}}),
    ),
    (
        "promotion",
        "names and reason at their bounds",
        changed("promotion", {"model_name": "m" * 200, "reason": "r" * 256}),
    ),
    ("image-event-headers", "an unknown header", changed("image-event-headers", {"traceparent": "00-ab-cd-01"})),
    (
        "image-event-headers",
        "headers at their bounds",
        changed(
            "image-event-headers", {"content-type": "c" * 200, "source": "s" * 256, "meta-" + "n" * 1024: "v" * 1024}
        ),
    ),
    ("image-event-headers", "an image-uri of 4096", changed("image-event-headers", {"image-uri": "f" * 4096})),
    ("image-event-headers", "an empty image-uri (absent)", changed("image-event-headers", {"image-uri": ""})),
    ("image-event-headers", "no schema-version", without("image-event-headers", "schema-version")),
    ("image-event-headers", "64 headers", changed("image-event-headers", _more_headers(ev.MAX_HEADERS))),
]


@pytest.mark.parametrize(("name", "case", "document"), REFUSED, ids=[f"{n}: {c}" for n, c, _ in REFUSED])
def test_a_bad_document_is_refused_by_the_decoder_and_by_the_schema(name: str, case: str, document: Any) -> None:
    assert not decoder_accepts(name, document), f"the decoder reads a {name} with {case}: fix the case"
    assert not schema_accepts(name, document), f"the {name} schema accepts {case}, which its decoder refuses"


@pytest.mark.parametrize(("name", "case", "document"), ACCEPTED, ids=[f"{n}: {c}" for n, c, _ in ACCEPTED])
def test_a_document_at_a_bound_or_with_unknown_fields_is_accepted_by_both(name: str, case: str, document: Any) -> None:
    assert decoder_accepts(name, document), f"the decoder refuses a {name} with {case}: fix the case"
    assert_valid(name, document)


def test_the_cases_cover_every_format() -> None:
    assert {name for name, _, _ in REFUSED} == EXPECTED
    assert {name for name, _, _ in ACCEPTED} == EXPECTED


# Rules the decoder enforces and JSON Schema cannot express: the schema accepts, the decoder refuses, and the
# schema's text (the phrase) says so.
GAPS: list[tuple[str, str, Any, str]] = [
    ("prediction", "fewer scores than labels", changed("prediction", {"scores": [0.9]}), "exactly as many"),
    ("shadow-prediction", "fewer scores than labels", changed("prediction", {"scores": [0.9]}), "exactly as many"),
    ("prediction", "an integer written 2.0", changed("prediction", {"model_version": 2.0}), "1.0 or 1e3"),
    ("prediction", "schema_version written 1.0", changed("prediction", {"schema_version": 1.0}), "1.0 or 1e3"),
    ("feedback", "at_ms written 1000.0", changed("feedback", {"at_ms": 1000.0}), "1.0 or 1e3"),
    (
        "feedback",
        "a record over 4096 bytes",
        changed("feedback", {"label": "\U0001f600" * 200, "source": "\U0001f600" * 256}),
        "4096",
    ),
    ("promotion", "shadow equal to serving", changed("promotion", {"shadow": 3}), "shadow differs from serving"),
    (
        "promotion",
        "an evidence integer of 201 digits",
        changed("promotion", {"evidence": {"n": 10**200}}),
        "200 digits",
    ),
    (
        "image-event-headers",
        "33 metadata entries",
        changed("image-event-headers", {f"meta-{i}": "" for i in range(33)}),
        "more than 32 meta- entries",
    ),
    (
        "image-event-headers",
        "a metadata entry named twice (in another case)",
        changed("image-event-headers", {"META-camera": "south"}),
        "appears twice",
    ),
    (
        "image-event-headers",
        "a convention header over 65536 bytes",
        changed("image-event-headers", {"training-example": "x" * 65537}),
        "over 65536 bytes",
    ),
]
# Where a schema is deliberately stricter than its decoder (what writers write; readers tolerate more): the decoder
# accepts, the schema refuses, and the schema's text says so.
STRICTER: list[tuple[str, str, Any, str]] = [
    (
        "training-example",
        "a shadow_label without shadow_version",
        without("training-example", "shadow_version"),
        "ignore a shadow_label without one",
    ),
    (
        "training-example",
        "a null shadow_version",
        changed("training-example", {"shadow_version": None}),
        "null shadow_version as absent",
    ),
    (
        "dead-letter",
        "base64 padded past a whole group",
        changed("dead-letter", {"original": "AAAA="}),
        "RFC 4648, padded",
    ),
    ("image-event-headers", "a header name in capitals", {"Content-Type": "image/png"}, "without regard to case"),
]


def _schema_text(name: str) -> str:
    return " ".join(json.dumps(load_schema(n)) for n in {name, _schema_of(name)})


@pytest.mark.parametrize(("name", "case", "document", "phrase"), GAPS, ids=[f"{n}: {c}" for n, c, _, _ in GAPS])
def test_a_rule_no_schema_can_express_is_the_decoders_and_is_documented(
    name: str, case: str, document: Any, phrase: str
) -> None:
    assert not decoder_accepts(name, document), f"the decoder now reads a {name} with {case}"
    assert schema_accepts(name, document), f"the {name} schema now refuses {case}: move the case to REFUSED"
    assert phrase in _schema_text(name), f"the {name} schema does not say: {phrase}"


@pytest.mark.parametrize(("name", "case", "document", "phrase"), STRICTER, ids=[f"{n}: {c}" for n, c, _, _ in STRICTER])
def test_where_a_schema_is_stricter_than_its_decoder_it_says_so(
    name: str, case: str, document: Any, phrase: str
) -> None:
    assert decoder_accepts(name, document), f"the decoder now refuses a {name} with {case}: move the case to REFUSED"
    assert not schema_accepts(name, document), f"the {name} schema now accepts {case}"
    assert phrase in _schema_text(name), f"the {name} schema does not say: {phrase}"


# -- (4) properties: encoders' records validate; damaged documents get the same verdict from both ----------------------

IDS = st.text(min_size=1, max_size=ev.MAX_ID_CHARS)
COUNTS = st.integers(min_value=0, max_value=2**63 - 1)  # what a Java long (and the decoders) hold
NUMBERS = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**60), 10**60)


def _texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


@st.composite
def _predictions(draw: st.DrawFn) -> ev.Prediction:
    n = draw(st.integers(1, 12))
    return ev.Prediction(
        event_id=draw(IDS),
        model_name=draw(IDS),
        model_version=draw(COUNTS),
        labels=draw(st.lists(IDS, min_size=n, max_size=n)),
        scores=draw(st.lists(NUMBERS, min_size=n, max_size=n)),
        produced_at_ms=draw(COUNTS),
        received_at_ms=draw(COUNTS),
        predicted_at_ms=draw(COUNTS),
        source=draw(_texts(ev.MAX_SOURCE_CHARS)),
        image_topic=draw(st.none() | _texts(ev.MAX_TOPIC_CHARS)),
        image_partition=draw(st.none() | COUNTS),
        image_offset=draw(st.none() | COUNTS),
    )


_DEAD_LETTERS = st.builds(
    ev.DeadLetter,
    reason=IDS,
    message=_texts(300),
    origin_topic=st.text(min_size=1, max_size=ev.MAX_TOPIC_CHARS),
    origin_partition=COUNTS,
    origin_offset=COUNTS,
    event_id=st.none() | _texts(ev.MAX_ID_CHARS),
    original=st.none() | st.binary(max_size=64),
    failed_at_ms=COUNTS,
    original_key=st.none() | st.binary(max_size=32),
    original_headers=st.lists(st.tuples(_texts(20), st.binary(max_size=16)), max_size=8).map(tuple),
)
_FEEDBACK = st.builds(ev.Feedback, event_id=IDS, label=IDS, source=_texts(ev.MAX_SOURCE_CHARS), at_ms=COUNTS)


@st.composite
def _examples(draw: st.DrawFn) -> ev.LabelledExample:
    shadow_version, shadow_label = draw(st.just((None, "")) | st.tuples(COUNTS, IDS))
    return ev.LabelledExample(
        event_id=draw(IDS),
        label=draw(IDS),
        content_type=draw(IDS),
        image=draw(st.binary(min_size=1, max_size=32)),
        predicted_label=draw(IDS),
        predicted_score=draw(NUMBERS),
        model_name=draw(IDS),
        model_version=draw(COUNTS),
        feedback_source=draw(_texts(ev.MAX_SOURCE_CHARS)),
        feedback_at_ms=draw(COUNTS),
        predicted_at_ms=draw(COUNTS),
        logged_at_ms=draw(COUNTS),
        shadow_version=shadow_version,
        shadow_label=shadow_label,
        feedback_trusted=draw(st.booleans()),
    )


@st.composite
def _promotions(draw: st.DrawFn) -> ev.Promotion:
    serving = draw(st.integers(min_value=1, max_value=2**63 - 1))
    evidence_values = st.none() | NUMBERS | _texts(ev.MAX_ID_CHARS)
    return ev.Promotion(
        model_name=draw(IDS),
        serving=serving,
        shadow=draw(st.none() | st.integers(min_value=1, max_value=2**63 - 1).filter(lambda v: v != serving)),
        action=draw(st.sampled_from(ev.PROMOTION_ACTIONS)),
        reason=draw(_texts(ev.MAX_SOURCE_CHARS)),
        evidence=draw(st.dictionaries(_texts(ev.MAX_ID_CHARS), evidence_values, max_size=8)),
        announced_at_ms=draw(COUNTS),
    )


_IMAGE_EVENTS = st.builds(
    ev.ImageEvent,
    event_id=IDS,
    content_type=IDS,
    image=st.binary(min_size=1, max_size=16),
    source=_texts(ev.MAX_SOURCE_CHARS),
    produced_at_ms=st.integers(0, 2**63 - 1),  # the record's timestamp: a signed 64-bit integer
    metadata=st.dictionaries(st.text(min_size=1, max_size=40), _texts(40), max_size=6),
)

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "prediction": _predictions(),
    "dead-letter": _DEAD_LETTERS,
    "feedback": _FEEDBACK,
    "training-example": _examples(),
    "promotion": _promotions(),
    "image-event-headers": _IMAGE_EVENTS,
}
DECODE_RECORD: dict[type, Callable[[Any], Any]] = {
    ev.Prediction: ev.decode_prediction,
    ev.DeadLetter: ev.decode_dead_letter,
    ev.Feedback: ev.decode_feedback,
    ev.LabelledExample: ev.decode_labelled_example,
    ev.Promotion: ev.decode_promotion,
    ev.ImageEvent: ev.decode_image_event,
}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_record_the_encoders_write_validates(name: str) -> None:
    """300 records of the format drawn from its dataclass within the decoder's bounds (derandomized); each one's
    encoding decodes back to the record (so it is valid) and its document validates against the schema."""
    checked = Counter[str]()

    @PROPERTY
    @given(STRATEGIES[name])
    def check(record: Any) -> None:
        encoded = encode(record)
        if isinstance(record, ev.Feedback):
            assert isinstance(encoded, bytes)
            assume(len(encoded) <= ev.MAX_FEEDBACK_BYTES)  # the one bound on the whole record (see GAPS)
        assert DECODE_RECORD[type(record)](encoded) == record, "a record outside the decoder's bounds: fix the strategy"
        document = document_of(record)
        assert_valid(name, document)
        if name == "prediction":
            assert_valid("shadow-prediction", document)
        checked["records"] += 1

    with without_project_constants():  # the same cases whatever else the run imported
        check()
    assert checked["records"] >= 250


# What the damage writes into a field: every JSON type, wrong signs, texts just over the bounds, items and entries
# of the shapes the formats nest (headers, evidence).
PALETTE: list[Any] = [
    None,
    True,
    False,
    -1,
    0,
    1,
    2,
    1.5,
    -0.5,
    "",
    "x",
    "AA==",
    A201,
    A250,
    A257,
    "a" * 1025,
    [],
    ["x"],
    [""],
    [0.5],
    [A201],
    [{"key": "k", "value": "AA=="}],
    [{"key": "k"}],
    [{"key": 1}],
    [{"key": "k", "value": "x"}],
    {},
    {"k": "v"},
    {"k": 1.5},
    {"k": {"n": 1}},
    {"k": True},
    {"k": A201},
    {A201: 1},
]
DAMAGED = ("prediction", "shadow-prediction", "dead-letter", "feedback", "training-example", "promotion")


def _decoder_only_rule(name: str, document: dict[str, Any]) -> bool:
    """Whether ``document`` breaks a rule of GAPS: the decoder refuses it whatever the schema says."""
    if _schema_of(name) == "prediction":
        labels, scores = document.get("labels"), document.get("scores")
        return isinstance(labels, list) and isinstance(scores, list) and len(labels) != len(scores)
    if name == "promotion":
        serving, shadow = document.get("serving"), document.get("shadow")
        return type(serving) is int and type(shadow) is int and serving == shadow
    return False


def _schema_only_rule(name: str, document: dict[str, Any]) -> bool:
    """Whether ``document`` breaks a rule of STRICTER: the schema refuses it whatever the decoder says."""
    if name == "training-example":
        return document.get("shadow_version") is None and ("shadow_version" in document or "shadow_label" in document)
    return False


@st.composite
def _damaged(draw: st.DrawFn, name: str) -> dict[str, Any]:
    document: dict[str, Any] = base(name, minimal=draw(st.booleans()))
    fields = sorted({*load_schema(_schema_of(name))["properties"], "schema_version", "future_field"})
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(fields))
        if field in document and draw(st.booleans()):
            del document[field]
        else:
            document[field] = copy.deepcopy(draw(st.sampled_from(PALETTE)))
    return document


@pytest.mark.parametrize("name", DAMAGED)
def test_a_damaged_document_gets_the_same_verdict_from_the_schema_and_the_decoder(name: str) -> None:
    """300 valid documents (full or minimal) with 1-3 fields dropped or set to a value of the palette
    (derandomized): the schema accepts exactly what the decoder accepts, but for the documented rules of GAPS
    (decoder only) and STRICTER (schema only)."""
    verdicts = Counter[str]()

    @PROPERTY
    @given(_damaged(name))
    def check(document: dict[str, Any]) -> None:
        by_decoder, by_schema = decoder_accepts(name, document), schema_accepts(name, document)
        if by_schema and not by_decoder:
            assert _decoder_only_rule(name, document), f"the schema accepts what the decoder refuses: {document}"
        if by_decoder and not by_schema:
            assert _schema_only_rule(name, document), (
                f"the schema refuses what the decoder accepts: {errors(name, document)}"
            )
        verdicts[
            f"decoder {'accepts' if by_decoder else 'refuses'}, schema {'accepts' if by_schema else 'refuses'}"
        ] += 1

    with without_project_constants():
        check()
    accepted, refused = verdicts["decoder accepts, schema accepts"], verdicts["decoder refuses, schema refuses"]
    assert accepted >= 20 and refused >= 100, f"too one-sided to tell: {dict(verdicts)}"
