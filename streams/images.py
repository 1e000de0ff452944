"""Images to model input: the one preprocessing that training and serving share.

The model's input contract is an :class:`InputSpec` (channels, height, width); it travels with every model
version (model card and Triton config), so the worker reads it from the served model instead of assuming it.
Pixels become float32 in [0, 1], laid out channels first.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from streams.errors import PoisonError

FloatArray = NDArray[np.float32]


@dataclass(frozen=True)
class InputSpec:
    """What one model input looks like: ``channels`` (1 grey, 3 RGB) x ``height`` x ``width``, float32 in [0, 1]."""

    channels: int = 1
    height: int = 28
    width: int = 28

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not (4 <= self.height <= 1024 and 4 <= self.width <= 1024):
            raise ValueError(f"height and width must be within 4..1024, got {self.height}x{self.width}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def mode(self) -> str:
        """The Pillow mode images are converted to."""
        return "L" if self.channels == 1 else "RGB"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> InputSpec:
        return cls(**json.loads(text))


def to_model_input(image: Image.Image, spec: InputSpec) -> FloatArray:
    """One decoded image as a ``spec.shape`` float32 array: converted, resized (bilinear), scaled to [0, 1]."""
    converted = image.convert(spec.mode)
    if converted.size != (spec.width, spec.height):
        converted = converted.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(converted, dtype=np.float32) / 255.0
    if spec.channels == 1:
        return pixels[np.newaxis, :, :]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


# -- decoding untrusted bytes --------------------------------------------------------------------------------------

FORMATS_BY_CONTENT_TYPE: dict[str, str] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/gif": "GIF",
}


class ImageRejected(PoisonError):
    """Image bytes that will not become model input; ``reason`` is a stable code for the dead-letter topic."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class ImageLimits:
    """What the worker accepts: formats, bytes and pixels (a decompression bomb is refused before decoding)."""

    max_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 4_000_000
    content_types: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/gif")


def decode_image(data: bytes, content_type: str, limits: ImageLimits) -> Image.Image:
    """Decode untrusted bytes into a loaded Pillow image, or raise :class:`ImageRejected` saying why."""
    if content_type not in limits.content_types:
        raise ImageRejected("disallowed_content_type", f"content type {content_type!r} is not accepted")
    if len(data) > limits.max_bytes:
        raise ImageRejected("too_large", f"{len(data)} bytes is over the {limits.max_bytes}-byte limit")
    if not data:
        raise ImageRejected("empty_image", "the image has no bytes")
    allowed = sorted({FORMATS_BY_CONTENT_TYPE[t] for t in limits.content_types})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=allowed)
            width, height = image.size
            if width * height > limits.max_pixels:
                raise ImageRejected(
                    "decompression_bomb", f"{width}x{height} pixels is over the {limits.max_pixels}-pixel limit"
                )
            if image.format != FORMATS_BY_CONTENT_TYPE[content_type]:
                raise ImageRejected(
                    "content_type_mismatch", f"declared {content_type} but the bytes are {image.format}"
                )
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("decompression_bomb", str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("not_an_image", f"the bytes are not a {'/'.join(allowed)} image") from exc
    except (OSError, ValueError, SyntaxError, struct.error, EOFError) as exc:
        raise ImageRejected("undecodable", f"the image is damaged: {exc}") from exc
    return image
