"""How the apps stop before a commit: a batch that raises or outlasts its deadline, a crashed agent, a refused
changelog write. ``os._exit`` is replaced by a recorder that raises, so the tests see the exit code and that
nothing after it ran (faust acknowledges a batch only when its ``take_events`` generator is resumed or closed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inferloop.events import Record
from inferloop.settings import Settings
from streams.errors import DependencyOutage
from streams.faust_app import (
    EXIT_BEFORE_COMMIT,
    EXIT_OUTAGE,
    ExitOnSendError,
    batch_deadline_s,
    exit_on_batch_error,
    faust_app,
    process_batches,
)
from tests.unit.streams.conftest import Exited


def event(offset: int) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(topic="t", partition=0, offset=offset, headers=[("h", b"1")], timestamp=1.5),
        key=b"k",
        value=b"v",
    )


class Batches:
    """A ``take_events`` stand-in that records whether it was resumed after a batch (faust acks there)."""

    def __init__(self, count: int) -> None:
        self.count, self.resumed_after = count, 0

    async def __aiter__(self) -> AsyncIterator[list[Any]]:
        for n in range(self.count):
            yield [event(n)]
            self.resumed_after = n + 1


def run(batches: Batches, process: Any, deadline_s: float = 5.0) -> None:
    with pytest.raises(Exited):
        asyncio.run(process_batches(batches.__aiter__(), process, deadline_s))


def test_a_batch_that_raises_exits_70_before_its_events_are_acknowledged(exits: list[int]) -> None:
    seen: list[list[Record]] = []

    async def process(batch: list[Record]) -> None:
        seen.append(batch)
        raise KeyError("no output in the response")

    batches = Batches(3)
    run(batches, process)
    assert exits == [EXIT_BEFORE_COMMIT] and batches.resumed_after == 0
    assert seen == [[Record("t", 0, 0, b"k", b"v", (("h", b"1"),), 1500)]], "headers and the timestamp (ms) come along"


def test_a_dependency_outage_exits_75(exits: list[int]) -> None:
    async def process(batch: list[Record]) -> None:
        raise DependencyOutage("Triton: still failing")

    run(Batches(2), process)
    assert exits == [EXIT_OUTAGE]


def test_a_batch_that_outlasts_its_deadline_exits_75_whatever_it_waits_on(exits: list[int]) -> None:
    async def process(batch: list[Record]) -> None:
        await asyncio.Event().wait()  # a send the broker never answers

    batches = Batches(2)
    run(batches, process, deadline_s=0.05)
    assert exits == [EXIT_OUTAGE] and batches.resumed_after == 0


def test_the_batch_deadline_stays_under_the_poll_interval() -> None:
    settings = Settings()
    assert batch_deadline_s(settings) < settings.streams.max_poll_interval_s


def test_a_crashed_agent_exits_70_instead_of_faust_committing(exits: list[int]) -> None:
    app = faust_app(Settings(), "unit-test-app")
    with pytest.raises(Exited):
        asyncio.run(app._on_agent_error(SimpleNamespace(name="classify"), RuntimeError("crashed")))
    assert exits == [EXIT_BEFORE_COMMIT]
    assert any(isinstance(sensor, ExitOnSendError) for sensor in app.sensors)


def test_a_refused_changelog_write_exits_70(exits: list[int]) -> None:
    with pytest.raises(Exited):
        ExitOnSendError().on_send_error(None, RuntimeError("NOT_ENOUGH_REPLICAS"), None)
    assert exits == [EXIT_BEFORE_COMMIT]


def test_a_broker_that_times_out_is_an_outage_and_a_refusal_is_not(exits: list[int]) -> None:
    from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError

    for exc, code in [
        (KafkaTimeoutError(), EXIT_OUTAGE),
        (KafkaConnectionError(), EXIT_OUTAGE),
        (MessageSizeTooLargeError(), EXIT_BEFORE_COMMIT),
        (ValueError("a bug"), EXIT_BEFORE_COMMIT),
    ]:
        with pytest.raises(Exited):
            exit_on_batch_error(exc, "t[0]@0")
        assert exits[-1] == code, exc


def test_fausts_folder_is_under_the_state_folder_not_the_working_directory(tmp_path: Path) -> None:
    """A container's working directory is read-only, a checkout's is the repository: faust writes neither."""
    app = faust_app(Settings(home=tmp_path), "unit-folder-app")
    assert Path(app.conf.datadir) == tmp_path / "faust" / "unit-folder-app"
    assert Path(app.conf.appdir).is_relative_to(tmp_path)
