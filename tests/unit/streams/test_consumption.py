"""The worker's consumption path: batches of what has arrived (never acknowledged by the taker), processed up to
``batches_in_flight`` at once and acknowledged in order once finished; the lean consumer's inline delivery.

``os._exit`` is replaced by a recorder that raises, so the tests see the exit code and that nothing after it ran.
faust's events and channel are stood in for by objects with the same fields: what is tested is the order of
acknowledgements, not faust's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from inferloop.events import Record
from streams.consumption import InLoopConsumerThread, LeanConsumer, Taken, arrived_batches
from streams.errors import DependencyOutage
from streams.faust_app import EXIT_BEFORE_COMMIT, EXIT_OUTAGE, process_in_order
from tests.unit.streams.conftest import Exited


class Event:
    """A faust event's fields the consumption path reads, with its acknowledgement recorded."""

    def __init__(self, offset: int, acked: list[int], generation: int = 1) -> None:
        self.key, self.value, self.acked = b"k", b"v", acked
        self.message = SimpleNamespace(
            topic="t", partition=0, offset=offset, headers=[], timestamp=None, generation_id=generation, tracked=False
        )

    def ack(self) -> bool:
        self.acked.append(self.message.offset)
        return True


def taken(offsets: range, acked: list[int]) -> AsyncIterator[Taken]:
    async def batches() -> AsyncIterator[Taken]:
        for n in offsets:
            yield Taken([Event(n, acked)])  # type: ignore[list-item]

    return batches()


def test_batches_in_flight_are_acknowledged_in_the_order_they_were_taken() -> None:
    acked: list[int] = []
    started: list[int] = []
    release = {n: asyncio.Event() for n in range(4)}

    async def process(batch: list[Record]) -> None:
        started.append(batch[0].offset)
        await release[batch[0].offset].wait()

    async def scenario() -> None:
        running = asyncio.ensure_future(process_in_order(taken(range(4), acked), process, 5.0, in_flight=2))
        await asyncio.sleep(0.01)
        assert started == [0, 1], "two batches in flight, no more"
        release[1].set()  # the later batch finishes first ...
        await asyncio.sleep(0.01)
        assert acked == [], "... and waits for the earlier one to be acknowledged"
        release[0].set()
        await asyncio.sleep(0.01)
        assert acked == [0, 1] and started == [0, 1, 2, 3]
        release[2].set()
        release[3].set()
        await running

    asyncio.run(scenario())
    assert acked == [0, 1, 2, 3]


def test_a_finished_batch_is_acknowledged_before_the_next_one_arrives() -> None:
    """At low load the next batch may be long in coming: a rebalance or a stop must not wait for it to commit."""
    acked: list[int] = []
    more = asyncio.Event()

    async def batches() -> AsyncIterator[Taken]:
        yield Taken([Event(0, acked)])  # type: ignore[list-item]
        await more.wait()

    async def process(batch: list[Record]) -> None:
        return None

    async def scenario() -> None:
        running = asyncio.ensure_future(process_in_order(batches(), process, 5.0, in_flight=2))
        await asyncio.sleep(0.01)
        assert acked == [0]
        more.set()
        await running

    asyncio.run(scenario())


@pytest.mark.parametrize("in_flight", [1, 2, 3])
def test_a_batch_that_raises_exits_before_it_or_any_later_batch_is_acknowledged(
    exits: list[int], in_flight: int
) -> None:
    acked: list[int] = []

    async def process(batch: list[Record]) -> None:
        if batch[0].offset == 1:
            raise KeyError("no output in the response")
        await asyncio.sleep(0.01 if batch[0].offset == 0 else 0)

    with pytest.raises(Exited):
        asyncio.run(process_in_order(taken(range(5), acked), process, 5.0, in_flight))
    assert exits and set(exits) == {EXIT_BEFORE_COMMIT}
    assert acked == [0], "only the batch before the failed one"


def test_an_outage_exits_75_and_a_batch_past_its_deadline_too(exits: list[int]) -> None:
    async def outage(batch: list[Record]) -> None:
        raise DependencyOutage("Triton: still failing")

    async def stuck(batch: list[Record]) -> None:
        await asyncio.Event().wait()

    acked: list[int] = []
    for process, deadline in ((outage, 5.0), (stuck, 0.05)):
        with pytest.raises(Exited):
            asyncio.run(process_in_order(taken(range(3), acked), process, deadline, in_flight=2))
    assert exits and set(exits) == {EXIT_OUTAGE} and acked == []


def test_a_cancelled_worker_acknowledges_nothing_more_and_cancels_its_batches() -> None:
    acked: list[int] = []
    cancelled: list[int] = []

    async def process(batch: list[Record]) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(batch[0].offset)
            raise

    async def scenario() -> None:
        running = asyncio.ensure_future(process_in_order(taken(range(5), acked), process, 5.0, in_flight=2))
        await asyncio.sleep(0.01)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert acked == [] and sorted(cancelled) == [0, 1]


# -- arrived_batches ----------------------------------------------------------------------------------------------


class Channel:
    """The agent's channel: a queue the conductor fills."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()


def stream_of(channel: Channel, generation: int = 1, flow: bool = True) -> Any:
    tracked: list[int] = []
    consumer = SimpleNamespace(
        app=SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True)),
        track_message=lambda message: tracked.append(message.offset),
        tracked=tracked,
    )
    app = SimpleNamespace(
        consumer=consumer,
        consumer_generation_id=generation,
        flow_control=SimpleNamespace(is_active=lambda: flow),
    )
    return SimpleNamespace(app=app, channel=channel, should_stop=False)


def test_a_batch_is_what_has_arrived_up_to_the_batch_size_and_nothing_is_acknowledged() -> None:
    acked: list[int] = []

    async def scenario() -> list[list[int]]:
        channel = Channel()
        stream = stream_of(channel)
        for n in range(5):
            channel.queue.put_nowait(Event(n, acked))
        batches = arrived_batches(stream, max_events=3)
        first = await anext(batches)
        second = await anext(batches)  # the two left: no wait for a third
        pending = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.01)
        assert not pending.done(), "nothing queued: it waits for the next event"
        channel.queue.put_nowait(Event(5, acked))
        third = await pending
        assert stream.app.consumer.tracked == [0, 1, 2, 3, 4, 5], "each message is tracked as pending"
        return [[e.message.offset for e in b.events] for b in (first, second, third)]

    assert asyncio.run(scenario()) == [[0, 1, 2], [3, 4], [5]]
    assert acked == [], "the taker acknowledges nothing: the agent does, once a batch is finished"


def test_within_waits_for_more_once_one_event_has_arrived() -> None:
    async def scenario() -> list[int]:
        channel = Channel()
        channel.queue.put_nowait(Event(0, []))
        batches = arrived_batches(stream_of(channel), max_events=10, within_s=0.2)
        later = asyncio.get_running_loop().call_later(0.02, channel.queue.put_nowait, Event(1, []))
        batch = await anext(batches)
        later.cancel()
        return [e.message.offset for e in batch.events]

    assert asyncio.run(scenario()) == [0, 1]


def test_events_queued_before_a_rebalance_are_skipped_not_processed() -> None:
    """Their partitions may be another member's now; they are fetched again from the committed offset if not."""

    async def scenario() -> list[int]:
        channel = Channel()
        channel.queue.put_nowait(Event(0, [], generation=1))
        channel.queue.put_nowait(Event(1, [], generation=2))
        batch = await anext(arrived_batches(stream_of(channel, generation=2), max_events=10))
        return [e.message.offset for e in batch.events]

    assert asyncio.run(scenario()) == [1]


# -- the lean consumer's delivery -----------------------------------------------------------------------------------


def lean_consumer(callback: Any) -> Any:
    consumer = LeanConsumer.__new__(LeanConsumer)  # only _deliver is exercised: no transport, no thread
    raced: list[Any] = []

    async def wait_first(*awaitables: Any) -> None:
        raced.append(awaitables)
        for other in awaitables[1:]:
            other.close()  # the suspended flow's wait: never suspended here
        await awaitables[0]

    consumer.callback = callback  # type: ignore[method-assign]
    consumer.wait_first = wait_first  # type: ignore[method-assign]
    consumer.suspend_flow = SimpleNamespace(wait=asyncio.Event().wait)  # type: ignore[assignment]
    consumer.raced = raced  # type: ignore[attr-defined]
    return consumer


def test_a_callback_that_never_waits_runs_inline_without_the_race() -> None:
    delivered: list[int] = []

    async def callback(message: int) -> None:
        delivered.append(message)

    consumer = lean_consumer(callback)
    asyncio.run(consumer._deliver(7))
    assert delivered == [7] and consumer.raced == []


def test_a_callback_that_has_to_wait_is_raced_against_a_suspended_flow_and_finishes() -> None:
    steps: list[str] = []

    async def callback(message: int) -> str:
        steps.append("before")
        await asyncio.sleep(0.01)  # a full stream buffer
        steps.append("after")
        return "done"

    async def scenario() -> Any:
        consumer = lean_consumer(callback)
        await consumer._deliver(7)
        return consumer

    consumer = asyncio.run(scenario())
    assert steps == ["before", "after"] and len(consumer.raced) == 1, "the rest ran as one task in faust's race"


def test_a_blocked_callback_cancelled_by_the_race_stops_where_it_waits() -> None:
    """faust cancels the callback when the flow is suspended (a rebalance): the coroutine gets the cancellation
    at its await, as it would without the inline first step."""
    steps: list[str] = []
    blocked = asyncio.Event

    async def callback(message: int) -> None:
        steps.append("before")
        try:
            await blocked().wait()
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise
        steps.append("after")

    async def scenario() -> None:
        consumer = lean_consumer(callback)

        async def suspend(*awaitables: Any) -> None:  # the flow is suspended: faust cancels the callback's task
            task = awaitables[0]
            awaitables[1].close()
            await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        consumer.wait_first = suspend
        await consumer._deliver(7)

    asyncio.run(scenario())
    assert steps == ["before", "cancelled"]


def test_a_batch_cancelled_by_anything_but_the_worker_stopping_exits_before_it_is_acknowledged(
    exits: list[int],
) -> None:
    """A batch whose own code was cancelled (a locally cancelled gRPC call, a retry given up) is a failure: left
    at the head unacknowledged, it would hold every later batch and the rebalance waiting for it."""
    acked: list[int] = []

    async def process(batch: list[Record]) -> None:
        if batch[0].offset == 1:
            raise asyncio.CancelledError

    with pytest.raises(Exited):  # not a TimeoutError: it neither spins nor waits forever
        asyncio.run(asyncio.wait_for(process_in_order(taken(range(4), acked), process, 5.0, in_flight=1), 5.0))
    assert exits and set(exits) == {EXIT_BEFORE_COMMIT} and acked == [0]


def test_events_taken_while_the_flow_is_suspended_are_neither_tracked_nor_acknowledged() -> None:
    async def scenario() -> tuple[bool, Any]:
        channel = Channel()
        stream = stream_of(channel, flow=False)
        channel.queue.put_nowait(Event(0, []))
        pending = asyncio.ensure_future(anext(arrived_batches(stream, max_events=10)))
        await asyncio.sleep(0.01)
        yielded = pending.done()
        pending.cancel()
        return yielded, stream.app.consumer.tracked

    yielded, tracked = asyncio.run(scenario())
    assert not yielded and tracked == [], "a suspended flow (a rebalance under way) yields and tracks nothing"


def test_a_rebalance_during_the_window_drops_and_untracks_what_was_taken() -> None:
    """With ``within_s``, events are pending as soon as they are taken (a rebalance waits for them); one that
    went stale while the batch filled is dropped and no longer pending, never acknowledged."""

    async def scenario() -> tuple[list[int], list[int]]:
        channel = Channel()
        stream = stream_of(channel, generation=1)
        untracked: list[int] = []
        stream.app.consumer._unacked_messages = SimpleNamespace(discard=lambda m: untracked.append(m.offset))
        channel.queue.put_nowait(Event(0, [], generation=1))
        batches = arrived_batches(stream, max_events=10, within_s=0.05)

        def rebalance() -> None:
            stream.app.consumer_generation_id = 2
            channel.queue.put_nowait(Event(1, [], generation=2))

        asyncio.get_running_loop().call_later(0.01, rebalance)
        batch = await anext(batches)
        assert stream.app.consumer.tracked == [0, 1]
        return [e.message.offset for e in batch.events], untracked

    kept, untracked = asyncio.run(scenario())
    assert kept == [1] and untracked == [0]


def test_inferloop_apps_consume_through_the_lean_consumer() -> None:
    from inferloop.settings import Settings
    from streams.faust_app import faust_app

    app = faust_app(Settings(), "unit-test-lean")
    assert isinstance(app.consumer, LeanConsumer)
    consumer_service = app.consumer._thread
    assert isinstance(consumer_service, InLoopConsumerThread)
    assert consumer_service.thread_loop is consumer_service.parent_loop is app.loop, "no loop (and thread) of its own"


def test_calls_into_the_consumer_service_run_on_the_callers_loop_and_thread() -> None:
    import threading

    from inferloop.settings import Settings
    from streams.faust_app import faust_app

    async def scenario() -> None:
        app = faust_app(Settings(), "unit-test-in-loop")
        service = app.consumer._thread
        seen: list[tuple[int, asyncio.AbstractEventLoop]] = []

        async def fetch(n: int) -> int:
            seen.append((threading.get_ident(), asyncio.get_running_loop()))
            return n + 1

        def fail() -> None:
            raise ValueError("refused")

        assert await service.call_thread(fetch, 1) == 2
        await service.cast_thread(fetch, 2)
        assert seen == [(threading.get_ident(), asyncio.get_running_loop())] * 2
        with pytest.raises(ValueError, match="refused"):
            await service.call_thread(fail)
        await service.stop()  # never started: nothing to stop, nothing raised
        assert not service._stopped.is_set()

    asyncio.run(scenario())


class FakeAIOKafkaConsumer:
    """What the consumer service starts and stops, with the order of those calls recorded."""

    def __init__(self, calls: list[str], start_s: float = 0.0) -> None:
        self.calls, self.start_s = calls, start_s

    async def start(self) -> None:
        self.calls.append("start-begin")
        await asyncio.sleep(self.start_s)
        self.calls.append("start-end")

    async def stop(self) -> None:
        self.calls.append("stop")


def _consumer_service(calls: list[str], start_s: float = 0.0) -> Any:
    from inferloop.settings import Settings
    from streams.faust_app import faust_app

    service = faust_app(Settings(), "unit-test-in-loop").consumer._thread
    service._create_consumer = lambda loop: FakeAIOKafkaConsumer(calls, start_s)
    return service


def test_the_consumer_service_stops_its_consumer_once_and_no_other_task_of_the_loop() -> None:
    async def scenario() -> tuple[list[str], bool]:
        calls: list[str] = []
        service = _consumer_service(calls)
        bystander = asyncio.ensure_future(asyncio.sleep(10))  # the app's other work on the same loop
        await service.start()
        await service.stop()
        await service.stop()
        untouched = not bystander.done()
        bystander.cancel()
        return calls, untouched

    calls, untouched = asyncio.run(scenario())
    assert calls == ["start-begin", "start-end", "stop"]
    assert untouched, "stopping the consumer service cancelled a task that is not its own"


def test_a_stop_during_the_start_waits_for_it_and_stops_what_it_started() -> None:
    async def scenario() -> list[str]:
        calls: list[str] = []
        service = _consumer_service(calls, start_s=0.05)
        starting = asyncio.ensure_future(service.start())
        await asyncio.sleep(0.01)  # the consumer is bootstrapping when the worker is told to stop
        await service.stop()
        await starting
        return calls

    assert asyncio.run(scenario()) == ["start-begin", "start-end", "stop"]


def test_a_call_whose_caller_is_cancelled_runs_to_its_end() -> None:
    """As in faust's thread: a commit or a seek whose caller is cancelled (the worker stopping) still finishes
    inside aiokafka instead of stopping halfway."""

    async def scenario() -> list[str]:
        calls: list[str] = []
        service = _consumer_service(calls)

        async def fetch() -> None:
            calls.append("fetch-begin")
            try:
                await asyncio.sleep(0.05)
            finally:
                calls.append("fetch-end (cancelled)" if asyncio.current_task().cancelling() else "fetch-end")  # type: ignore[union-attr]

        caller = asyncio.ensure_future(service.call_thread(fetch))
        await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.sleep(0.08)
        return calls

    assert asyncio.run(scenario()) == ["fetch-begin", "fetch-end"]


def test_a_fetch_cancelled_or_failing_midway_leaves_aiokafkas_fetch_count_as_it_was() -> None:
    """aiokafka's ``fetch_context`` has no ``finally``: a fetch cancelled or raising inside it would keep the count
    of fetches in flight raised, so the consumer would look busy for good (its idle time, which the max-poll
    interval checks, stays at zero). The in-loop consumer counts its fetches itself, in a ``finally``."""
    from aiokafka.consumer.subscription_state import SubscriptionState

    class FakeFetcher:
        _closed = False

        def __init__(self, fail: bool) -> None:
            self._subscriptions, self.fail = SubscriptionState(), fail

        async def fetched_records(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
            await asyncio.sleep(0.02 if self.fail else 10)
            raise RuntimeError("the broker said no")

    async def scenario(fail: bool) -> tuple[int, int, float]:
        service = _consumer_service([])
        fetcher = FakeFetcher(fail)
        fetcher._subscriptions._last_fetch_ended = 0.0
        service._consumer = SimpleNamespace(_fetcher=fetcher, _closed=False, _max_poll_records=10)
        other = fetcher._subscriptions.fetch_context()  # another fetch in flight throughout
        other.__enter__()
        fetching = asyncio.ensure_future(service.getmany(set(), timeout=10.0))
        await asyncio.sleep(0.01)
        during = fetcher._subscriptions._fetch_count
        if not fail:
            fetching.cancel()
        with pytest.raises(RuntimeError if fail else asyncio.CancelledError):
            await fetching
        after_ours = fetcher._subscriptions._fetch_count
        other.__exit__(None, None, None)
        return during, after_ours, fetcher._subscriptions._last_fetch_ended

    for fail in (False, True):
        during, after_ours, ended = asyncio.run(scenario(fail))
        assert during == 2, "ours and the other fetch in flight together"
        assert after_ours == 1, "ours no longer counted, the other still is"
        assert ended > 0, "the last fetch's end was noted"
