"""Errors of the Kafka client layer."""

from __future__ import annotations

from inferloop.errors import InferloopError, PoisonError, RetryableError


class BrokerUnavailable(RetryableError):
    """The Kafka cluster cannot be reached."""

    def __init__(self, bootstrap: str, detail: str) -> None:
        self.bootstrap = bootstrap
        super().__init__(f"Kafka at {bootstrap} cannot be reached ({detail}); is it running? (`inferloop up`)")


class ReadIncomplete(RetryableError):
    """A read up to recorded end offsets stalled before reaching them: nothing read may be taken as complete."""

    def __init__(self, topic: str, missing: dict[int, tuple[int, int]], idle_s: float) -> None:
        self.topic, self.missing = topic, missing
        where = ", ".join(f"partition {p} at {at} of {end}" for p, (at, end) in sorted(missing.items()))
        super().__init__(f"reading {topic} stalled for {idle_s:g} s before its recorded end ({where})")


class CommitFailed(RetryableError):
    """A consumer group did not take a commit: it gave the partitions to another member meanwhile (a rebalance), so
    what this member read since its last commit will be delivered again, to whoever holds them now."""

    def __init__(self, group: str, detail: str) -> None:
        self.group = group
        super().__init__(f"consumer group {group!r} refused the commit ({detail}); uncommitted records come again")


class EventTooLarge(PoisonError):
    """An event over the Kafka record size limit: refused before it is sent."""

    reason = "event_too_large"

    def __init__(self, size: int, limit: int, what: str = "the event") -> None:
        self.size, self.limit = size, limit
        super().__init__(
            f"{what} is {size} bytes as an event, over the {limit}-byte Kafka record limit "
            "(INFERLOOP_STREAMS__MAX_REQUEST_BYTES); larger images travel as a URI: put them in a folder named by "
            "INFERLOOP_STREAMS__IMAGE_URI_ROOTS, which the workers can read"
        )


class DeliveryRefused(InferloopError):
    """The broker did not take a record: not authorised to write its topic, or another refusal after retries."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"the broker did not take a record: {detail}")


class FeedbackError(InferloopError):
    """Feedback that cannot be sent as given (a bad line in a bulk file, an empty label)."""
