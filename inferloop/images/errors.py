"""Errors of image decoding and image URIs: poison input, each with its dead-letter reason."""

from __future__ import annotations

from inferloop.errors import PoisonError


class ImageRejected(PoisonError):
    """Image bytes that will not become model input; ``reason`` is a stable code for the dead-letter topic."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)


class UriUnreadable(PoisonError):
    """An allowed image URI that cannot be read (missing, not a regular file, a failing store)."""

    reason = "uri_unreadable"
