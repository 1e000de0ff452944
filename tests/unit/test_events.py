from __future__ import annotations

import io
import json
import struct

import pytest
from PIL import Image

from streams.events import (
    DeadLetter,
    EventDecodeError,
    ImageEvent,
    Prediction,
    decode_dead_letter,
    decode_image_event,
    decode_prediction,
    encode_dead_letter,
    encode_image_event,
    encode_prediction,
)
from streams.images import ImageLimits, ImageRejected, InputSpec, decode_image, to_model_input


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


def _noise_png() -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


LIMITS = ImageLimits(max_bytes=50_000, max_pixels=1_000_000)


def test_decode_image_accepts_allowed_formats() -> None:
    image = decode_image(_png(), "image/png", LIMITS)
    assert image.size == (8, 8)
    x = to_model_input(image, InputSpec())
    assert x.shape == (1, 28, 28) and x.dtype.name == "float32"
    rgb = to_model_input(decode_image(_png(mode="RGB"), "image/png", LIMITS), InputSpec(channels=3, height=8, width=8))
    assert rgb.shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (_png(), "image/tiff", "disallowed_content_type"),
        (_png(), "image/jpeg", "content_type_mismatch"),
        (b"", "image/png", "empty_image"),
        (b"plain text", "image/png", "not_an_image"),
        (_noise_png()[:300], "image/png", "undecodable"),
        (_png((2000, 2000)), "image/png", "decompression_bomb"),
        (b"\x89PNG" + b"\x00" * 60_000, "image/png", "too_large"),
    ],
)
def test_decode_image_rejects_with_reasons(data: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(ImageRejected) as info:
        decode_image(data, content_type, LIMITS)
    assert info.value.reason == reason
