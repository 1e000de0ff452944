"""Reading images that travel by reference, and only what :class:`~inferloop.uri_policy.ImageUriPolicy` allows.

Local files are opened without following a last-moment symlink, non-blocking (a FIFO or device is refused, never
waited on) and must be regular files; other filesystems are read through fsspec. At most ``max_bytes + 1`` bytes
are read, so an oversized image is refused without reading it whole.
"""

from __future__ import annotations

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
        data = _read_local(where, max_bytes) if isinstance(where, Path) else _read_remote(where, max_bytes)
        if len(data) > max_bytes:
            raise ImageRejected("too_large", f"{uri} is over the {max_bytes}-byte limit")
        return data


def _read_local(path: Path, max_bytes: int) -> bytes:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise UriUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
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
