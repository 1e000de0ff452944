"""The worker's view of the promotions topic, followed in the background (aiokafka, no consumer group: every
worker holds every model's state), so that a promotion or a rollback reaches every worker within a poll.
Announcing and one-off reads are :class:`inferloop.kafka.promotions.PromotionLog`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from inferloop.errors import EventDecodeError
from inferloop.events import Promotion, decode_promotion
from inferloop.kafka.options import aiokafka_options
from inferloop.settings import Settings

log = logging.getLogger(__name__)


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

    def start(self) -> None:
        """Begin following (in the background, on the running loop); :meth:`current` starts it too."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._follow())

    def current(self, model: str) -> Promotion | None:
        self.start()
        return self._state.get(model) if self._caught_up.is_set() else None

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        while True:
            try:
                self._consumer = AIOKafkaConsumer(
                    **aiokafka_options(self.settings.kafka), group_id=None, enable_auto_commit=False
                )
                await self._consumer.start()
                # every partition (inferloop creates one; a topic made by hand with more is read whole too)
                await self._consumer.topics()  # the cluster's metadata, so that the partitions are known
                partitions = self._consumer.partitions_for_topic(self.topic) or {0}
                tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
                self._consumer.assign(tps)
                await self._consumer.seek_to_beginning(*tps)
                ends = await self._consumer.end_offsets(tps)
                while True:
                    if not self._caught_up.is_set():
                        positions = {tp: await self._consumer.position(tp) for tp in tps}
                        if all(positions[tp] >= ends[tp] for tp in tps):
                            self._caught_up.set()
                    batch = await self._consumer.getmany(*tps, timeout_ms=self.POLL_MS)
                    for records in batch.values():
                        for record in records:
                            self._apply(record.key, record.value, record.offset)
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
