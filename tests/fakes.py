"""Fakes for unit and fuzz tests that isolate one step: Triton, the broker, the images topic, and event builders.
(Integration tests use the real servers, never these.)"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from inferloop.events import Feedback, Message, Prediction, Record
from inferloop.triton.errors import TritonRequestFailed
from inferloop.triton.signature import ModelSignature


def prediction(event_id: str, label: str = "3", version: int = 1, offset: int = 10) -> Prediction:
    return Prediction(event_id, "digits", version, [label, "8"], [0.9, 0.05], 1, 2, 3, "", "images", 0, offset)


def feedback(event_id: str, label: str) -> Feedback:
    return Feedback(event_id, label, "test", 5)


SIGNATURE = ModelSignature("digits", "image", "probabilities", (1, 28, 28), tuple("abc"), max_batch_size=2)


class FakeTriton:
    def __init__(
        self,
        failures: list[Exception],
        failing_versions: set[int] = frozenset(),  # type: ignore[assignment]
        slow_versions: dict[int, float] | None = None,  # version -> seconds each answer takes
    ) -> None:
        self.failures, self.failing_versions, self.slow_versions = failures, failing_versions, slow_versions or {}
        self.calls: list[int] = []
        self.versions: list[int | None] = []  # the version each call asked for
        self.answered: list[int | None] = []  # the version of each call that returned an answer

    async def signature(self) -> ModelSignature:
        return SIGNATURE

    async def infer(
        self, signature: ModelSignature, x: np.ndarray, version: int | None = None
    ) -> tuple[np.ndarray, int]:
        """Scores from version ``version`` (4 when none is named; version 5 ranks 'c' first)."""
        self.calls.append(len(x))
        self.versions.append(version)
        if self.failures:
            raise self.failures.pop(0)
        if version in self.failing_versions:
            raise TritonRequestFailed("digits", "inference", f"version {version} is not loaded")
        if version in self.slow_versions:
            await asyncio.sleep(self.slow_versions[version])
        self.answered.append(version)
        row = [0.1, 0.2, 0.7] if version == 5 else [0.2, 0.7, 0.1]
        return np.tile(np.array([row], dtype=np.float32), (len(x), 1)), version or 4


class FakeBroker:
    def __init__(self, fail_times: int = 0, refuse: bool = False) -> None:
        self.fail_times, self.refuse = fail_times, refuse
        self.records: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, records: list[tuple[bytes, bytes]]) -> list[Any]:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("broker went away")
        self.records.extend((topic, key, value) for key, value in records)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None) if not self.refuse else done.set_exception(ConnectionError("refused"))
        return [done] * len(records)


class FakeImages:
    """The images topic by position: the messages given, as a consumer reads them there."""

    def __init__(self, frames: dict[tuple[str, int, int], Message]) -> None:
        self.frames = frames

    async def __call__(self, wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], Record | None]:
        return {w: m.at(*w) if (m := self.frames.get(w)) is not None else None for w in wanted}
