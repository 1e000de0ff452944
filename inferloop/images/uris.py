"""Reading images that travel by reference, and only what :class:`~inferloop.uri_policy.ImageUriPolicy` allows.

Local files are opened from the allowed folder down, one path component at a time, each relative to the folder
opened before it and none through a symlink (``O_NOFOLLOW`` directory descriptors): a folder swapped for a
symlink after the policy resolved the path makes the open fail, it never leads outside the root. The file
itself is opened non-blocking (a FIFO or device is refused, never waited on) and must be regular; other
filesystems are read through fsspec. At most ``max_bytes + 1`` bytes
are read, so an oversized image is refused without reading it whole.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from inferloop.images.errors import ImageRejected, UriUnreadable
from inferloop.settings import StreamsSettings
from inferloop.uri_policy import ImageUriPolicy


@dataclass(frozen=True)
class ImageUriReader:
    """Reads the images an event references, within ``policy``."""

    policy: ImageUriPolicy

    @classmethod
    def from_settings(cls, streams: StreamsSettings) -> ImageUriReader:
        return cls(ImageUriPolicy.from_settings(streams))

    def read(self, uri: str, max_bytes: int) -> bytes:
        """The bytes behind an allowed ``uri``, at most ``max_bytes`` (:class:`ImageRejected` beyond);
        :class:`~inferloop.uri_policy.UriNotAllowed` or :class:`UriUnreadable` otherwise."""
        where = self.policy.check(uri)
        data = self._read_local(where, max_bytes) if isinstance(where, Path) else _read_remote(where, max_bytes)
        if len(data) > max_bytes:
            raise ImageRejected("too_large", f"{uri} is over the {max_bytes}-byte limit")
        return data

    async def read_off_loop(self, uri: str, max_bytes: int) -> bytes:
        """:meth:`read` in a thread: I/O that may be slow stays off an event loop that heartbeats for a consumer
        group (the worker's and the joiner's)."""
        return await asyncio.to_thread(self.read, uri, max_bytes)

    def _read_local(self, path: Path, max_bytes: int) -> bytes:
        root = next(folder for folder in self.policy.folders if path.is_relative_to(folder))
        try:
            fd = open_beneath(root, path.relative_to(root))
        except OSError as exc:
            raise UriUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
        return _read_fd(fd, path, max_bytes)


_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def open_beneath(root: Path, relative: Path) -> int:
    """A descriptor of ``root / relative`` opened read-only and non-blocking, reached from ``root`` through real
    folders only: every component is opened relative to the one before it with ``O_NOFOLLOW``, so a symlink
    anywhere below ``root`` (one swapped in at this moment included) fails with :class:`OSError` (``ELOOP``,
    ``ENOTDIR``). ``relative`` has no ``..`` or empty components (the policy's resolved path)."""
    parts = relative.parts
    if not parts or any(p in ("..", ".", "") for p in parts):
        raise OSError(errno.EINVAL, "not a path beneath the root")
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
        return os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW, dir_fd=folder)
    finally:
        os.close(folder)


def _read_fd(fd: int, path: Path, max_bytes: int) -> bytes:
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UriUnreadable(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(max_bytes + 1)
    except OSError as exc:
        raise UriUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _read_remote(uri: str, max_bytes: int) -> bytes:
    import fsspec

    try:
        with fsspec.open(uri, "rb") as f:
            data: bytes = f.read(max_bytes + 1)
    except (OSError, ValueError, ImportError) as exc:
        raise UriUnreadable(f"cannot read {uri}: {exc}") from exc
    return data
