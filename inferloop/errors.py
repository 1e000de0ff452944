"""The root of inferloop's error taxonomy.

Every error inferloop raises on purpose is an :class:`InferloopError`; each package adds its own errors module
under it (``inferloop.kafka.errors``, ``inferloop.images.errors``, ``inferloop.triton.errors``,
``streams.errors``, ``trainer.errors``, ``infra.local.errors``). Two families matter to the apps:

* :class:`RetryableError`: a dependency failed for now (server unavailable, queue full): back off and retry,
  never drop the event;
* :class:`PoisonError`: the input itself is bad: route it to the dead-letter topic with its :attr:`reason`
  (a stable code) and carry on. Every dead-letter reason is a subclass or an instance of it.
"""

from __future__ import annotations


class InferloopError(Exception):
    """Root of every error inferloop raises on purpose."""


class RetryableError(InferloopError):
    """A transient failure of a dependency: retry later, never drop the event."""


class PoisonError(InferloopError):
    """Input that cannot be processed however often it is retried: dead-letter it with :attr:`reason`.

    A subclass names its reason as a class attribute; a generic decoder passes one per instance.
    """

    reason: str = "poison"

    def __init__(self, message: str, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        super().__init__(message)


class ConfigurationError(InferloopError):
    """Settings that cannot work together; the message says which variable to change."""


class MissingExtra(ConfigurationError):
    """A feature needs a part of inferloop the core install leaves out (``pip install inferloop`` is the light client):
    the message names the extra that brings it, so the fix is one ``pip install`` rather than a traceback."""

    def __init__(self, feature: str, extra: str, missing: str | None = None) -> None:
        self.feature, self.extra, self.missing = feature, extra, missing
        detail = f" ({missing} not installed)" if missing else ""
        super().__init__(f"{feature} needs the {extra!r} extra{detail}: pip install 'inferloop[{extra}]'")


class EventDecodeError(PoisonError):
    """A record that does not follow its event contract; :attr:`reason` says how."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)
