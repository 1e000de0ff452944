"""Images to model input: the one preprocessing that training and serving share.

The model's input contract is an :class:`InputSpec` (channels, height, width); it travels with every model
version (model card and Triton config), so the worker reads it from the served model instead of assuming it.
Pixels become float32 in [0, 1], laid out channels first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

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
