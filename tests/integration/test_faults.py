"""Fault injection against the real stack (marker ``faults``): every input id ends with a prediction or a dead
letter, and a duplicate is only ever an identical prediction. (Further fault tests carry the marker where their
subject lives: test_streaming, test_model_lifecycle.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from inferloop.events import Prediction
from inferloop.kafka.readers import read_dead_letters
from inferloop.triton.control import TritonControl
from infra.local.process import free_ports, kill_pid, pid_alive
from infra.local.settings import LocalSettings
from infra.local.triton_server import TritonServer
from tests.conftest import Running
from tests.helpers import wait_for
from tests.integration.conftest import (
    Stream,
    assert_each_event_once_or_identically,
    drifted_digits,
    holdout_batch,
    labelled_digits,
    publish,
)
from trainer.data import write_image_folder
from trainer.export import triton_config
from trainer.repository import ModelRepository

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]


def test_two_workers_share_the_partitions_and_one_killed_loses_nothing(stream: Stream) -> None:
    """Two workers in one group, one SIGKILLed mid-stream: its partitions move to the other after the session
    timeout; 6,000 events all predicted, duplicates identical."""
    stream.env["INFERLOOP_STREAMS__SESSION_TIMEOUT_S"] = "8"  # the dead member's partitions move after 8 s
    first, second = stream.start_worker(), stream.start_worker()
    items = labelled_digits(6000)
    publish(stream.settings, items)

    def both_busy() -> bool:
        return all(stream.metric(w, "inferloop_predictions_total") > 0 for w in (first, second))

    wait_for(both_busy, 90, "both workers to predict (each owns partitions)")
    kill_pid(stream.workers[1])
    left = len(items) - len(stream.predictions())
    assert left > 0, "the kill came too late to test anything"
    predictions = stream.wait_predicted({e for e, _, _ in items}, timeout_s=240)
    assert_each_event_once_or_identically(predictions, {e for e, _, _ in items})
    assert stream.metric(first, "inferloop_predictions_total") > 0


def test_an_unexpected_error_in_a_batch_stops_the_worker_before_any_commit(
    stream: Stream, triton_server: TritonServer
) -> None:
    """The served model's config is malformed (its labels are not JSON), so the classify step raises an error no
    step declares: the worker exits (code 70) before committing anything, with no output for the 40 events; with
    the config fixed, a restarted worker predicts all 40, duplicates identical."""
    name = "m-bad-labels"
    repo = ModelRepository(triton_server.model_repository, name)
    shutil.copytree(triton_server.model_repository / "digits" / "1", repo.version_dir(1), dirs_exist_ok=True)
    card = repo.card(1)
    good = triton_config(replace(card.signature(64), model=name), card.input_spec, [1])
    repo.write_config(replace(good, parameters={**good.parameters, "labels": "[not json"}))
    control = TritonControl(triton_server.grpc_url)
    control.load(name)
    stream.env["INFERLOOP_MODEL__NAME"] = name
    try:
        stream.start_worker()
        items = labelled_digits(40)
        ids = {e for e, _, _ in items}
        publish(stream.settings, items)
        assert stream.processes[0].wait(timeout=90) == 70, "the worker went on (or died otherwise) after the error"
        assert not ids & {p.event_id for p in stream.predictions()}
        assert not ids & {d.event_id for d in read_dead_letters(stream.settings, idle_timeout_s=0.5)}
        repo.write_config(good)
        control.load(name)
        stream.start_worker()  # as Kubernetes restarts it: the uncommitted events come again
        assert_each_event_once_or_identically(stream.wait_predicted(ids, timeout_s=120), ids)
    finally:
        control.unload(name)
        control.close()


def test_kafka_broker_killed_and_restarted_loses_nothing(
    stream: Stream, kafka_factory: Callable[[Path | None, tuple[int, int] | None], Running], tmp_path: Path
) -> None:
    """The broker SIGKILLed after 500 events and restarted on its data; 500 more: all 1,000 predicted (a worker
    that exited rather than commit past an unacknowledged output is restarted, as Kubernetes would)."""
    ports = (free_ports(1)[0], free_ports(1)[0])
    data = tmp_path / "kafka-own"
    broker = kafka_factory(data, ports)
    stream.env["INFERLOOP_KAFKA__BOOTSTRAP_SERVERS"] = f"127.0.0.1:{ports[0]}"
    stream.env["INFERLOOP_STREAMS__SESSION_TIMEOUT_S"] = "10"
    stream.start_worker()
    first = labelled_digits(500)
    publish(stream.settings, first)
    stream.wait_predicted({e for e, _, _ in first})

    kill_pid(broker.pid)  # SIGKILL: no clean shutdown
    threading.Event().wait(3)
    kafka_factory(data, ports)  # the same data and ports, as a restarted pod
    second = labelled_digits(500, offset=500)
    publish(stream.settings, second)
    if not pid_alive(stream.workers[0]):  # it may have exited rather than commit past a lost output
        stream.start_worker()

    def all_predicted() -> list[Prediction] | None:
        if not any(pid_alive(pid) for pid in stream.workers):
            stream.start_worker()  # what Kubernetes would do
        got = stream.predictions()
        return got if {e for e, _, _ in first + second} <= {p.event_id for p in got} else None

    predictions = wait_for(all_predicted, 180, "predictions for every event after the restart")
    assert_each_event_once_or_identically(predictions, {e for e, _, _ in first + second})


def test_a_full_model_repository_gives_a_clear_error_and_the_old_version_keeps_serving(
    fresh_model: LocalSettings, tmp_path: Path
) -> None:
    """Writes fail as on a full disk (the process may not write files over 20 kB: EFBIG, like ENOSPC midway)."""
    images, labels = drifted_digits(60, seed=5)
    write_image_folder(fresh_model.feedback_dir, images, labels, prefix="inv")
    env = {
        "INFERLOOP_HOME": str(fresh_model.home),
        "INFERLOOP_CACHE_DIR": str(fresh_model.cache_dir),
        "INFERLOOP_TRITON__GRPC_PORT": str(fresh_model.triton.grpc_port),
        "INFERLOOP_TRITON__HTTP_PORT": str(fresh_model.triton.http_port),
        "INFERLOOP_TRITON__MODEL_REPOSITORY": str(fresh_model.model_repository),
        "INFERLOOP_MODEL__NAME": fresh_model.model.name,
        "INFERLOOP_TRAINER__FEEDBACK_DIR": str(fresh_model.feedback_dir),
        "INFERLOOP_TRAINER__FEEDBACK_SOURCE": "folder",
        "INFERLOOP_TRAINER__FINETUNE_EPOCHS": "2",
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",  # no bytecode cache written under the limit (it would be truncated)
    }
    limited = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
        "sys.argv = ['inferloop', 'train', '--min-new-labels', '20']\n"
        "from cli.main import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", limited], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "cannot write" in result.stderr and "File too large" in result.stderr, result.stderr
    repo = ModelRepository(fresh_model.model_repository, fresh_model.model.name)
    assert repo.versions() == [1] and repo.read_registry().serving == [1]
    _, version = TritonControl(fresh_model.triton.grpc_url).infer(fresh_model.model.name, holdout_batch(4))
    assert version == 1, "the old version stopped serving"


class SlowProxy:
    """A TCP proxy that holds every chunk for ``delay_s`` each way: Triton slowed down, as seen by the worker."""

    def __init__(self, target_port: int, delay_s: float) -> None:
        import asyncio

        self.target_port, self.delay_s = target_port, delay_s
        (self.port,) = free_ports(1)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _pipe(self, reader: object, writer: object) -> None:
        import asyncio

        try:
            while data := await reader.read(65536):  # type: ignore[attr-defined]
                await asyncio.sleep(self.delay_s)
                writer.write(data)  # type: ignore[attr-defined]
                await writer.drain()  # type: ignore[attr-defined]
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()  # type: ignore[attr-defined]

    async def _handle(self, reader: object, writer: object) -> None:
        import asyncio

        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def _run(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.loop.run_forever()
        server.close()

    def __enter__(self) -> SlowProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import asyncio

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        self._thread.join(timeout=5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_a_slow_triton_applies_backpressure_with_bounded_memory(stream: Stream, triton_server: object) -> None:
    """Triton behind a proxy adding 250 ms each way: one batch in flight at most, a backlog in Kafka instead,
    worker memory within 150 MiB of its baseline, then every event predicted."""
    grpc_port = int(stream.env["INFERLOOP_TRITON__GRPC_PORT"])
    with SlowProxy(grpc_port, delay_s=0.25) as proxy:
        stream.env["INFERLOOP_TRITON__GRPC_PORT"] = str(proxy.port)
        worker = stream.start_worker()
        warm = labelled_digits(50)
        publish(stream.settings, warm)
        stream.wait_predicted({e for e, _, _ in warm})
        baseline = rss_mb(stream.workers[0])
        items = labelled_digits(4000, offset=50)
        publish(stream.settings, items)
        samples: list[tuple[float, float, float]] = []  # (in flight, lag, rss)
        for _ in range(20):
            samples.append(
                (
                    stream.metric(worker, "inferloop_events_in_flight"),
                    stream.metric(worker, "inferloop_consumer_lag"),
                    rss_mb(stream.workers[0]),
                )
            )
            threading.Event().wait(0.5)
        max_batch = stream.settings.streams.max_batch
        assert max(s[0] for s in samples) <= max_batch, "the worker took more than one batch at a time"
        assert max(s[1] for s in samples) > 0, "no backlog built up: the slowdown was not felt"
        assert max(s[2] for s in samples) - baseline < 150, (
            f"memory grew {max(s[2] for s in samples) - baseline:.0f} MiB"
        )
        predictions = stream.wait_predicted({e for e, _, _ in items}, timeout_s=240)
        assert_each_event_once_or_identically(
            [p for p in predictions if p.event_id in {e for e, _, _ in items}], {e for e, _, _ in items}
        )
