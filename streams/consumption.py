"""How inferloop's Faust apps consume: faust's aiokafka transport with a lean per-message path, and batches of
whatever has arrived.

faust (0.15) hands each fetched message to its conductor through ``Service.wait_first``, which creates four tasks
per message so that a callback blocked on flow control can be abandoned when a rebalance suspends the flow; its
``take_events`` feeds a buffer through a per-event processor coroutine on a task of its own and fills a batch only
after the previous one is done. Measured on the bench (docs/performance.md), that per-event machinery cost more
CPU than the worker's own work. Here:

- :class:`InLoopConsumerThread` runs the aiokafka consumer on the app's own loop instead of a thread of its own,
  so a fetch is an await, not two crossings between threads (at 1,000 images/s, a lower median p99 in both orders
  of a side-by-side comparison, 43.0 to 31.5 ms and 40.0 to 37.6 ms: docs/performance.md).
- :class:`LeanConsumer` runs a message's callback inline and falls back to faust's race against the suspended
  flow only when the callback actually has to wait (a full stream buffer, paused flow, a full producer buffer), so
  a rebalance abandons a blocked callback exactly as before. When the stream buffer's pressure paused partitions,
  it fetches from the others with a short timeout and wakes as soon as a paused one resumes, instead of
  waiting out faust's one-second fetch or sleep (the stall that capped the worker's backlog throughput).
- :func:`arrived_batches` is the worker's ``take_events``: it reads the agent's channel queue itself, takes every
  event already queued (up to the batch size; no window to wait out at low load) and tracks each message as
  faust's stream does; it acknowledges nothing itself: the agent acks each batch it finished, in order
  (:func:`streams.faust_app.process_in_order`), so a batch that raised is never acknowledged (faust's
  ``take_events`` acks it in a ``finally``), and the next batch can be decoded while one waits on Triton.

Offsets are committed by faust as before: only acknowledged ones, contiguously, after the producer is flushed.
These classes override private methods of faust-streaming 0.15.3 and mode-streaming (``_drain_messages``,
``_wait_next_records``, ``_new_consumer_thread``, the consumer thread's start, stop, calls, ``getmany`` and
``_fetch_records``) and keep aiokafka 0.14's count of fetches in flight, so pyproject pins those versions;
tests/integration exercise them on the real broker (crash, rebalance, outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

import faust
from aiokafka.errors import ConsumerStoppedError
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP, EventT
from mode.utils.futures import maybe_async

log = logging.getLogger(__name__)


class _Resumed:
    """Awaiting this carries on a coroutine whose first step (run inline) suspended on ``pending``."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                sent = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation goes into the coroutine, as an await would take it
                try:
                    pending = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _Resumed(coro, pending)


class InLoopConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """faust's aiokafka consumer service on the app's own event loop, not on a thread of its own.

    faust runs the aiokafka consumer in a thread with its own loop and reaches it through a method queue: every
    fetch, commit and seek crosses threads twice, each crossing a wake-up and a GIL hand-off. Here every "call
    into the thread" is an await on the one loop, run to completion as the thread ran it even when its caller is
    cancelled meanwhile, except fetches, the hot path: those are awaited directly, aiokafka's count of fetches in
    flight kept in a ``finally``. The consumer's heartbeats run on that loop too, so a long synchronous step would
    delay them: the worker hands the loop over while it decodes a batch and reads images by URI in a thread
    (``DECODE_SLICE_S`` in streams/worker/classify_step.py). Rebalance callbacks still reach the app through
    faust's method queue.
    """

    wait_for_shutdown = False  # stop() below shuts down itself; no thread sets the event
    _start_finished: asyncio.Event | None = None

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        """Start as a plain service on this loop (creates and starts the aiokafka consumer)."""
        self._thread_started.set()
        self._start_finished = asyncio.Event()
        try:
            await self._default_start()
        finally:
            self._start_finished.set()

    async def stop(self) -> None:
        """What the thread did when told to stop: the aiokafka consumer stopped (its group left), then the
        service's children, tasks and exit stacks. A stop that arrives while the consumer is starting waits for
        the start to finish, so that what the start creates (the fetcher, the group coordinator) is stopped too."""
        if self._start_finished is not None:
            with contextlib.suppress(TimeoutError):  # as the thread's stop was bounded: stop what there is
                await asyncio.wait_for(self._start_finished.wait(), self.shutdown_timeout)
        if not self._started.is_set() or self._stopped.is_set():
            return
        self._stopped.set()
        await self.on_stop()
        await self.on_thread_stop()
        await self._default_stop_children()
        self._shutdown.set()
        await self._default_stop_futures()
        await self._default_stop_exit_stacks()
        await self.on_shutdown()

    async def getmany(self, active_partitions: Any, timeout: float) -> Any:  # noqa: ASYNC109 - faust's signature
        """The hot path, awaited directly (a task per fetch, as :meth:`call_thread` makes, measured about 1 ms of
        p50 at 1,000 images/s, in one order of a side-by-side comparison)."""
        consumer = self._ensure_consumer()
        return await self._fetch_records(
            consumer, active_partitions, timeout=timeout, max_records=consumer._max_poll_records
        )

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,  # noqa: ASYNC109 - faust's signature
        max_records: int | None = None,
    ) -> Any:
        """faust's fetch, with aiokafka's count of fetches in flight kept in a ``finally`` (its ``fetch_context``
        has none: a fetch cancelled or raising inside it would leave the count raised, the consumer's idle time,
        which the max-poll interval checks, at zero for good)."""
        if not self.consumer.flow_active:
            return {}
        fetcher = consumer._fetcher
        if consumer._closed or fetcher._closed:
            raise ConsumerStoppedError()
        subscriptions = fetcher._subscriptions
        subscriptions._fetch_count += 1
        try:
            return await fetcher.fetched_records(active_partitions, timeout=timeout, max_records=max_records)
        finally:
            subscriptions._fetch_count -= 1
            if subscriptions._fetch_count == 0:
                subscriptions._last_fetch_ended = time.monotonic()

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call = asyncio.ensure_future(maybe_async(fun(*args, **kwargs)))
        call.add_done_callback(_retrieved)  # a call its caller stopped waiting for still has its failure logged
        return await asyncio.shield(call)

    async def cast_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        await self.call_thread(fun, *args, **kwargs)


def _retrieved(call: asyncio.Future[Any]) -> None:
    if not call.cancelled() and call.exception() is not None:
        log.warning("a call into the consumer failed: %r", call.exception())


class LeanConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer on the app's loop, without a task per message, and without the fetch stall under
    buffer pressure."""

    _resumed: asyncio.Event | None = None

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return InLoopConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _deliver(self, message: Any) -> None:
        """The conductor's callback for ``message``: inline; raced against a suspended flow only if it waits."""
        coro: Any = self.callback(message)  # a coroutine: the conductor's on_message
        try:
            pending = coro.send(None)
        except StopIteration:
            return  # the usual case: it never had to wait
        await self.wait_first(asyncio.ensure_future(_resume(coro, pending)), self.suspend_flow.wait())

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker processes
        """Fetch and hand messages to the conductor until the consumer or the fetcher stops (faust's loop: skip
        what was read already, note gaps so their offsets can be committed, commit every ``commit_every``)."""
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        since_yield = 0
        try:
            while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await asyncio.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in fetched:
                    since_yield += 1
                    if since_yield > 100:  # let the agent run between long runs of messages
                        since_yield = 0
                        await asyncio.sleep(0)
                    offset, last = message.offset, read_offset[tp]
                    if last is not None and offset < last:
                        continue  # read already (fetched again after a seek)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)  # compacted or transactional offsets
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self._deliver(message)
                    read_offset[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def on_buffer_drop(self, tp: TP) -> None:
        super().on_buffer_drop(tp)
        if self._resumed is not None:
            self._resumed.set()

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 - faust's signature
        if self._buffered_partitions:
            timeout = min(timeout, 0.02)  # paused partitions resume while this fetch waits on the others
        if not self.flow_active or self.app.client_only or self._get_active_partitions():
            return await super()._wait_next_records(timeout)
        # every partition paused for buffer pressure: wait for one to resume (faust sleeps a whole second)
        self.not_waiting_next_records.set()
        if self._resumed is None:
            self._resumed = asyncio.Event()
        self._resumed.clear()
        await self.wait_first(self._resumed.wait(), timeout=1.0)
        return {}, set()


class LeanTransport(aiokafka_driver.Transport):
    Consumer = LeanConsumer


@dataclass(frozen=True)
class Taken:
    """A batch of events taken from a channel; its offsets may be committed once :meth:`ack` is called."""

    events: list[EventT[Any]]

    def ack(self) -> None:
        for event in self.events:
            event.ack()


async def arrived_batches(stream: faust.StreamT[Any], max_events: int, within_s: float = 0.0) -> AsyncIterator[Taken]:
    """Batches from ``stream``'s topic: the next event, every event queued behind it up to ``max_events``, and
    (``within_s`` > 0) whatever more arrives within that time. Nothing is acknowledged here: the caller acks each
    batch it finished (:meth:`Taken.ack`), so a batch that failed or was cancelled never is."""
    app = stream.app
    channel: Any = aiter(stream.channel)  # subscribes the topic (the conductor feeds this channel's queue)
    queue = channel.queue
    consumer = app.consumer
    loop = asyncio.get_running_loop()
    batch: list[EventT[Any]] = []

    def take(event: EventT[Any]) -> None:
        if _current(app, event):
            _track(consumer, event.message)  # pending from now on: a rebalance waits for it
            batch.append(event)

    while True:  # ends when the agent is cancelled (the worker stopping)
        try:
            take(await queue.get())
            deadline = loop.time() + within_s
            while len(batch) < max_events:
                if not queue.empty():
                    take(queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0 or not batch:
                    break
                try:
                    take(await asyncio.wait_for(queue.get(), left))
                except TimeoutError:
                    break
        except StopAsyncIteration:  # thrown into the channel by faust when it closes it
            return
        current = []
        for event in batch:  # a rebalance during the window made some stale: never processed, no longer pending
            if _current(app, event):
                current.append(event)
            else:
                _untrack(consumer, event.message)
        if current:
            yield Taken(current)
        batch = []


def _current(app: Any, event: EventT[Any]) -> bool:
    """Whether ``event`` still belongs to this consumer (faust's stream drops events queued before a rebalance:
    their partitions may be another's now, and they are fetched again from the committed offset if not)."""
    return bool(app.flow_control.is_active()) and event.message.generation_id == app.consumer_generation_id


def _untrack(consumer: Any, message: Any) -> None:
    """No longer pending (an event skipped as stale after it was taken: never processed, never acknowledged)."""
    consumer._unacked_messages.discard(message)
    message.tracked = False


def _track(consumer: Any, message: Any) -> None:
    """Mark ``message`` pending until acknowledged, as faust's stream iterator does (a rebalance or a stop waits
    for pending messages before its final commit)."""
    if not message.tracked and consumer.app.topics.acks_enabled_for(message.topic):
        message.tracked = True
        consumer.track_message(message)
