from __future__ import annotations

import io
import json
from typing import Any

import pytest
from PIL import Image

from inferloop.errors import EventDecodeError
from inferloop.events import (
    DeadLetter,
    Feedback,
    ImageEvent,
    LabelledExample,
    Message,
    Prediction,
    build_dead_letter,
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


def _record(
    key: bytes | None = b"e1", value: bytes | None = b"img", headers: dict[str, bytes] | None = None, ts: int = 7
) -> Message:
    base = {"content-type": b"image/png"} if headers is None else headers
    return Message(key, value, tuple(base.items()), ts)


def test_an_image_event_is_a_plain_record_key_id_value_image_headers_metadata() -> None:
    event = ImageEvent("e1", "image/png", _png(), source="cam-3", produced_at_ms=123, metadata={"k": "v"})
    record = encode_image_event(event)
    assert record.key == b"e1"
    assert record.value == event.image, "the value is the image bytes exactly as they are on disk"
    assert dict(record.headers) == {
        "content-type": b"image/png",
        "schema-version": b"1",
        "source": b"cam-3",
        "meta-k": b"v",
    }
    assert record.timestamp_ms == 123, "the production time is the record's timestamp"
    assert decode_image_event(record) == event
    assert decode_image_event(record.at("images", 2, 40)) == event


def test_uri_event_round_trip_has_an_empty_value() -> None:
    event = ImageEvent("e2", "image/jpeg", image_uri="file:///data/big.jpg", produced_at_ms=5)
    record = encode_image_event(event)
    assert record.value == b"" and dict(record.headers)["image-uri"] == b"file:///data/big.jpg"
    assert decode_image_event(record) == event


def test_a_record_any_client_writes_decodes_headers_matched_without_case_unknown_ones_ignored() -> None:
    record = _record(
        headers={
            "Content-Type": b"image/png",
            "traceparent": b"\xff\x00 binary, not ours",
            "META-Camera": b"north",
            "source": b"kcat",
        },
        ts=-1,
    )
    event = decode_image_event(record)
    assert (event.event_id, event.content_type, event.source, event.metadata) == (
        "e1",
        "image/png",
        "kcat",
        {"Camera": "north"},
    )
    assert event.produced_at_ms > 0, "a record without a timestamp is stamped when read"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_record(key=None), "missing_key"),
        (_record(key=b""), "missing_key"),
        (_record(key=b"\xff\xfe"), "bad_key"),
        (_record(key=b"x" * 201), "bad_key"),
        (_record(headers={}), "missing_header"),
        (_record(headers={"content-type": b""}), "missing_header"),
        (_record(headers={"content-type": b"\xff"}), "bad_header"),
        (_record(headers={"content-type": b"image/png", "Content-Type": b"image/png"}), "bad_header"),
        (_record(headers={"content-type": b"x" * 201}), "bad_header"),
        (_record(headers={"content-type": b"image/png", "schema-version": b"2"}), "unknown_schema_version"),
        (_record(headers={"content-type": b"image/png", "source": b"s" * 257}), "bad_header"),
        (_record(headers={"content-type": b"image/png", "meta-": b"v"}), "bad_header"),
        (_record(headers={"content-type": b"image/png", **{f"meta-{n}": b"v" for n in range(33)}}), "bad_header"),
        (_record(headers={"content-type": b"image/png", "meta-k": b"v" * 1025}), "bad_header"),
        (_record(value=None), "missing_image"),
        (_record(value=b""), "missing_image"),
        (_record(headers={"content-type": b"image/png", "image-uri": b"file:///x.png"}), "bad_header"),
    ],
)
def test_records_outside_the_convention_have_specific_reasons(record: Message, reason: str) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode_image_event(record)
    assert info.value.reason == reason


def test_a_record_with_too_many_headers_is_refused() -> None:
    headers = tuple((f"x-{n}", b"") for n in range(65))
    with pytest.raises(EventDecodeError) as info:
        decode_image_event(Message(b"e", b"img", (("content-type", b"image/png"), *headers)))
    assert info.value.reason == "bad_header"


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
    record = encode_labelled_example(example)
    assert (record.key, record.value) == (b"e1", b"\x89PNG..."), "the training log keeps the image events' convention"
    assert dict(record.headers)["content-type"] == b"image/png"
    assert json.loads(dict(record.headers)["training-example"])["label"] == "7"
    assert decode_labelled_example(record) == example
    with pytest.raises(EventDecodeError) as info:
        decode_labelled_example(encode_image_event(ImageEvent("e", "image/png", b"x")))
    assert info.value.reason == "missing_header"


def test_producers_check_the_bounds_the_worker_enforces() -> None:
    check_image_event(ImageEvent("e", "image/png", b"png", source="s" * 256, metadata={"k": "v"}))
    for bad, reason in [
        (ImageEvent("e", "image/png", b"png", source="s" * 257), "bad_header"),
        (ImageEvent("e", "image/png", b"png", metadata={str(n): "v" for n in range(33)}), "bad_header"),
        (ImageEvent("", "image/png", b"png"), "missing_key"),
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
    assert b"shadow" not in dict(value.headers)["training-example"] and decode_labelled_example(value) == plain
    shadowed = with_fields(plain, shadow_version=2, shadow_label="8")
    again = decode_labelled_example(encode_labelled_example(shadowed))
    assert again == shadowed and again.shadow_correct is False


def test_a_dead_letter_keeps_the_original_record_key_value_and_headers() -> None:
    from inferloop.errors import PoisonError

    origin = encode_image_event(ImageEvent("e9", "image/png", b"not a png", source="cam")).at("images", 1, 42)
    letter = build_dead_letter(PoisonError("damaged", "undecodable"), origin, "e9", keep_original_bytes=1000)
    again = decode_dead_letter(encode_dead_letter(letter))
    assert again == letter
    assert (again.original, again.original_key, again.original_headers) == (origin.value, origin.key, origin.headers)
    small = build_dead_letter(PoisonError("damaged", "undecodable"), origin, "e9", keep_original_bytes=20)
    assert (small.original, small.original_key, small.original_headers) == (None, None, ()), "all or nothing"


@pytest.mark.parametrize(
    ("encoded", "decode"),
    [
        (encode_prediction(Prediction("e", "m", 1, ["a"], [0.9], 1, 2, 3)), decode_prediction),
        (encode_feedback(Feedback("e", "3", "s", 4)), decode_feedback),
        (encode_dead_letter(DeadLetter("bad_header", "m", "images", 0, 1, "e", b"x")), decode_dead_letter),
    ],
)
def test_todays_decoders_read_a_record_with_a_field_added_by_a_later_writer(encoded: bytes, decode: Any) -> None:
    raw = json.loads(encoded)
    raw["added_in_a_later_version"] = {"nested": [1, 2]}
    assert decode(json.dumps(raw).encode()) == decode(encoded)


def test_unknown_fields_are_ignored_within_a_bound_on_the_whole_record() -> None:
    from inferloop.events import MAX_JSON_RECORD_BYTES

    raw = json.loads(encode_prediction(Prediction("e", "m", 1, ["a"], [0.9], 1, 2, 3)))
    raw["padding"] = "x" * MAX_JSON_RECORD_BYTES
    with pytest.raises(EventDecodeError) as caught:
        decode_prediction(json.dumps(raw).encode())
    assert caught.value.reason == "bad_prediction" and "at most" in str(caught.value)


def test_a_producer_refuses_what_no_record_can_carry_with_a_decode_error() -> None:
    for bad in (
        ImageEvent("e\ud800", "image/png", b"png"),  # a lone surrogate: not UTF-8
        ImageEvent("e", "image/png", b"png", metadata={"k": "\udfff"}),
        ImageEvent("e", "image/png", b"png", produced_at_ms=-1),
        ImageEvent("e", "image/png", b"png", produced_at_ms=2**63),
    ):
        with pytest.raises(EventDecodeError):
            check_image_event(bad)


def test_a_record_with_more_headers_than_a_dead_letter_holds_is_dead_lettered_by_position_alone() -> None:
    from inferloop.errors import PoisonError

    headers = (("content-type", b"image/png"), *((f"x-{n}", b"\xff") for n in range(64)))
    origin = Message(b"e1", b"", headers).at("images", 0, 1)
    letter = build_dead_letter(PoisonError("65 headers", "bad_header"), origin, "e1", keep_original_bytes=1 << 20)
    assert (letter.original, letter.original_headers) == (None, ())
    assert decode_dead_letter(encode_dead_letter(letter)) == letter, "the letter itself always decodes"


def test_a_dead_letter_never_outgrows_its_record_whatever_the_original_headers_are_named() -> None:
    """JSON writes a CJK header name as six bytes a character and base64 grows values by a third: a record within
    the keep bound can still make a letter over the record limit; it keeps the origin's position alone then."""
    from inferloop.errors import PoisonError
    from inferloop.events import MAX_DEAD_LETTER_BYTES

    names = tuple((f"{'漢' * 2000}{n}", b"") for n in range(60))
    origin = Message(b"e1", b"x" * 200_000, (("content-type", b"image/png"), *names)).at("images", 0, 1)
    assert origin.value is not None and len(origin.value) + 60 * 6000 < 1_000_000, "a record Kafka takes"
    letter = build_dead_letter(PoisonError("m", "not_an_image"), origin, "e1", keep_original_bytes=1 << 20)
    assert letter.original is None and len(encode_dead_letter(letter)) < MAX_DEAD_LETTER_BYTES
    small = build_dead_letter(PoisonError("m", "not_an_image"), origin, "e1", 1 << 20, max_letter_bytes=100)
    assert small.original is None
    plain = Message(b"e1", b"x" * 200_000, (("content-type", b"image/png"),)).at("images", 0, 1)
    kept = build_dead_letter(PoisonError("m", "not_an_image"), plain, "e1", keep_original_bytes=1 << 20)
    assert kept.original == plain.value, "the same image with plain headers is kept: the names made the difference"


@pytest.mark.parametrize(
    ("document", "decode", "reason"),
    [
        (b'{"schema_version":1,"event_id":"\\ud800x","label":"3","at_ms":1}', decode_feedback, "missing_field"),
        (b'{"schema_version":1,"event_id":"e","label":"\\udfff","at_ms":1}', decode_feedback, "missing_field"),
        (
            b'{"schema_version":1,"event_id":"e","label":"3","at_ms":9223372036854775808}',
            decode_feedback,
            "missing_field",
        ),
    ],
)
def test_text_no_record_can_carry_and_counts_no_java_long_holds_are_refused(
    document: bytes, decode: Any, reason: str
) -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode(document)
    assert caught.value.reason in (reason, "bad_field"), caught.value


def test_a_score_or_label_a_float_or_utf8_cannot_hold_is_refused() -> None:
    good = json.loads(encode_prediction(Prediction("e", "m", 1, ["a"], [0.9], 1, 2, 3)))
    for change in ({"scores": [10**400]}, {"labels": ["\ud800"]}, {"event_id": "\udc00"}):
        with pytest.raises(EventDecodeError):
            decode_prediction(json.dumps({**good, **change}).encode())
    example = encode_labelled_example(LabelledExample("e1", "7", "image/png", b"PNG", "1", 0.4, "digits", 2))
    metadata = json.loads(dict(example.headers)["training-example"])
    huge = json.dumps({**metadata, "predicted_score": 10**400}).encode()
    with pytest.raises(EventDecodeError):
        decode_labelled_example(Message(b"e1", b"PNG", (*example.headers[:2], ("training-example", huge))))


def test_a_dead_letter_keeps_only_what_a_replay_can_send_and_its_message_is_readable_text() -> None:
    from inferloop.errors import PoisonError
    from inferloop.events import MAX_HEADER_NAME_CHARS, MAX_MESSAGE_CHARS

    long_name = Message(b"e1", b"img", (("x" * (MAX_HEADER_NAME_CHARS + 1), b""),)).at("images", 0, 1)
    letter = build_dead_letter(PoisonError("m", "undecodable"), long_name, "e1", keep_original_bytes=1 << 20)
    assert (letter.original, letter.original_headers) == (None, ()), "a header name past the bound is not kept"
    path = "/images/caf\udce9.png"  # a file name the OS decoded with surrogateescape
    noisy = build_dead_letter(PoisonError(f"{path} " * 2000, "uri_unreadable"), long_name, "e1", 0)
    again = decode_dead_letter(encode_dead_letter(noisy))
    assert len(again.message) == MAX_MESSAGE_CHARS and "caf?.png" in again.message, "readable, and short"
    forged = json.loads(encode_dead_letter(DeadLetter("r", "m", "images", 0, 1, "e", b"x")))
    for key in ("\ud800", "k" * (MAX_HEADER_NAME_CHARS + 1)):
        forged["original_headers"] = [{"key": key, "value": None}]
        with pytest.raises(EventDecodeError):  # what no replay could send: refused, the letter skipped
            decode_dead_letter(json.dumps(forged).encode())
