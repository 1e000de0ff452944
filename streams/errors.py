"""Exceptions of the streaming side of inferloop.

Each failure mode has its own subclass carrying structured fields. Two families matter to the agents:
:class:`RetryableError` (back off, pause consumption, try again) and :class:`PoisonError` (the input itself is
bad: dead-letter it with a reason and carry on).
"""

from __future__ import annotations


class InferloopError(Exception):
    """Root of every error inferloop raises on purpose."""


class RetryableError(InferloopError):
    """A transient failure of a dependency: retry later, never drop the event."""


class PoisonError(InferloopError):
    """The input cannot be processed however often it is retried: route it to the dead-letter topic."""


class ConfigurationError(InferloopError):
    """Settings that cannot work together; the message says which variable to change."""
