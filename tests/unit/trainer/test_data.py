from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from inferloop.images.preprocess import InputSpec
from trainer.data import (
    ExampleSet,
    FolderExampleReader,
    digits_images,
    in_holdout,
    load_dataset,
    load_image_folder,
    split_holdout,
    write_image_folder,
)
from trainer.errors import DatasetError

SPEC = InputSpec()


def test_embedded_digits_load_as_model_input() -> None:
    data = load_dataset("digits", SPEC)
    assert len(data) == 1797
    assert data.x.shape == (1797, 1, 28, 28) and data.x.dtype == np.float32
    assert data.x.min() >= 0.0 and data.x.max() <= 1.0
    assert data.classes == tuple(str(d) for d in range(10))
    assert data.ids[0] == "sklearn-digits:0"


def test_holdout_membership_is_stable_and_near_the_fraction() -> None:
    ids = [f"x:{i}" for i in range(5000)]
    share = np.mean([in_holdout(i, 0.2) for i in ids])
    assert 0.18 < share < 0.22
    assert [in_holdout(i, 0.2) for i in ids[:100]] == [in_holdout(i, 0.2) for i in ids[:100]]
    data = load_dataset("digits", SPEC)
    train, holdout = split_holdout(data, 0.2)
    assert len(train) + len(holdout) == len(data)
    assert not set(train.ids) & set(holdout.ids)
    # Growing the dataset never moves an example between the parts.
    _, holdout_small = split_holdout(data.take(np.arange(1000)), 0.2)
    assert set(holdout_small.ids) <= set(holdout.ids)


def test_image_folder_round_trip(tmp_path: Path) -> None:
    images, labels = digits_images()
    write_image_folder(tmp_path, images[:30], [str(v) for v in labels[:30]])
    data = load_image_folder(tmp_path, SPEC, classes=tuple(str(d) for d in range(10)))
    assert len(data) == 30
    assert all(i.startswith("file:") for i in data.ids)
    by_id = dict(zip(data.ids, data.y, strict=True))
    assert by_id["file:" + f"{labels[0]}/img-0.png"] == labels[0]


def test_image_folder_errors_are_specific(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder(tmp_path / "nope", SPEC)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="not a readable image"):
        load_image_folder(tmp_path, SPEC)
    (tmp_path / "3" / "bad.png").unlink()
    images, _ = digits_images()
    write_image_folder(tmp_path, images[:1], ["cat"])
    with pytest.raises(DatasetError, match="label 'cat'"):
        load_image_folder(tmp_path, SPEC, classes=("0", "1"))


def test_folder_reader_reads_incrementally(tmp_path: Path) -> None:
    classes = tuple(str(d) for d in range(10))
    reader = FolderExampleReader(tmp_path / "labelled", SPEC)
    assert reader.cursor() is None
    assert len(reader.read(classes, after=None)) == 0
    images, labels = digits_images()
    write_image_folder(tmp_path / "labelled", images[:5], [str(v) for v in labels[:5]], prefix="a")
    first = reader.cursor()
    assert len(reader.read(classes, after=None, until=first)) == 5
    later = tmp_path / "labelled" / "9"
    write_image_folder(tmp_path / "labelled", images[5:8], ["9"] * 3, prefix="b")
    for n, path in enumerate(sorted(later.glob("b-*.png"))):  # make sure they sort after the first batch
        os.utime(path, ns=(2 * 10**18 + n, 2 * 10**18 + n))
    new = reader.read(classes, after=first)
    assert sorted(new.ids) == [f"file:9/b-{n}.png" for n in range(3)]
    assert len(reader.read(classes, after=first, until=first)) == 0


def test_concat_refuses_mismatched_classes() -> None:
    a = ExampleSet.empty(SPEC, ("0", "1"))
    b = ExampleSet.empty(SPEC, ("1", "0"))
    with pytest.raises(DatasetError):
        ExampleSet.concat([a, b])
