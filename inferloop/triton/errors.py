"""Triton's failures as inferloop errors, with one mapping from a client error to ours for every client.

A server that cannot be reached, a deadline or a cancelled call, and a version that is not ready (a swap in
progress) are :class:`TritonUnavailable` (retryable); a model that will not load is :class:`ModelLoadFailed`;
any other refusal is :class:`TritonRequestFailed`.
"""

from __future__ import annotations

from inferloop.errors import InferloopError, RetryableError

UNAVAILABLE_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")


class TritonError(InferloopError):
    """Root of the Triton boundary's errors."""


class TritonUnavailable(TritonError, RetryableError):
    """Triton cannot be reached or is not ready."""

    def __init__(self, url: str, timeout_s: float, detail: str = "") -> None:
        self.url, self.timeout_s = url, timeout_s
        hint = "; is it running? (`inferloop up` starts one locally)"
        super().__init__(
            f"Triton at {url} did not answer within {timeout_s:g} s{hint}" + (f": {detail}" if detail else "")
        )


class TritonRequestFailed(TritonError):
    """Triton answered with an error."""

    def __init__(self, model: str, action: str, detail: str) -> None:
        self.model, self.action, self.detail = model, action, detail
        super().__init__(f"{action} of model {model!r} failed: {detail}")


class ModelLoadFailed(TritonRequestFailed):
    """Triton could not load a model (or one of its versions)."""


def translate(exc: Exception, url: str, timeout_s: float, model: str, action: str) -> TritonError:
    """The inferloop error for a ``tritonclient`` (or transport) error raised by ``action`` on ``model``."""
    from tritonclient.utils import InferenceServerException

    if not isinstance(exc, InferenceServerException):  # the transport: refused, reset, timed out
        return TritonUnavailable(url, timeout_s, str(exc))
    status = str(exc.status() or "")
    detail = exc.message() or str(exc)
    if any(s in status for s in UNAVAILABLE_STATUSES):
        return TritonUnavailable(url, timeout_s, detail)
    if action == "load":  # its detail names the version's UNAVAILABLE state: a failed load, not an outage
        return ModelLoadFailed(model, action, detail)
    if "not ready" in detail or "unavailable" in detail.lower():
        return TritonUnavailable(url, timeout_s, detail)
    return TritonRequestFailed(model, action, detail)


def client_errors() -> tuple[type[Exception], ...]:
    """What a ``tritonclient`` call may raise that :func:`translate` maps."""
    from tritonclient.utils import InferenceServerException

    return (InferenceServerException, OSError, TimeoutError)
