from __future__ import annotations

import io
import json
import struct

import pytest
from PIL import Image

from inferloop.errors import EventDecodeError
from inferloop.events import (
    DeadLetter,
    Feedback,
    ImageEvent,
    LabelledExample,
    Prediction,
    check_image_event,
    decode_dead_letter,
    decode_feedback,
    decode_image_event,
    decode_labelled_example,
    decode_prediction,
    encode_dead_letter,
    encode_feedback,
    encode_image_event,
    encode_labelled_example,
    encode_prediction,
)


def _png(size: tuple[int, int] = (8, 8), mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=128 if mode == "L" else (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_event_round_trip_carries_raw_bytes() -> None:
    event = ImageEvent("e1", "image/png", _png(), source="cam-3", produced_at_ms=123, metadata={"k": "v"})
    value = encode_image_event(event)
    assert value.startswith(b"ILE\x01")
    assert value.endswith(event.image), "image bytes travel raw, with no base64 inflation"
    assert len(value) < len(event.image) + 200
    assert decode_image_event(value) == event


def test_uri_event_round_trip() -> None:
    event = ImageEvent("e2", "image/jpeg", image_uri="file:///data/big.jpg", produced_at_ms=5)
    assert decode_image_event(encode_image_event(event)) == event


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty_value"),
        (b"", "empty_value"),
        (b"GIF89a....", "not_an_image_event"),
        (b"ILE", "not_an_image_event"),
        (b"ILE" + struct.pack(">BI", 2, 2) + b"{}", "unknown_schema_version"),
        (b"ILE" + struct.pack(">BI", 1, 99) + b"{}", "bad_header"),
        (b"ILE" + struct.pack(">BI", 1, 4) + b"nope", "bad_header"),
        (b"ILE" + struct.pack(">BI", 1, 2) + b"[]", "bad_header"),
    ],
)
def test_malformed_frames_have_specific_reasons(value: bytes | None, reason: str) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode_image_event(value)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"content_type": "image/png", "produced_at_ms": 1}, "missing_field"),
        ({"event_id": "", "content_type": "image/png", "produced_at_ms": 1}, "missing_field"),
        ({"event_id": "x", "produced_at_ms": 1}, "missing_field"),
        ({"event_id": "x", "content_type": "image/png", "produced_at_ms": -1}, "missing_field"),
        ({"event_id": "x", "content_type": "image/png", "produced_at_ms": True}, "missing_field"),
        ({"event_id": "x" * 201, "content_type": "image/png", "produced_at_ms": 1}, "bad_field"),
        ({"event_id": "x", "content_type": "image/png", "produced_at_ms": 1, "metadata": [1]}, "bad_field"),
    ],
)
def test_bad_headers_have_specific_reasons(header: dict[str, object], reason: str) -> None:
    raw = json.dumps(header).encode()
    with pytest.raises(EventDecodeError) as info:
        decode_image_event(b"ILE" + struct.pack(">BI", 1, len(raw)) + raw + b"img")
    assert info.value.reason == reason


def test_prediction_and_dead_letter_round_trip() -> None:
    p = Prediction("e", "digits", 2, ["3", "8"], [0.9, 0.05], 1, 2, 3, source="s")
    assert decode_prediction(encode_prediction(p)) == p
    d = DeadLetter("undecodable", "damaged", "images", 1, 42, event_id="e", original=b"\x00\x01")
    assert decode_dead_letter(encode_dead_letter(d)) == d
    with pytest.raises(EventDecodeError):
        decode_prediction(b'{"schema_version": 99}')


def test_feedback_and_labelled_examples_round_trip_and_refuse_garbage() -> None:
    f = Feedback("e1", "7", "person", 42)
    assert decode_feedback(encode_feedback(f)) == f
    for bad, reason in (
        (b"", "empty_value"),
        (b"\xff", "not_feedback"),
        (b"[1]", "not_feedback"),
        (b'{"schema_version": 2}', "unknown_schema_version"),
        (b'{"schema_version": 1, "event_id": "e", "at_ms": 1}', "missing_field"),
        (b'{"schema_version": 1, "event_id": "e", "label": "", "at_ms": 1}', "missing_field"),
        (b'{"schema_version": 1, "event_id": "e", "label": "1", "at_ms": -1}', "missing_field"),
    ):
        with pytest.raises(EventDecodeError) as info:
            decode_feedback(bad)
        assert info.value.reason == reason, bad
    example = LabelledExample("e1", "7", "image/png", b"\x89PNG...", "1", 0.4, "digits", 2)
    assert decode_labelled_example(encode_labelled_example(example)) == example
    with pytest.raises(EventDecodeError) as info:
        decode_labelled_example(encode_image_event(ImageEvent("e", "image/png", b"x")))
    assert info.value.reason == "not_a_labelled_example"


def test_producers_check_the_bounds_the_worker_enforces() -> None:
    check_image_event(ImageEvent("e", "image/png", b"png", source="s" * 256, metadata={"k": "v"}))
    for bad, reason in [
        (ImageEvent("e", "image/png", b"png", source="s" * 257), "bad_field"),
        (ImageEvent("e", "image/png", b"png", metadata={str(n): "v" for n in range(33)}), "bad_field"),
        (ImageEvent("", "image/png", b"png"), "missing_field"),
    ]:
        with pytest.raises(EventDecodeError) as caught:
            check_image_event(bad)
        assert caught.value.reason == reason
        with pytest.raises(EventDecodeError):
            decode_image_event(encode_image_event(bad))  # the worker would refuse it the same way


def test_predictions_with_unusable_fields_are_refused_with_a_reason() -> None:
    good = json.loads(encode_prediction(Prediction("e", "m", 1, ["a"], [0.9], 1, 2, 3, "", "images", 0, 5)))
    decode_prediction(json.dumps(good).encode())
    for change, reason in [
        ({"scores": []}, "bad_prediction"),
        ({"labels": ["a", "b"]}, "bad_prediction"),
        ({"scores": ["0.9"]}, "bad_prediction"),
        ({"event_id": 7}, "missing_field"),
        ({"model_version": -1}, "missing_field"),
        ({"image_offset": -5}, "missing_field"),
        ({"image_topic": "t" * 250}, "bad_field"),
        ({"source": "s" * 257}, "bad_field"),
    ]:
        with pytest.raises(EventDecodeError) as caught:
            decode_prediction(json.dumps({**good, **change}).encode())
        assert caught.value.reason == reason, change


def test_a_feedback_record_over_its_size_bound_is_refused_whatever_it_pads() -> None:
    padded = json.loads(encode_feedback(Feedback("e", "3")))
    padded["note"] = "x" * 5000  # unknown keys are ignored, but not without bound: the joiner stores the record
    with pytest.raises(EventDecodeError) as caught:
        decode_feedback(json.dumps(padded).encode())
    assert caught.value.reason == "bad_field"


def test_a_promotion_round_trips_and_its_decoder_refuses_what_a_worker_must_not_follow() -> None:
    from inferloop.events import Promotion, decode_promotion, encode_promotion

    promotion = Promotion("digits", 3, 4, "shadow", "verified", {"shadow_live_labels": 200, "note": None})
    assert decode_promotion(encode_promotion(promotion)) == promotion
    raw = json.loads(encode_promotion(promotion))
    for field_name, value, reason in [
        ("serving", 0, "bad_field"),
        ("serving", True, "missing_field"),
        ("shadow", 3, "bad_field"),  # the same version in shadow as serving
        ("action", "delete", "bad_field"),
        ("model_name", "", "missing_field"),
        ("evidence", {"k": [1]}, "bad_field"),
        ("schema_version", 2, "unknown_schema_version"),
    ]:
        with pytest.raises(EventDecodeError) as info:
            decode_promotion(json.dumps({**raw, field_name: value}).encode())
        assert info.value.reason == reason, (field_name, value)
    with pytest.raises(EventDecodeError, match="a promotion is not JSON"):
        decode_promotion(b"\xff")


def test_an_example_without_a_shadow_carries_no_shadow_fields_so_older_readers_read_it() -> None:
    from dataclasses import replace as with_fields

    from inferloop.events import LabelledExample, decode_labelled_example, encode_labelled_example

    plain = LabelledExample("e1", "3", "image/png", b"PNG", "3", 0.9, "digits", 1)
    value = encode_labelled_example(plain)
    assert b"shadow" not in value and decode_labelled_example(value) == plain
    shadowed = with_fields(plain, shadow_version=2, shadow_label="8")
    again = decode_labelled_example(encode_labelled_example(shadowed))
    assert again == shadowed and again.shadow_correct is False
