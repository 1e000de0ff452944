"""Reading image URIs: only files inside the configured roots are read, however the URI is written."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
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


def _swap_folder_for_symlink(folder: Path, outside: Path, stop: threading.Event) -> None:
    """Until ``stop``: ``folder`` is a real folder, then a symlink to ``outside``, then a real folder again..."""
    hidden = folder.with_name(folder.name + ".real")
    while not stop.is_set():
        folder.rename(hidden)
        folder.symlink_to(outside)
        folder.unlink()
        hidden.rename(folder)


@pytest.mark.security
def test_a_folder_swapped_for_a_symlink_during_the_read_never_leads_outside(tmp_path: Path) -> None:
    """A writer swaps an intermediate folder for a symlink to a folder outside the root, over and over, while
    the reader reads a file below it. A naive open of the checked path (what the reader did before) is shown to
    read the outside file in this very race; the reader only ever reads the inside file or refuses."""
    allowed, outside = tmp_path / "images", tmp_path / "outside"
    (allowed / "sub").mkdir(parents=True)
    outside.mkdir()
    (allowed / "sub" / "b.png").write_bytes(b"inside")
    (outside / "b.png").write_bytes(b"SECRET")
    reader = ImageUriReader(ImageUriPolicy.from_roots([str(allowed)]))
    uri = str(allowed / "sub" / "b.png")

    def naive(uri: str) -> bytes:  # check, then open the checked path: the time-of-check/time-of-use window
        where = reader.policy.check(uri)
        assert isinstance(where, Path)
        return where.read_bytes()

    def race(read: Callable[[str], bytes], until_secret: bool) -> Counter[str]:
        seen: Counter[str] = Counter()
        stop = threading.Event()
        swapper = threading.Thread(target=_swap_folder_for_symlink, args=(allowed / "sub", outside, stop))
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # switch threads often: the window is a few bytecodes wide
        swapper.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (until_secret and seen["SECRET"]):
                try:
                    seen[read(uri).decode()] += 1
                except (UriNotAllowed, UriUnreadable, OSError):
                    seen["refused"] += 1
                if not until_secret and sum(seen.values()) >= 20_000:
                    break
        finally:
            stop.set()
            swapper.join()
            sys.setswitchinterval(interval)
        return seen

    control = race(naive, until_secret=True)
    assert control["SECRET"] >= 1, f"the swap never opened the window for the naive reader: {dict(control)}"
    seen = race(lambda uri: reader.read(uri, 100), until_secret=False)
    assert seen["SECRET"] == 0, dict(seen)
    assert seen["inside"] > 0 and seen["refused"] > 0, dict(seen)  # both sides of the swap were read
