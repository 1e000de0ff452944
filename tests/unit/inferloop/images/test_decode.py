"""Decoding untrusted image bytes, and preprocessing them to model input."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from inferloop.images.decode import ImageLimits, decode_image
from inferloop.images.errors import ImageRejected
from inferloop.images.preprocess import InputSpec, to_model_input


def _png(size: tuple[int, int] = (8, 8), mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=128 if mode == "L" else (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


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
