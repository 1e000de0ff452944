"""Fitting a model: from scratch (bootstrap) or fine-tuning the serving version on new examples plus replay."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch.nn import functional as F

from inferloop.images.preprocess import InputSpec
from trainer.data import ExampleSet
from trainer.model import SmallCNN

ProgressFn = Callable[[int, int, float], None]  # (epoch, epochs, mean loss)


@dataclass(frozen=True)
class FitConfig:
    """How to fit: epochs, batch size, peak learning rate (cosine decay), augmentation, seed."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0
    threads: int = 1  # trainer.threads: more than the cores it has to itself slows training many-fold


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random small shifts (up to ~10% of the side) and rotations (up to 8 degrees), one per image."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(8)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.2  # affine_grid spans [-1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def fit(model: SmallCNN, data: ExampleSet, config: FitConfig, progress: ProgressFn | None = None) -> SmallCNN:
    """Train ``model`` in place on ``data`` and return it in eval mode."""
    if len(data) == 0:
        raise ValueError("no examples to train on")
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x, y = torch.from_numpy(data.x), torch.from_numpy(data.y)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            xb = _augment(x[batch], generator) if config.augment else x[batch]
            optimizer.zero_grad()
            loss = F.cross_entropy(model.logits(xb), y[batch])
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        if progress is not None:
            progress(epoch + 1, config.epochs, total / len(x))
    return model.eval()


def new_model(spec: InputSpec, num_classes: int, seed: int) -> SmallCNN:
    seed_everything(seed)
    return SmallCNN(spec, num_classes)


def predict_proba(model: SmallCNN, x: NDArray[np.float32], batch_size: int = 512) -> NDArray[np.float32]:
    """Class probabilities for ``x`` (float32 ``[N, C, H, W]``)."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(x[start : start + batch_size])).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.float32)
