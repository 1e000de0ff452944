"""Fixtures shared by the integration tests: a stream of one test's own (topics, worker processes, data) and a
model of one test's own (its version 1 the session's bootstrapped artifact)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inferloop.events import Prediction, Promotion
from inferloop.images.preprocess import InputSpec
from inferloop.kafka.producers import ImageProducer
from inferloop.kafka.promotions import PromotionLog
from inferloop.kafka.readers import read_predictions
from inferloop.metrics import scrape
from inferloop.settings import Settings
from inferloop.triton.control import TritonControl
from inferloop.triton.model_config import ModelConfig
from infra.local.kafka_broker import KafkaBroker
from infra.local.process import free_ports, start, stop_pid
from infra.local.settings import LocalSettings
from infra.local.triton_server import TritonServer
from infra.local.worker import JoinerProcess, WorkerProcess
from tests.conftest import SERVER_LOGS
from tests.helpers import isolated_env, settings_from_env, wait_for
from trainer.card import ModelCard
from trainer.data import digits_images, load_digits_dataset, png_bytes, split_holdout
from trainer.export import triton_config
from trainer.jobs.context import publisher
from trainer.repository import ModelRepository


class Stream:
    """One test's topics, settings and worker (and joiner) processes."""

    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env, self.tmp_path = env, tmp_path
        self.workers: list[int] = []  # pids of every process started, workers and joiners
        self.processes: list[subprocess.Popen[bytes]] = []  # the same processes, to read how they ended
        self.joiner: JoinerProcess | None = None

    @property
    def settings(self) -> LocalSettings:
        return settings_from_env(self.env)

    def start(self, kind: type[WorkerProcess] = WorkerProcess) -> WorkerProcess:
        (port,) = free_ports(1)
        process = kind(self.env, port, self.tmp_path / f"{kind.name}-{len(self.workers)}.log")
        SERVER_LOGS[f"{kind.name} {len(self.workers)}"] = process.log_path
        self.processes.append(start(process))
        self.workers.append(self.processes[-1].pid)
        if isinstance(process, JoinerProcess):
            self.joiner = process
        return process

    def start_worker(self) -> WorkerProcess:
        return self.start(WorkerProcess)

    def predictions(self) -> list[Prediction]:
        return list(read_predictions(self.settings, idle_timeout_s=0.5))

    def wait_predicted(self, ids: set[str], timeout_s: float = 120) -> list[Prediction]:
        def probe() -> list[Prediction] | None:
            got = self.predictions()
            return got if ids <= {p.event_id for p in got} else None

        return wait_for(probe, timeout_s, f"predictions for {len(ids)} events")

    def metric(self, process: WorkerProcess, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` (with these labels) on the process's /metrics."""
        samples = scrape(f"http://127.0.0.1:{process.metrics_port}/metrics", name)
        return sum(value for sample_labels, value in samples if labels.items() <= sample_labels.items())

    def stop(self) -> None:
        for pid in self.workers:
            stop_pid(pid, timeout_s=20)


@pytest.fixture
def stream(
    bootstrapped: dict[str, str],
    kafka_broker: KafkaBroker,
    triton_server: TritonServer,
    base_settings: LocalSettings,
    tmp_path: Path,
) -> Iterator[Stream]:
    env = isolated_env(
        tmp_path, base_settings.cache_dir, triton_server, kafka_broker, INFERLOOP_STREAMS__PARTITIONS="4"
    )
    s = Stream(env, tmp_path)
    yield s
    s.stop()


def copy_bootstrapped_repository(bootstrapped: dict[str, str], repository: Path) -> Path:
    """A model repository of a test's own holding the bootstrapped digits model (for a Triton of its own)."""
    source = Path(bootstrapped["INFERLOOP_TRITON__MODEL_REPOSITORY"]) / "digits"
    shutil.copytree(source, repository / "digits", ignore=shutil.ignore_patterns("__pycache__", "_inferloop"))
    return repository


def drifted_digits(count: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Digits with inverted colours: a distribution version 1 never saw."""
    images, labels = digits_images()
    pick = np.random.default_rng(seed).choice(len(images), size=count, replace=False)
    return 255 - images[pick], [str(int(labels[i])) for i in pick]


def holdout_batch(n: int = 64) -> np.ndarray:
    _, holdout = split_holdout(load_digits_dataset(InputSpec()), 0.2)
    return holdout.x[:n]


def labelled_digits(n: int, offset: int = 0) -> list[tuple[str, bytes, str]]:
    images, labels = digits_images()
    return [
        (uuid.uuid4().hex, png_bytes(images[i % len(images)]), str(int(labels[i % len(images)])))
        for i in range(offset, offset + n)
    ]


def publish(settings: LocalSettings, items: list[tuple[str, bytes, str]]) -> None:
    with ImageProducer(settings, source="test") as producer:
        for event_id, data, _ in items:
            producer.publish_bytes(data, "image/png", event_id=event_id)


def settings_for(
    triton: TritonServer, home: Path, model: str, kafka: KafkaBroker | None = None, **trainer: object
) -> LocalSettings:
    return LocalSettings(
        home=home,
        kafka={"bootstrap_servers": kafka.bootstrap_servers} if kafka is not None else {},
        triton={
            "http_port": triton.http_port,
            "grpc_port": triton.grpc_port,
            "model_repository": triton.model_repository,
        },
        model={"name": model},
        trainer={"feedback_dir": home / "labelled", "feedback_source": "folder", "min_new_labels": 20, **trainer},
    )  # type: ignore[arg-type]


@pytest.fixture
def fresh_model(
    bootstrapped: dict[str, str],
    triton_server: TritonServer,
    kafka_broker: KafkaBroker,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[LocalSettings]:
    """A model of this test's own whose version 1 is the bootstrapped artifact (no retraining per test),
    promoted on the session broker's promotions topic."""
    name = "m-" + "".join(c for c in request.node.name if c.isalnum())[-40:]
    settings = settings_for(triton_server, tmp_path, name, kafka_broker)
    source = triton_server.model_repository / "digits" / "1"
    card = ModelCard.read(source)
    card.model_name = name
    control = TritonControl(triton_server.grpc_url)
    publisher(settings, control).publish(source, card)
    yield settings
    control.unload(name)


def announced(settings: Settings, model: str | None = None) -> tuple[int, int | None] | None:
    """(serving, shadow) as the promotions topic says now."""
    latest = PromotionLog(settings).latest(model or settings.model.name)
    return None if latest is None else (latest.serving, latest.shadow)


def announce(settings: Settings, version: int, model: str | None = None) -> None:
    """Promote ``version`` on the settings' broker, as an operator would (for a broker of a test's own)."""
    PromotionLog(settings).announce(Promotion(model or settings.model.name, version, None, "promote", "test setup"))


@contextlib.contextmanager
def served_copy(
    triton_server: TritonServer, name: str, announce_on: Settings | None = None
) -> Iterator[tuple[ModelRepository, ModelConfig, TritonControl]]:
    """The bootstrapped digits model served again under ``name``, with its good config (tests then break and
    mend that config), version 1 announced on ``announce_on``'s broker; unloaded afterwards."""
    repo = ModelRepository(triton_server.model_repository, name)
    shutil.copytree(triton_server.model_repository / "digits" / "1", repo.version_dir(1), dirs_exist_ok=True)
    card = repo.card(1)
    good = triton_config(replace(card.signature(64), model=name), card.input_spec, [1])
    repo.write_config(good)
    control = TritonControl(triton_server.grpc_url)
    control.load(name)
    if announce_on is not None:
        announce(announce_on, 1, name)
    try:
        yield repo, good, control
    finally:
        control.unload(name)
        control.close()


def with_malformed_labels(config: ModelConfig) -> ModelConfig:
    return replace(config, parameters={**config.parameters, "labels": "[not json"})


def assert_each_event_once_or_identically(
    predictions: list[Prediction], ids: set[str], duplicates_expected: bool = False
) -> None:
    """Every id predicted, and every duplicate identical to the first answer (``duplicates_expected``: first
    check that the fault did cause duplicates, so that the identity check checks something)."""
    assert {p.event_id for p in predictions} == ids, "an event was lost"
    if duplicates_expected:
        assert len(predictions) > len(ids), "no event was predicted twice: the fault did not cause a redelivery"
    answers: dict[str, set[str]] = {}
    for p in predictions:
        answer = asdict(p)
        for volatile in ("received_at_ms", "predicted_at_ms"):
            answer.pop(volatile)
        answers.setdefault(p.event_id, set()).add(json.dumps(answer, sort_keys=True))
    assert all(len(a) == 1 for a in answers.values()), "a duplicate differed from the first prediction"


class TcpProxy:
    """A TCP proxy in front of a real server (Triton, as the worker sees it): it can hold every chunk for
    ``delay_s`` each way (a slow server), and :meth:`cut` refuses and drops every connection until
    :meth:`restore` (an outage), on the same port."""

    def __init__(self, target_port: int, delay_s: float = 0.0) -> None:
        self.target_port, self.delay_s = target_port, delay_s
        (self.port,) = free_ports(1)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, OSError):
            writer.close()
        finally:
            self._connections.discard(task)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def cut(self) -> None:
        """Refuse new connections and drop the open ones (the server went away)."""
        self._call(self._close())

    def restore(self) -> None:
        self._call(self._listen())

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
