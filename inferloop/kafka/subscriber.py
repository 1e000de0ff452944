"""Reading predictions as a member of a consumer group, committing only what the caller has taken.

:mod:`.readers` reads a topic from its beginning, with no group, and commits nothing: right for a look at a topic
(``inferloop predictions``), wrong for a service that must handle each prediction once across its restarts. A
:class:`PredictionSubscriber` joins a consumer group (Kafka shares the topic's partitions among the group's members)
and commits offsets only when the caller says that the predictions it took are handled. Delivery is at least once:
what was taken but not committed (a crash, a rebalance that moved the partition away) is delivered again, to this
member or to another one of the group.

A record that is not a prediction (another writer's bytes, a tombstone, a schema this version does not know) is
logged, counted in :attr:`PredictionSubscriber.skipped` by reason and committed with the rest: one bad record never
stops a subscriber, nor comes back at every restart. Synchronous (kafka-python), like the producers and readers.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol, Self

from inferloop.errors import EventDecodeError
from inferloop.events import Prediction, decode_prediction
from inferloop.kafka.errors import BrokerUnavailable, CommitFailed
from inferloop.kafka.options import kafka_options
from inferloop.kafka.topics import ensure_topics
from inferloop.settings import Settings

log = logging.getLogger(__name__)

Start = Literal["earliest", "latest"]


class _ConsumedRecord(Protocol):
    """What the subscriber reads of a kafka-python ``ConsumerRecord``."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


def decode_predictions(
    records: Iterable[_ConsumedRecord], skipped: Counter[str], taken: dict[tuple[str, int], int]
) -> list[Prediction]:
    """The predictions among ``records``, in order; each record that does not decode is logged and counted in
    ``skipped`` by reason. ``taken`` gets, for each record's partition, the offset to commit once the caller has
    handled them: the one after the record (the skipped ones included, so that they are never read again)."""
    predictions: list[Prediction] = []
    for record in records:
        taken[(record.topic, record.partition)] = record.offset + 1
        try:
            predictions.append(decode_prediction(record.value))
        except EventDecodeError as exc:
            log.warning("skipping %s[%d]@%d: %s", record.topic, record.partition, record.offset, exc)
            skipped[exc.reason] += 1
    return predictions


class PredictionSubscriber:
    """The predictions topic read by a member of consumer group ``group``, committed when the caller says so.

    ``start`` is where a group with no committed offset begins: ``"earliest"`` (every prediction the topic keeps)
    or ``"latest"`` (only those written after the group first joins). ``topic`` defaults to
    ``settings.streams.predictions_topic``. Use it as a context manager (or call :meth:`close`)::

        with PredictionSubscriber(settings, "billing") as subscriber:
            while True:
                for prediction in subscriber.poll(timeout_s=1.0):
                    handle(prediction)
                subscriber.commit()  # what poll returned is handled: a restart resumes after it

    or iterate, which commits each batch once the caller asks for the prediction after it (:meth:`follow`).
    """

    def __init__(
        self,
        settings: Settings,
        group: str,
        *,
        topic: str | None = None,
        start: Start = "earliest",
        client_id: str = "inferloop-subscriber",
    ) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        if not group.strip():
            raise ValueError("a subscriber needs a consumer group name")
        self.settings, self.group = settings, group
        self.topic = topic or settings.streams.predictions_topic
        self.skipped: Counter[str] = Counter()  # records that were not predictions, by reason
        self._taken: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset, returned but not committed
        self._records = 0  # records polled, predictions or not: what tells a quiet topic from a noisy one
        ensure_topics(settings)  # as the producers do: never a topic auto-created with the broker's defaults
        try:
            self._consumer: Any = KafkaConsumer(
                self.topic,
                **kafka_options(settings.kafka),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset=start,
                client_id=client_id,
            )
        except KafkaError as exc:
            raise BrokerUnavailable(settings.kafka.bootstrap, str(exc)) from exc

    def poll(self, timeout_s: float = 1.0, max_records: int | None = None) -> list[Prediction]:
        """The next predictions (at most ``max_records``), waiting up to ``timeout_s`` for one; empty when none came.
        The first polls of a member also join the group, which can take a few seconds; a broker that is down
        gives nothing (kafka-python reconnects meanwhile). Nothing is committed: :meth:`commit` does that once the
        caller has handled them."""
        batch = self._consumer.poll(timeout_ms=max(0, int(timeout_s * 1000)), max_records=max_records)
        records = [record for partition_records in batch.values() for record in partition_records]
        self._records += len(records)
        return decode_predictions(records, self.skipped, self._taken)

    def commit(self, timeout_s: float = 30.0) -> None:
        """Commit everything :meth:`poll` returned so far (skipped records included): the group resumes after it.
        :class:`CommitFailed` when the group moved a partition to another member meanwhile (those predictions
        will be delivered again, there); :class:`BrokerUnavailable` when the broker does not answer in time."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError, KafkaTimeoutError
        from kafka.structs import OffsetAndMetadata

        if not self._taken:
            return
        assigned = self._consumer.assignment()
        offsets = {
            tp: OffsetAndMetadata(offset, "", -1)
            for (topic, partition), offset in self._taken.items()
            if (tp := TopicPartition(topic, partition)) in assigned
        }
        try:
            self._consumer.commit(offsets=offsets, timeout_ms=int(timeout_s * 1000))
        except KafkaTimeoutError as exc:
            raise BrokerUnavailable(self.settings.kafka.bootstrap, f"offsets not committed: {exc}") from exc
        except KafkaError as exc:  # CommitFailedError above all: the group rebalanced since the poll
            self._taken.clear()  # this member's generation is over: what it took goes to whoever has it now
            raise CommitFailed(self.group, str(exc)) from exc
        if len(offsets) < len(self._taken):
            log.info("group %s: a partition moved to another member; what it returned there comes again", self.group)
        self._taken.clear()

    def follow(self, idle_timeout_s: float | None = None, limit: int | None = None) -> Iterator[Prediction]:
        """Predictions one at a time, each batch committed when the caller asks for the prediction after its last
        one (it handled them all) and when the iteration ends by itself. It ends after ``limit`` predictions, or
        after ``idle_timeout_s`` without one once the group gave this member its partitions; otherwise never.
        A caller that stops early (``break``) leaves the batch it was in uncommitted: delivered again later."""
        taken = 0
        idle_since: float | None = None
        while limit is None or taken < limit:
            self.commit()
            records_before = self._records
            batch = self.poll(0.5, max_records=None if limit is None else limit - taken)
            if self._records > records_before or not self._consumer.assignment():
                idle_since = None  # idle counts from the assignment on: joining the group is not idleness
            elif idle_since is None:
                idle_since = time.monotonic()
            elif idle_timeout_s is not None and time.monotonic() - idle_since >= idle_timeout_s:
                break
            for prediction in batch:
                yield prediction
                taken += 1
        self.commit()

    def __iter__(self) -> Iterator[Prediction]:
        return self.follow()

    def close(self) -> None:
        """Leave the group (its partitions go to the other members at once) without committing anything more."""
        self._consumer.close(autocommit=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
