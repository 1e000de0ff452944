"""Fault injection against the real stack (marker ``faults``): every input id ends with a prediction or a dead
letter, and a duplicate is only ever an identical prediction. (Further fault tests carry the marker where their
subject lives: test_streaming, test_model_lifecycle.)"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inferloop.events import Prediction
from inferloop.kafka.readers import read_dead_letters
from inferloop.triton.control import TritonControl
from infra.local.process import free_ports, kill_pid, pid_alive
from infra.local.settings import LocalSettings
from infra.local.triton_server import TritonServer
from streams.worker.memory_plan import memory_plan
from tests.conftest import Running
from tests.helpers import wait_for
from tests.integration.conftest import (
    Stream,
    TcpProxy,
    announce,
    assert_each_event_once_or_identically,
    drifted_digits,
    holdout_batch,
    labelled_digits,
    publish,
    rss_mb,
    served_copy,
    with_malformed_labels,
)
from trainer.data import write_image_folder
from trainer.repository import ModelRepository

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]


def test_two_workers_share_the_partitions_and_one_killed_loses_nothing(stream: Stream) -> None:
    """Two workers in one group, one SIGKILLed mid-stream: its partitions move to the other after the session
    timeout; 6,000 events all predicted (any duplicate identical: whether the killed one left uncommitted
    outputs depends on where the kill lands; the single-worker kill test asserts that it did)."""
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
    with served_copy(triton_server, "m-bad-labels", stream.settings) as (repo, good, control):
        repo.write_config(with_malformed_labels(good))
        control.load(repo.name)
        stream.env["INFERLOOP_MODEL__NAME"] = repo.name
        stream.start_worker()
        items = labelled_digits(40)
        ids = {e for e, _, _ in items}
        publish(stream.settings, items)
        assert stream.processes[0].wait(timeout=90) == 70, "the worker went on (or died otherwise) after the error"
        assert not ids & {p.event_id for p in stream.predictions()}
        assert not ids & {d.event_id for d in read_dead_letters(stream.settings, idle_timeout_s=0.5)}
        repo.write_config(good)
        control.load(repo.name)
        stream.start_worker()  # as Kubernetes restarts it: the uncommitted events come again
        assert_each_event_once_or_identically(stream.wait_predicted(ids, timeout_s=120), ids)


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
    announce(stream.settings, 1)  # a broker of this test's own: version 1 is announced there too
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
        "INFERLOOP_KAFKA__BOOTSTRAP_SERVERS": fresh_model.kafka.bootstrap,
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
    assert repo.versions() == [1] and repo.read_registry().loaded == [1] and repo.read_registry().promoted == 1
    _, version = TritonControl(fresh_model.triton.grpc_url).infer(fresh_model.model.name, holdout_batch(4))
    assert version == 1, "the old version stopped serving"


def near_limit_pngs(count: int, limit: int) -> list[bytes]:
    """Distinct noise PNGs as large as an image event may be under ``limit`` (noise does not compress)."""
    rng = np.random.default_rng(7)
    side = int(((limit - 4096) / 3) ** 0.5)
    pngs = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def test_near_limit_images_under_a_slow_triton_stay_within_the_memory_budget(stream: Stream) -> None:
    """A backlog of 200 images of ~0.97 MB (just under the 1 MB record limit) in front of a worker with a 128 MiB
    memory budget and a Triton slowed by 250 ms each way: batches never exceed the budget's batch size, the rest
    waits in Kafka, the worker's RSS grows by less than the budget over its warm baseline and stays under 80 % of
    the chart's 1 GiB limit; then every event is predicted."""
    budget_mb = 128
    stream.env["INFERLOOP_STREAMS__MEMORY_BUDGET_MB"] = str(budget_mb)
    stream.env["INFERLOOP_STREAMS__SESSION_TIMEOUT_S"] = "60"  # the worker is paused while the backlog is written
    plan = memory_plan(stream.settings.streams)
    assert plan.batch < stream.settings.streams.max_batch, "the budget should bind with near-limit images"
    pngs = near_limit_pngs(6, stream.settings.streams.max_request_bytes)
    assert all(900_000 < len(p) < stream.settings.streams.max_request_bytes - 1000 for p in pngs)
    with TcpProxy(int(stream.env["INFERLOOP_TRITON__GRPC_PORT"]), delay_s=0.25) as proxy:
        stream.env["INFERLOOP_TRITON__GRPC_PORT"] = str(proxy.port)
        worker = stream.start_worker()
        warm = [(uuid.uuid4().hex, pngs[i % len(pngs)], "") for i in range(10)]
        publish(stream.settings, warm)
        stream.wait_predicted({e for e, _, _ in warm})
        baseline = rss_mb(stream.workers[0])
        items = [(uuid.uuid4().hex, pngs[i % len(pngs)], "") for i in range(200)]
        ids = {e for e, _, _ in items}
        os.kill(stream.workers[0], signal.SIGSTOP)  # a backlog of 200 MB waits in Kafka when the worker resumes
        try:
            publish(stream.settings, items)
        finally:
            os.kill(stream.workers[0], signal.SIGCONT)
        samples: list[tuple[float, float, float]] = []  # (in flight, lag, rss)
        predicted: set[str] = set()
        while not ids <= predicted:
            samples.append(
                (
                    stream.metric(worker, "inferloop_events_in_flight"),
                    stream.metric(worker, "inferloop_consumer_lag"),
                    rss_mb(stream.workers[0]),
                )
            )
            assert len(samples) < 600, "not every event was predicted within 5 minutes"
            threading.Event().wait(0.5)
            predicted = {p.event_id for p in stream.predictions()}
    in_flight, lag, rss = (max(s[i] for s in samples) for i in range(3))
    assert 0 < in_flight <= plan.events_in_flight, (
        f"{in_flight:.0f} events in flight; the budget allows {plan.in_flight} batches of {plan.batch}"
    )
    assert lag > 0, "no backlog built up: the slowdown was not felt"
    assert rss - baseline < budget_mb, f"RSS grew {rss - baseline:.0f} MiB over its {baseline:.0f} MiB baseline"
    assert rss < 0.8 * 1024, f"RSS reached {rss:.0f} MiB, over 80 % of the chart's 1 GiB limit"
    assert_each_event_once_or_identically([p for p in stream.predictions() if p.event_id in ids], ids)
