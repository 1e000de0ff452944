"""What the joiner looks up: input images by their position in the images topic, and each model's labels."""

from __future__ import annotations

import logging
import time
from typing import Any

from inferloop.events import Record, as_headers
from inferloop.settings import Settings
from inferloop.triton.errors import TritonRequestFailed, TritonUnavailable
from inferloop.triton.inference import triton_inference

log = logging.getLogger(__name__)


class ImageLookup:
    """Reads image events back from the images topic by position, with a consumer of its own (no group)."""

    SCAN_GAP = 500  # read on through gaps up to this many records rather than seek again

    def __init__(self, connection: dict[str, Any], max_fetch_bytes: int) -> None:
        self.connection, self.max_fetch_bytes = connection, max_fetch_bytes
        self._consumer: Any = None

    async def _ensure(self) -> Any:
        if self._consumer is None:
            from aiokafka import AIOKafkaConsumer

            self._consumer = AIOKafkaConsumer(
                **self.connection,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=max(self.max_fetch_bytes, 1024 * 1024),
                fetch_max_wait_ms=100,
            )
            await self._consumer.start()
        return self._consumer

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def __call__(self, wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], Record | None]:
        """The records at these positions; None for one that is gone (below the log start, past its end, or
        skipped over). An empty read is not taken for "gone": a slow broker or a leader election is waited out
        (the agent's batch deadline bounds the wait)."""
        from aiokafka import TopicPartition

        found: dict[tuple[str, int, int], Record | None] = {w: None for w in wanted}
        if not wanted:
            return found
        consumer = await self._ensure()
        by_tp: dict[Any, list[int]] = {}
        for topic, partition, offset in wanted:
            by_tp.setdefault(TopicPartition(topic, partition), []).append(offset)
        consumer.assign(list(by_tp))
        for tp, offsets in by_tp.items():
            todo = sorted(set(offsets))
            while todo:
                consumer.seek(tp, todo[0])
                last = todo[0] - 1
                while todo and todo[0] <= last + self.SCAN_GAP:
                    batch = (await consumer.getmany(tp, timeout_ms=2000, max_records=1000)).get(tp, [])
                    if not batch:
                        start = (await consumer.beginning_offsets([tp]))[tp]
                        end = (await consumer.end_offsets([tp]))[tp]
                        todo = [o for o in todo if start <= o < end]  # the others are gone for good
                        if todo and await consumer.position(tp) >= end:
                            todo = []  # read to the end: what is left was skipped (markers), gone
                        break
                    for record in batch:
                        where = (tp.topic, tp.partition, record.offset)
                        if where in found:
                            found[where] = Record(
                                *where, record.key, record.value, as_headers(record.headers), record.timestamp
                            )
                    last = batch[-1].offset
                    todo = [o for o in todo if o > last]
                todo = [o for o in todo if o > last]
        return found


class TritonLabels:
    """The class labels of each model version (the one that made the prediction, asked for by number), from
    Triton's model config, cached for a while; so is the fact that Triton did not answer (labels go unchecked
    meanwhile), so that a batch never waits on Triton once per join."""

    def __init__(self, settings: Settings, ttl_s: float = 30.0) -> None:
        self.settings, self.ttl_s = settings, ttl_s
        self._cache: dict[tuple[str, int], tuple[float, frozenset[str] | None]] = {}

    async def __call__(self, model: str, version: int) -> frozenset[str] | None:
        key = (model, version)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
            return cached[1]
        client = triton_inference(self.settings, model)
        try:
            labels = frozenset((await client.signature(version)).labels)
        except (TritonUnavailable, TritonRequestFailed) as exc:
            log.warning(
                "cannot read the labels of %s version %d from Triton (%s); labels go unchecked", model, version, exc
            )
            known = cached[1] if cached else None
            self._cache[key] = (time.monotonic(), known)
            return known
        finally:
            await client.close()
        self._cache[key] = (time.monotonic(), labels)
        return labels
