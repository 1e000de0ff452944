"""The default model: a small convolutional image classifier."""

from __future__ import annotations

import torch
from torch import nn

from inferloop.images.preprocess import InputSpec


class SmallCNN(nn.Module):
    """Two conv blocks and a two-layer head; outputs class probabilities (softmax inside the model).

    Sized for 28x28 grey digits on a CPU: about 60k parameters, well under a millisecond per image.
    """

    def __init__(self, spec: InputSpec, num_classes: int) -> None:
        super().__init__()
        self.spec, self.num_classes = spec, num_classes
        self.features = nn.Sequential(
            nn.Conv2d(spec.channels, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        flat = 32 * (spec.height // 4) * (spec.width // 4)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(flat, 64), nn.ReLU(), nn.Linear(64, num_classes)
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)
