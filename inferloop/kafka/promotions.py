"""The promotions topic: which version of each model serves, and which is scored in shadow, announced durably.

One partition, compacted, keyed by model name: its records are in the order they were announced and the latest
of a model is that model's state (:class:`~inferloop.events.Promotion`). The trainer's publisher and the CLI
announce (:class:`PromotionLog`, synchronous, every announcement acknowledged by all in-sync replicas); each
worker reads the whole topic and follows it (:class:`PromotionWatcher`, asynchronous, no consumer group: every
worker holds every model's state), so a promotion or a rollback reaches every worker within a poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from inferloop.errors import EventDecodeError
from inferloop.events import Promotion, decode_promotion, encode_promotion
from inferloop.kafka.errors import BrokerUnavailable
from inferloop.kafka.options import aiokafka_options, kafka_options
from inferloop.kafka.readers import read_topic
from inferloop.kafka.topics import ensure_topics
from inferloop.settings import Settings

log = logging.getLogger(__name__)


class PromotionLog:
    """Announces promotions and reads the latest one of a model (synchronous: the trainer and the CLI)."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        self.settings, self.topic, self.timeout_s = settings, settings.model.promotions_topic, timeout_s

    def latest(self, model: str) -> Promotion | None:
        """The last announcement of ``model`` (None: never announced); the whole topic is read, or this raises
        :class:`~inferloop.kafka.errors.ReadIncomplete`. A record that does not decode is skipped, logged."""
        from kafka.errors import KafkaError

        latest: Promotion | None = None
        try:
            for record in read_topic(self.settings, self.topic, idle_timeout_s=self.timeout_s, complete=True):
                if record.key != model.encode() or record.value is None:
                    continue
                try:
                    latest = decode_promotion(record.value)
                except EventDecodeError as exc:
                    log.warning("skipping %s@%d: %s", self.topic, record.offset, exc)
        except KafkaError as exc:
            raise BrokerUnavailable(self.settings.kafka.bootstrap, f"reading {self.topic}: {exc}") from exc
        return latest

    def announce(self, promotion: Promotion) -> None:
        """Write ``promotion`` and wait until the broker has it (:class:`BrokerUnavailable` if it does not)."""
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        ensure_topics(self.settings)
        try:
            producer = KafkaProducer(**kafka_options(self.settings.kafka), acks="all", client_id="inferloop-promoter")
        except KafkaError as exc:
            raise BrokerUnavailable(self.settings.kafka.bootstrap, str(exc)) from exc
        try:
            future = producer.send(self.topic, key=promotion.model_name.encode(), value=encode_promotion(promotion))
            future.get(timeout=self.timeout_s)
        except KafkaError as exc:
            raise BrokerUnavailable(self.settings.kafka.bootstrap, f"announcing {promotion}: {exc}") from exc
        finally:
            producer.close(timeout=5)


class PromotionWatcher:
    """Follows the promotions topic in the background (a worker's view of every model's announced state).

    :meth:`current` is None until the watcher has read the topic up to the end it had when the watcher started,
    and for a model never announced; then it is the latest announcement, at most one poll old.
    """

    POLL_MS = 250

    def __init__(self, settings: Settings, on_change: Callable[[Promotion], None] | None = None) -> None:
        self.settings, self.topic, self.on_change = settings, settings.model.promotions_topic, on_change
        self._state: dict[str, Promotion] = {}
        self._caught_up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Any = None
        self.error: BaseException | None = None

    def current(self, model: str) -> Promotion | None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._follow())
        return self._state.get(model) if self._caught_up.is_set() else None

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        self.current("")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._caught_up.wait(), timeout_s)
        return self._caught_up.is_set()

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        while True:
            try:
                self._consumer = AIOKafkaConsumer(
                    **aiokafka_options(self.settings.kafka), group_id=None, enable_auto_commit=False
                )
                await self._consumer.start()
                tp = TopicPartition(self.topic, 0)
                self._consumer.assign([tp])
                await self._consumer.seek_to_beginning(tp)
                end = (await self._consumer.end_offsets([tp]))[tp]
                if end == 0:
                    self._caught_up.set()
                while True:
                    batch = await self._consumer.getmany(tp, timeout_ms=self.POLL_MS)
                    for record in batch.get(tp, []):
                        self._apply(record.key, record.value, record.offset)
                    if not self._caught_up.is_set() and await self._consumer.position(tp) >= end:
                        self._caught_up.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker went away: the state known so far stays; read again
                self.error = exc
                log.warning("following %s failed (%s); reconnecting", self.topic, exc)
                await self._close_consumer()
                await asyncio.sleep(1.0)

    def _apply(self, key: bytes | None, value: bytes | None, offset: int) -> None:
        if not key or value is None:
            return
        try:
            promotion = decode_promotion(value)
        except EventDecodeError as exc:
            log.warning("skipping %s@%d: %s", self.topic, offset, exc)
            return
        if promotion.model_name.encode() != key:
            log.warning("skipping %s@%d: keyed %r but names %s", self.topic, offset, key, promotion.model_name)
            return
        previous = self._state.get(promotion.model_name)
        self._state[promotion.model_name] = promotion
        if self.on_change is not None:
            self.on_change(promotion)
        if previous is None or (previous.serving, previous.shadow) != (promotion.serving, promotion.shadow):
            log.warning(
                "%s: version %d serves%s (%s)",
                promotion.model_name,
                promotion.serving,
                f", version {promotion.shadow} in shadow" if promotion.shadow else "",
                promotion.action,
            )

    async def _close_consumer(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._close_consumer()
