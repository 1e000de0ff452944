"""Errors of the streaming apps: the dead-letter reasons the worker and the joiner decide themselves."""

from __future__ import annotations

from inferloop.errors import InferloopError, PoisonError, RetryableError


class StreamsError(InferloopError):
    """Root of the streaming apps' errors."""


class DependencyOutage(RetryableError):
    """A batch waited ``streams.outage_timeout_s`` for a dependency: the process exits without committing it."""


class NotPromoted(RetryableError):
    """No version of the model is announced on the promotions topic yet: the worker waits (within its outage
    budget) rather than ask Triton for whatever it loaded."""


class InferenceFailed(PoisonError):
    """Triton refused the event's batch repeatedly (not unavailable: it answered with an error each time)."""

    reason = "inference_failed"


class UnexpectedInputError(PoisonError):
    """Decoding an event raised something no decoder declares (a bug): the event is dead-lettered, not lost."""

    reason = "internal_error"


class FeedbackRejected(PoisonError):
    """Feedback that cannot become a labelled example; :attr:`reason` says why (``unknown_event``,
    ``expired_event``, ``unknown_label``, ``image_unavailable``, ``example_too_large``, ``misplaced_feedback``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason)
