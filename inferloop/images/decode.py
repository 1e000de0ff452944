"""Decoding untrusted image bytes: allowed formats, a byte limit, a pixel limit (decompression bombs refused before
decoding), and a specific :class:`~inferloop.images.errors.ImageRejected` reason for everything else."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from inferloop.images.errors import ImageRejected

FORMATS_BY_CONTENT_TYPE: dict[str, str] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/jpg": "JPEG",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/gif": "GIF",
}


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
