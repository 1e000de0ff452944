"""Which image URIs may be read: an ``image_uri`` the worker (and the joiner) may follow, and no other.

An event's URI comes from whoever can write to the images topic, so it is untrusted input: without a check a
producer could make the worker read any file it can see (keys, credentials, ``/dev/zero``) or fetch any URL it
can reach. :class:`ImageUriPolicy` allows only what ``streams.image_uri_roots`` names:

- local folders (``/data/images`` or ``file:///data/images``): the URI's path, with every symlink resolved, must
  lie inside one of them, and must be a regular file (no FIFO, device or socket, which could block or never
  end); it is opened without following a last-moment symlink;
- URI prefixes of other filesystems (``s3://bucket/images/``), read through fsspec: same scheme, the URI starts
  with the prefix, and no ``..``/``.`` segments, query, fragment or fsspec chaining (``::``) that could step out.

With no roots configured (the default) every image URI is refused: images travel inline.

This module only decides (standard library only: the producer decides with it whether a file may travel by
reference); :mod:`inferloop.images.uris` reads what it allows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, unquote, urlsplit
from urllib.request import url2pathname

from inferloop.errors import PoisonError

if TYPE_CHECKING:
    from inferloop.settings import StreamsSettings


class UriNotAllowed(PoisonError):
    """An image URI outside the allowed roots (or of a form that could escape them)."""

    reason = "uri_not_allowed"


def _is_local(scheme: str) -> bool:
    return scheme in ("", "file")


def _local_path(uri: str, parts: SplitResult) -> Path:
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        raise UriNotAllowed(f"{uri}: file URIs on another host ({parts.netloc}) are not read")
    return Path(url2pathname(parts.path) if parts.scheme == "file" else uri)


@dataclass(frozen=True)
class ImageUriPolicy:
    """The places image URIs may point to (see the module's documentation)."""

    folders: tuple[Path, ...]
    prefixes: tuple[str, ...]

    @classmethod
    def from_roots(cls, roots: tuple[str, ...] | list[str]) -> ImageUriPolicy:
        folders: list[Path] = []
        prefixes: list[str] = []
        for root in roots:
            parts = urlsplit(root)
            if _is_local(parts.scheme):
                path = _local_path(root, parts)
                if not path.is_absolute():
                    raise ValueError(f"image URI root {root!r} is not an absolute path")
                folders.append(Path(os.path.realpath(path)))
            else:
                prefixes.append(root if root.endswith("/") else root + "/")
        return cls(tuple(folders), tuple(prefixes))

    @classmethod
    def from_settings(cls, streams: StreamsSettings) -> ImageUriPolicy:
        """The policy of ``streams.image_uri_roots``."""
        return cls.from_roots(streams.image_uri_roots)

    @property
    def enabled(self) -> bool:
        return bool(self.folders or self.prefixes)

    def describe(self) -> str:
        roots = [str(f) for f in self.folders] + list(self.prefixes)
        return ", ".join(roots) if roots else "nowhere (INFERLOOP_STREAMS__IMAGE_URI_ROOTS is empty)"

    def _inside(self, path: Path) -> Path | None:
        """``path`` with every symlink resolved, if that lies inside an allowed folder."""
        real = Path(os.path.realpath(path))
        return real if any(real.is_relative_to(folder) for folder in self.folders) else None

    def allows_path(self, path: Path) -> bool:
        return self._inside(path) is not None

    def check(self, uri: str) -> Path | str:
        """The local file (symlinks resolved) or the remote URI ``uri`` names; :class:`UriNotAllowed` if outside."""
        try:
            return self._check(uri)
        except ValueError as exc:  # urlsplit, url2pathname and realpath on malformed input (a bad IPv6 host, NUL)
            raise UriNotAllowed(f"{uri!r} is not a well-formed image URI: {exc}") from exc

    def _check(self, uri: str) -> Path | str:
        if not self.enabled:
            raise UriNotAllowed(f"image URIs are not read here ({uri}): set INFERLOOP_STREAMS__IMAGE_URI_ROOTS")
        if "\x00" in uri or "::" in uri:
            raise UriNotAllowed(f"{uri!r}: NUL bytes and chained filesystems ('::') are not allowed")
        parts = urlsplit(uri)
        if _is_local(parts.scheme):
            path = _local_path(uri, parts)
            if not path.is_absolute():
                raise UriNotAllowed(f"{uri}: a relative path")
            real = self._inside(path)
            if real is None:
                raise UriNotAllowed(f"{uri} is outside the allowed image folders ({self.describe()})")
            return real
        if parts.query or parts.fragment:
            raise UriNotAllowed(f"{uri}: a query or fragment is not allowed in an image URI")
        segments = unquote(parts.path).split("/")
        if any(s in ("..", ".") for s in segments) or "\\" in unquote(parts.path):
            raise UriNotAllowed(f"{uri}: '.', '..' or '\\' segments are not allowed")
        if not any(uri.startswith(prefix) for prefix in self.prefixes):
            raise UriNotAllowed(f"{uri} is outside the allowed image URI roots ({self.describe()})")
        return uri
