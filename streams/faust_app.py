"""Faust as both apps use it: one configuration, the metrics endpoint and lag timer, and the foreground runner.

At-least-once by construction: raw bytes in and out, acks from all replicas, offsets from the earliest record,
commits every second (faust flushes the producer before it commits), the Kafka connection and security of the
settings.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import faust
from prometheus_client import CollectorRegistry, start_http_server

from inferloop.events import Record, as_headers
from inferloop.kafka.options import ssl_context
from inferloop.logs import LogFormat, logging_config
from inferloop.metrics import export_consumer_lag
from inferloop.settings import KafkaSettings, Settings
from streams.consumption import LeanTransport, Taken
from streams.errors import DependencyOutage

log = logging.getLogger(__name__)
EXIT_BEFORE_COMMIT = 70  # the process stopped itself so that no offset is committed past unfinished work
EXIT_OUTAGE = 75  # the same, after a dependency stayed unavailable for streams.outage_timeout_s (EX_TEMPFAIL)


def exit_before_commit(reason: str, code: int = EXIT_BEFORE_COMMIT) -> NoReturn:
    """Stop this process at once, before faust acknowledges or commits anything more.

    faust's ``take_events`` acknowledges the events it yielded when the agent's loop goes on or ends, whatever
    happened to them, and a crashed agent is never restarted while the process keeps its partitions: a batch whose
    processing failed in a way nobody planned for would be committed unprocessed, by a worker that looks alive.
    Exiting here instead leaves the batch unacknowledged; the partitions move to another member (or to this one,
    restarted), which receives the batch again.
    """
    log.critical("%s; exiting (code %d) before any commit: the events are delivered again", reason, code)
    logging.shutdown()
    os._exit(code)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says a dependency is unavailable (the outage budget ran out, the broker timed out or is
    unreachable) rather than that something is wrong (a refusal, a bug)."""
    from aiokafka.errors import KafkaTimeoutError

    return isinstance(exc, DependencyOutage | KafkaTimeoutError) or bool(getattr(exc, "retriable", False))


def exit_on_batch_error(exc: BaseException, where: str) -> NoReturn:
    """What an agent does with an exception its batch raised: exit before faust acknowledges the batch, with
    :data:`EXIT_OUTAGE` when a dependency stayed unavailable too long, else :data:`EXIT_BEFORE_COMMIT`."""
    if is_outage(exc):
        exit_before_commit(f"{type(exc).__name__}: {exc} (the batch starting at {where})", EXIT_OUTAGE)
    log.error("unexpected error in the batch starting at %s", where, exc_info=exc)
    exit_before_commit(f"unexpected {type(exc).__name__} in the batch starting at {where}")


def batch_deadline_s(settings: Settings) -> float:
    """The longest one batch may take: the outage budget, one inference timeout and one back-off (the settings
    keep this under ``max_poll_interval_s``)."""
    s = settings.streams
    return s.outage_timeout_s + s.triton_timeout_s + s.retry_max_s


async def within(deadline_s: float, work: Awaitable[None], what: str) -> None:
    """``work``, or :class:`DependencyOutage` once it took ``deadline_s`` (whatever it waits on)."""
    try:
        async with asyncio.timeout(deadline_s):  # on the caller's task (wait_for would start one of its own)
            await work
    except TimeoutError as exc:
        raise DependencyOutage(f"{what} took over {deadline_s:g} s (streams.outage_timeout_s and the rest)") from exc


def _timestamp_ms(message: Any) -> int | None:
    """The record's timestamp in milliseconds (faust keeps it in seconds, as a float)."""
    return round(message.timestamp * 1000) if message.timestamp is not None else None


def _records(events: list[Any]) -> list[Record]:
    """faust events as records (headers and the timestamp in milliseconds included)."""
    return [
        Record(m.topic, m.partition, m.offset, e.key, e.value, as_headers(m.headers), _timestamp_ms(m))
        for e in events
        for m in (e.message,)
    ]


def _where(batch: list[Record]) -> str:
    head = batch[0]
    return f"{head.topic}[{head.partition}]@{head.offset}"


async def process_batches(
    batches: AsyncIterator[list[Any]], process: Callable[[list[Record]], Awaitable[None]], deadline_s: float
) -> None:
    """Hand each batch of faust events (``take_events``) to ``process`` as records, each within ``deadline_s``;
    whatever ``process`` raises, or a batch that outlasts its deadline, stops the process before faust can
    acknowledge the batch (:func:`exit_on_batch_error`)."""
    async for events in batches:
        batch = _records(events)
        try:
            await within(deadline_s, process(batch), f"a batch of {len(batch)}")
        except Exception as exc:  # nothing a batch raises may let faust ack it
            exit_on_batch_error(exc, _where(batch))


async def process_in_order(
    batches: AsyncIterator[Taken],
    process: Callable[[list[Record]], Awaitable[None]],
    deadline_s: float,
    in_flight: int,
) -> None:
    """Hand each batch to ``process`` as records, up to ``in_flight`` batches at once, each within ``deadline_s``.

    A batch is acknowledged once it and every batch taken before it finished (offsets advance in order, and
    faust commits only acknowledged ones). Whatever a batch raises, or a batch that outlasts its deadline, stops
    the process before that batch or any later one is acknowledged (:func:`exit_on_batch_error`), and so does a
    batch cancelled by anything but the worker stopping; the worker stopping cancels the batches in flight and
    acknowledges nothing more.
    """
    pending: deque[tuple[Taken, list[Record], asyncio.Future[None]]] = deque()
    stopping = False  # set once this coroutine cancels its batches itself (the worker stops)

    def acknowledge_finished() -> None:
        """Acknowledge the finished batches at the head, in order; exit at the first that failed or was cancelled
        by anything but the worker stopping (it stays at the head, so nothing after it is ever acknowledged)."""
        while pending and pending[0][2].done():
            taken, batch, task = pending[0]
            if task.cancelled() and stopping:
                return
            exc = asyncio.CancelledError("the batch was cancelled") if task.cancelled() else task.exception()
            if exc is not None:
                exit_on_batch_error(exc, _where(batch))
            pending.popleft()
            taken.ack()

    async def wait_for_head() -> None:
        await asyncio.wait([pending[0][2]])
        acknowledge_finished()

    try:
        async for taken in batches:
            batch = _records(taken.events)
            task = asyncio.ensure_future(within(deadline_s, process(batch), f"a batch of {len(batch)}"))
            pending.append((taken, batch, task))
            # acknowledged as soon as it (and those before it) finished, not when the next batch arrives
            task.add_done_callback(lambda _: acknowledge_finished())
            while len(pending) >= in_flight:
                await wait_for_head()
        while pending:
            await wait_for_head()
    finally:
        stopping = True
        unfinished = [future for _, _, future in pending]
        for future in unfinished:
            future.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)  # unwound before the agent closes its clients


class ExitOnSendError(faust.Sensor):
    """faust writes a table's changelog without waiting and only logs a refused write, then commits the offsets
    of the events that made it: a label waiting in the joiner's table would be lost on the next restart. A
    refused write stops the process instead, before that commit."""

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        code = EXIT_OUTAGE if is_outage(exc) else EXIT_BEFORE_COMMIT
        exit_before_commit(f"the broker did not take one of faust's writes (a table changelog): {exc!r}", code)


class InferloopApp(faust.App):
    """A faust app whose crashed agents stop the process.

    faust's own handler of an agent's crash *commits* the consumer's offsets (``Consumer.on_task_error``), the
    events the crashed batch took included, and never restarts the agent: the process would live on holding
    partitions it no longer consumes. Here a crash (anything an agent body lets escape) exits at once instead,
    before the next await, so nothing is committed and the partitions move on.
    """

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        exit_before_commit(f"agent {getattr(agent, 'name', agent)} crashed: {type(exc).__name__}: {exc}")

    def _new_transport(self) -> Any:
        """faust's aiokafka transport with inferloop's lean consumer (:mod:`streams.consumption`)."""
        return LeanTransport(self.conf.broker_consumer, self)


def faust_credentials(kafka: KafkaSettings) -> Any:
    """``broker_credentials`` for a Faust app (None for PLAINTEXT)."""
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_app(settings: Settings, app_id: str, **options: Any) -> faust.App:
    """A Faust app as inferloop configures them all (see the module's documentation)."""
    s = settings.streams
    app = InferloopApp(
        app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap.split(",")],
        broker_credentials=faust_credentials(settings.kafka),
        store="memory://",
        # faust's own folder (tables' local state: empty with the memory store), under the state folder rather than
        # `<app id>-data` in whatever folder the process started in (read-only in a container, a checkout in tests)
        datadir=str(settings.home / "faust" / app_id),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_partitions=s.partitions,
        producer_acks=-1,
        producer_max_request_size=s.max_request_bytes,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=s.session_timeout_s,
        broker_heartbeat_interval=min(3.0, s.session_timeout_s / 3),
        broker_max_poll_interval=s.max_poll_interval_s,
        # topics: created before the app starts by inferloop.kafka.topics (the changelog too, with the configured
        # replication), or by the cluster's tooling when creation is off; faust declares nothing else
        topic_allow_declare=settings.kafka.create_topics,
        topic_disable_leader=True,
        topic_replication_factor=max(settings.kafka.replication_factor, 1),  # unused: the changelog exists
        # an output the broker has not taken within the outage budget fails its delivery (and stops the worker)
        producer_request_timeout=s.outage_timeout_s,
        **options,
    )
    app.sensors.add(ExitOnSendError())
    return app


def observe(
    app: faust.App, app_id: str, registry: CollectorRegistry, lag: Any, topics: set[str], metrics_port: int
) -> None:
    """Serve ``registry`` on ``/metrics`` (port 0: not at all) and refresh the consumer lag of ``topics``."""

    @app.timer(5.0)  # type: ignore[untyped-decorator]
    async def _lag() -> None:
        await export_consumer_lag(app, app_id, lag, topics)

    @app.task  # type: ignore[untyped-decorator]
    async def _serve_metrics() -> None:
        if metrics_port:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: start_http_server(metrics_port, registry=registry)
            )
            log.info("%s metrics on :%d/metrics", app_id, metrics_port)


def run_app(app: faust.App, loglevel: str, log_format: LogFormat = "text") -> None:
    """Run a Faust app in the foreground until SIGTERM/SIGINT, logging in ``log_format``."""
    Path(app.conf.datadir).parent.mkdir(parents=True, exist_ok=True)  # faust makes the last folder only
    worker = faust.Worker(
        app, loglevel=loglevel, quiet=True, redirect_stdouts=False, logging_config=logging_config(loglevel, log_format)
    )
    worker.spinner = None  # a terminal spinner writes escape codes into log files and collectors' lines
    # What was imported and built so far lives as long as the process: frozen, the collector no longer walks it.
    # A full collection under load measured 55-80 ms without this (every event waits it out) and about 4 ms with it.
    gc.collect()
    gc.freeze()
    worker.execute_from_commandline()
