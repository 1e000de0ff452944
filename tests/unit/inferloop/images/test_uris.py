"""Reading image URIs: only files inside the configured roots are read, however the URI is written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inferloop.images.errors import ImageRejected, UriUnreadable
from inferloop.images.uris import ImageUriReader
from inferloop.uri_policy import ImageUriPolicy, UriNotAllowed


@pytest.fixture
def tree(tmp_path: Path) -> tuple[ImageUriReader, Path]:
    allowed = tmp_path / "images"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "a.png").write_bytes(b"inside")
    (allowed / "sub" / "b.png").write_bytes(b"nested")
    (tmp_path / "secret").write_bytes(b"outside")
    (allowed / "out").symlink_to(tmp_path / "secret")
    (allowed / "in").symlink_to(allowed / "a.png")
    (allowed / "dir-out").symlink_to(tmp_path)
    os.mkfifo(allowed / "fifo")
    return ImageUriReader(ImageUriPolicy.from_roots([str(allowed)])), allowed


def test_files_inside_the_root_are_read_by_uri_or_path(tree: tuple[ImageUriReader, Path]) -> None:
    reader, allowed = tree
    assert reader.read((allowed / "a.png").as_uri(), 100) == b"inside"
    assert reader.read(str(allowed / "sub" / "b.png"), 100) == b"nested"
    assert reader.read(f"file://localhost{allowed}/a.png", 100) == b"inside"
    assert reader.read((allowed / "in").as_uri(), 100) == b"inside"  # a symlink that stays inside
    assert reader.read(f"file://{allowed}/sub/../a.png", 100) == b"inside"  # '..' that stays inside


@pytest.mark.parametrize(
    "uri",
    [
        "file://{root}/../secret",
        "file://{root}/%2e%2e/secret",
        "{root}/../secret",
        "file://{root}/out",  # symlink leading out
        "file://{root}/dir-out/secret",  # symlinked folder leading out
        "file:///etc/hostname",
        "file://otherhost{root}/a.png",
        "images/a.png",  # relative
        "http://169.254.169.254/latest/meta-data",
        "simplecache::file://{root}/a.png",
        "s3://bucket/a.png",
        "file://{root}/a.png\x00.jpg",
    ],
)
def test_uris_that_leave_the_root_are_refused(tree: tuple[ImageUriReader, Path], uri: str) -> None:
    reader, allowed = tree
    with pytest.raises(UriNotAllowed):
        reader.read(uri.format(root=allowed), 100)


def test_missing_files_fifos_and_folders_are_unreadable_without_blocking(tree: tuple[ImageUriReader, Path]) -> None:
    reader, allowed = tree
    for name in ("missing.png", "fifo", "sub"):
        with pytest.raises(UriUnreadable):
            reader.read((allowed / name).as_uri(), 100)


def test_a_file_over_the_limit_is_rejected_as_too_large(tree: tuple[ImageUriReader, Path]) -> None:
    reader, allowed = tree
    with pytest.raises(ImageRejected) as caught:
        reader.read((allowed / "a.png").as_uri(), 3)
    assert caught.value.reason == "too_large"
