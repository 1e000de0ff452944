"""Labelled images for training and evaluation, each with a stable id for lineage.

Sources:

* the embedded default, scikit-learn's handwritten digits (1,797 real 8x8 scans shipped inside the package;
  nothing is downloaded), ids ``sklearn-digits:<index>``;
* any ImageFolder tree (``root/<label>/*.png|jpg``), ids ``file:<label>/<name>``;
* newly logged labelled examples, through a :class:`LabelledExampleReader` (the learning loop provides one
  backed by the training log; :class:`FolderExampleReader` serves a folder that grows).

Holdout membership is decided by a hash of the example id, so an example never moves between training and
holdout as a dataset grows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inferloop.images.preprocess import InputSpec, to_model_input
from trainer.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})
DIGITS_DATASET = "sklearn-digits"


@dataclass(frozen=True)
class ExampleSet:
    """Preprocessed examples: ``x`` is float32 ``[N, C, H, W]``, ``y`` int64 class indices into ``classes``."""

    ids: tuple[str, ...]
    x: NDArray[np.float32]
    y: NDArray[np.int64]
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.ids) == len(self.x) == len(self.y)):
            raise ValueError(f"ids, x and y differ in length: {len(self.ids)}, {len(self.x)}, {len(self.y)}")

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, indices: Sequence[int] | NDArray[np.int64]) -> ExampleSet:
        idx = np.asarray(indices, dtype=np.int64)
        return ExampleSet(tuple(self.ids[i] for i in idx), self.x[idx], self.y[idx], self.classes)

    def only(self, ids: Iterable[str]) -> ExampleSet:
        """These examples with the given ids, in their order."""
        keep = set(ids)
        return self.take([i for i, example_id in enumerate(self.ids) if example_id in keep])

    def without(self, ids: Iterable[str]) -> ExampleSet:
        """These examples less those with the given ids (an example relabelled later is read from there)."""
        drop = set(ids)
        return self.take([i for i, example_id in enumerate(self.ids) if example_id not in drop])

    @staticmethod
    def empty(spec: InputSpec, classes: tuple[str, ...]) -> ExampleSet:
        return ExampleSet((), np.zeros((0, *spec.shape), np.float32), np.zeros(0, np.int64), classes)

    @staticmethod
    def concat(parts: Iterable[ExampleSet]) -> ExampleSet:
        parts = [p for p in parts]
        classes = parts[0].classes
        for p in parts:
            if p.classes != classes:
                raise DatasetError(f"cannot combine examples labelled {p.classes} with {classes}")
        return ExampleSet(
            tuple(i for p in parts for i in p.ids),
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            classes,
        )


def in_holdout(example_id: str, fraction: float) -> bool:
    """Whether ``example_id`` belongs to the holdout: a stable hash, independent of the dataset's size."""
    digest = hashlib.sha256(example_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


def split_holdout(examples: ExampleSet, fraction: float) -> tuple[ExampleSet, ExampleSet]:
    """``(train, holdout)`` by :func:`in_holdout`."""
    mask = np.array([in_holdout(i, fraction) for i in examples.ids], dtype=bool)
    return examples.take(np.flatnonzero(~mask)), examples.take(np.flatnonzero(mask))


def digits_images() -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """scikit-learn's digits as 8-bit grey images (0..16 scaled to 0..255) and their labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(bunch.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    return images, bunch.target.astype(np.int64)


def load_digits_dataset(spec: InputSpec) -> ExampleSet:
    """The embedded default dataset, preprocessed to ``spec``."""
    images, labels = digits_images()
    x = np.stack([to_model_input(Image.fromarray(img, mode="L"), spec) for img in images])
    ids = tuple(f"{DIGITS_DATASET}:{i}" for i in range(len(images)))
    return ExampleSet(ids, x, labels, tuple(str(d) for d in range(10)))


def _image_files(root: Path) -> list[tuple[str, Path]]:
    """``(label, path)`` of every image under ``root/<label>/``, sorted."""
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist or is not a folder")
    found = [
        (label_dir.name, path)
        for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in sorted(label_dir.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    ]
    return found


def _load_files(root: Path, files: Sequence[tuple[str, Path]], spec: InputSpec, classes: tuple[str, ...]) -> ExampleSet:
    index = {c: i for i, c in enumerate(classes)}
    ids, xs, ys = [], [], []
    for label, path in files:
        if label not in index:
            raise DatasetError(f"{path}: label {label!r} is not one of the model's classes {list(classes)}")
        try:
            with Image.open(path) as img:
                xs.append(to_model_input(img, spec))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not a readable image ({exc})") from exc
        ids.append(f"file:{path.relative_to(root).as_posix()}")
        ys.append(index[label])
    if not ids:
        return ExampleSet.empty(spec, classes)
    return ExampleSet(tuple(ids), np.stack(xs), np.asarray(ys, dtype=np.int64), classes)


def load_image_folder(root: Path, spec: InputSpec, classes: tuple[str, ...] | None = None) -> ExampleSet:
    """An ImageFolder tree; classes are the sorted sub-folder names unless given."""
    files = _image_files(root)
    if not files:
        raise DatasetError(f"no images under {root} (expected {root}/<label>/*.png|jpg)")
    classes = classes or tuple(sorted({label for label, _ in files}))
    return _load_files(root, files, spec, classes)


def load_dataset(source: str, spec: InputSpec) -> ExampleSet:
    """The embedded default (``digits``) or an ImageFolder path."""
    if source in ("digits", DIGITS_DATASET):
        return load_digits_dataset(spec)
    return load_image_folder(Path(source).expanduser(), spec)


class LabelledExampleReader(Protocol):
    """Newly labelled examples, read incrementally.

    ``cursor`` is an opaque string the reader returned before (``None``: from the start). The trainer stores
    the cursor of the examples each published version saw, so the next run reads only what came after.
    ``open_ids``: the ids, among those the last :meth:`read` returned, whose labels came from the open feedback
    topic rather than a trusted source (they train within ``trainer.open_label_share`` and are never evidence).
    """

    open_ids: frozenset[str]

    def read(self, classes: tuple[str, ...], after: str | None, until: str | None = None) -> ExampleSet:
        """Examples after ``after`` up to and including ``until`` (``None``: everything there is now)."""
        ...

    def cursor(self) -> str | None:
        """The position of the newest example there is now (``None`` if there are none)."""
        ...


class FolderExampleReader:
    """Labelled images dropped into an ImageFolder tree; the cursor orders files by modification time and path."""

    open_ids: frozenset[str] = frozenset()  # an operator's folder: every label is trusted

    def __init__(self, root: Path, spec: InputSpec) -> None:
        self.root, self.spec = root, spec

    def _positions(self) -> list[tuple[str, str, Path]]:
        if not self.root.exists():
            return []
        out = []
        for label, path in _image_files(self.root):
            position = f"{path.stat().st_mtime_ns:020d}:{path.relative_to(self.root).as_posix()}"
            out.append((position, label, path))
        return sorted(out)

    def cursor(self) -> str | None:
        positions = self._positions()
        return positions[-1][0] if positions else None

    def read(self, classes: tuple[str, ...], after: str | None, until: str | None = None) -> ExampleSet:
        chosen = [
            (label, path)
            for position, label, path in self._positions()
            if (after is None or position > after) and (until is None or position <= until)
        ]
        return _load_files(self.root, chosen, self.spec, classes)


def write_image_folder(root: Path, images: NDArray[np.uint8], labels: Sequence[str], prefix: str = "img") -> None:
    """Save 8-bit grey images as ``root/<label>/<prefix>-<n>.png`` (tests, demos, exporting a dataset)."""
    for n, (img, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{prefix}-{n}.png.tmp"
        Image.fromarray(img, mode="L").save(tmp, format="PNG")
        tmp.replace(folder / f"{prefix}-{n}.png")


def png_bytes(pixels: NDArray[np.uint8]) -> bytes:
    """One 8-bit image (grey ``[H, W]`` or RGB ``[H, W, 3]``) encoded as PNG: events made from a dataset."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
