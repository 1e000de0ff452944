"""``inferloop bench``: the worker against a hand-written peer, faust's floor, raw Triton and a naive consumer.

On the local stack (``inferloop up`` and a serving model), with the embedded digits as PNG events, every consumer
on topics of its own (a fresh prefix, its own promotions topic announcing the serving version):

- backlog: the consumer starts and warms up on 500 events, is stopped (SIGSTOP) while N events are written, and is
  let go (SIGCONT); images/s is N over the time until its N-th output is on the topic, and CPU per image is the
  user+sys time of the consumer's processes and of Triton's (server and backend stubs) over that time, divided by
  N. Measured for faust's floor (an empty agent on the worker's app and batching: CPU per event), the worker, the
  worker with a candidate in shadow, the framework-free aiokafka peer (:mod:`cli.bench.peer`) and the naive
  one-event-at-a-time consumer (at most 10 s of it). The peer and the worker run side by side in three rounds
  (peer first, then worker first, then peer first): each figure is the median of its three, and each worker /
  peer ratio the median of the three rounds' ratios (this machine's speed drifts by a fifth from minute to
  minute: one run of each measured the drift as much as the consumers);
- latency: a separate process (:mod:`cli.bench.latency`) sends events at 100 and 1,000 images/s to a running
  worker and times each prediction's arrival at a consumer of the predictions topic; p50 and p99 are the median of
  three runs of each rate; a run at half the worker's backlog throughput too;
- raw Triton: the same model over async gRPC on ready tensors, the best of a small grid.

Every figure comes from this run on this machine; the ratios are what the targets speak of. Each step's topics are
deleted when it is done, and the rest at the end (a broker that kept earlier runs' partitions measured slower).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cli.bench.latency import digit_pngs
from inferloop.errors import InferloopError
from inferloop.events import ImageEvent, Message, Promotion, encode_image_event, new_event_id
from inferloop.images.decode import ImageLimits, decode_image
from inferloop.images.preprocess import InputSpec, to_model_input
from inferloop.kafka.options import kafka_options
from inferloop.kafka.promotions import PromotionLog
from inferloop.kafka.readers import read_predictions
from inferloop.kafka.topics import delete_topics_with_prefix, ensure_topics
from inferloop.settings import Settings
from inferloop.triton.control import TritonControl
from inferloop.triton.inference import triton_inference
from inferloop.triton.options import grpc_options
from inferloop.triton.signature import ModelSignature
from infra.local.process import LocalService, Port, free_ports, start, stop_pid
from infra.local.settings import LocalSettings
from infra.local.stack import LocalStack
from infra.local.worker import WorkerProcess

ProgressFn = Callable[[str], None]
WARM_UP_EVENTS = 500
BACKLOG_ROUNDS = 3  # peer and worker alternately: medians of three, each pair minutes apart at most
LATENCY_RATES = (100, 1000)
LATENCY_RUNS = 3
LATENCY_SECONDS = 5.0
NAIVE_MAX_S = 10.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass
class Backlog:
    """One consumer on a pre-filled topic."""

    images: int
    seconds: float
    cpu_s: float  # the consumer's processes and Triton's
    consumer_cpu_s: float  # the consumer's processes alone

    @property
    def images_per_s(self) -> float:
        return round(self.images / max(self.seconds, 1e-9), 1)

    @property
    def cpu_us_per_image(self) -> float:
        return round(self.cpu_s / max(self.images, 1) * 1e6, 1)

    @property
    def consumer_cpu_us_per_image(self) -> float:
        return round(self.consumer_cpu_s / max(self.images, 1) * 1e6, 1)

    def figures(self) -> dict[str, float]:
        return {
            "images_per_s": self.images_per_s,
            "cpu_us_per_image": self.cpu_us_per_image,
            "process_cpu_us_per_image": self.consumer_cpu_us_per_image,
        }


def median_figures(runs: Sequence[Backlog]) -> dict[str, float]:
    """Each figure's median over ``runs`` (each figure on its own: the machine's speed drifts between runs)."""
    figures = [r.figures() for r in runs]
    return {k: round(statistics.median(f[k] for f in figures), 1) for k in figures[0]}


@dataclass
class BenchResult:
    events: int
    workers: int
    machine: str
    cpu_counted: str
    serving_version: int
    # backlog, side by side: the medians of BACKLOG_ROUNDS rounds of the peer and the worker (alternating order)
    faust_floor_cpu_us_per_event: float
    faust_floor_events_per_s: float
    worker_backlog_images_per_s: float
    worker_cpu_us_per_image: float
    peer_backlog_images_per_s: float
    peer_cpu_us_per_image: float
    worker_process_cpu_us_per_image: float  # the worker's processes alone, without Triton's
    peer_process_cpu_us_per_image: float
    naive_images_per_s: float
    naive_cpu_us_per_image: float
    naive_queue_delay_us: int | None
    shadow_version: int | None
    worker_shadow_backlog_images_per_s: float | None
    worker_shadow_cpu_us_per_image: float | None
    backlog_runs: dict[str, list[dict[str, float]]]  # each round's figures, peer and worker
    # latency, production to a consumer of the predictions topic
    latency_at_100_per_s: dict[str, float]
    latency_at_1000_per_s: dict[str, float]
    latency_runs: dict[str, list[dict[str, float]]]
    # raw Triton
    triton_images_per_s: float
    triton_best: dict[str, int]
    # the earlier fields, kept: the worker's backlog run and a run at half its throughput
    pipeline_images_per_s: float
    p50_ms: float
    p99_ms: float
    half_load_images_per_s: float
    p50_half_load_ms: float
    p99_half_load_ms: float
    pipeline_vs_triton: float
    pipeline_vs_naive: float
    worker_vs_peer_throughput: float = field(init=False)
    worker_vs_peer_cpu: float = field(init=False)

    def __post_init__(self) -> None:
        # each round's ratio of its worker to its peer (run minutes apart at most), the median over the rounds
        rounds = list(zip(self.backlog_runs["worker"], self.backlog_runs["peer"], strict=True))
        self.worker_vs_peer_throughput = round(
            statistics.median(w["images_per_s"] / p["images_per_s"] for w, p in rounds), 3
        )
        self.worker_vs_peer_cpu = round(
            statistics.median(w["cpu_us_per_image"] / p["cpu_us_per_image"] for w, p in rounds), 3
        )

    def targets_met(self) -> dict[str, bool]:
        low, high = self.latency_at_100_per_s, self.latency_at_1000_per_s
        return {
            "worker throughput >= 0.8 x peer": self.worker_vs_peer_throughput >= 0.8,
            "worker CPU per image <= 1.5 x peer": self.worker_vs_peer_cpu <= 1.5,
            "p50 <= 8 ms and p99 <= 20 ms at 100 images/s": low["p50_ms"] <= 8 and low["p99_ms"] <= 20,
            "p99 <= 40 ms at 1,000 images/s": high["p99_ms"] <= 40,
        }

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "targets_met": self.targets_met()}


def _percentile(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 1) if values else float("nan")


# -- processes and their CPU ------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cpu_s(pid: int) -> float:
    """user+sys seconds of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def cpu_seconds(pids: Sequence[int]) -> float:
    """user+sys seconds of ``pids`` and of their children."""
    return sum(_cpu_s(p) for pid in pids for p in (pid, *_children(pid)))


class BenchProcess(LocalService):
    """A bench consumer (``python -m MODULE ARGS``) configured by ``env``; ready once it runs."""

    def __init__(self, name: str, env: Mapping[str, str], log_path: Path, args: Sequence[str]) -> None:
        super().__init__(log_path)
        self.name, self.env, self.args = name, dict(env), list(args)

    def ports(self) -> Sequence[Port]:
        return []

    def command(self) -> list[str]:
        return [sys.executable, "-m", *self.args]

    def environment(self) -> Mapping[str, str]:
        return {**self.env, "PYTHONUNBUFFERED": "1", "PATH": os.environ.get("PATH", "")}

    def is_ready(self) -> bool:
        return True


class Bench:
    def __init__(self, settings: Settings, events: int, progress: ProgressFn, workers: int = 1) -> None:
        self.base, self.events, self.progress, self.workers = settings, events, progress, workers
        self.run_id = uuid.uuid4().hex[:8]
        self.pngs = digit_pngs()
        self.logs = Path(tempfile.mkdtemp(prefix="inferloop-bench-"))
        self.serving = 0
        self.triton_pids = self._triton_pids()
        from kafka import KafkaConsumer

        self.offsets = KafkaConsumer(**kafka_options(settings.kafka), enable_auto_commit=False)

    def _triton_pids(self) -> list[int]:
        """Triton's server process when it is the local stack's (its stubs are its children); else none."""
        if not isinstance(self.base, LocalSettings):
            return []
        record = LocalStack(self.base).records().get("triton")
        return [record.pid] if record is not None and LocalStack.is_alive(record) else []

    def prefix(self, name: str) -> str:
        return f"bench-{self.run_id}-{name}"

    def settings_for(self, name: str) -> Settings:
        """The base settings on topics, groups and a promotions topic of this run's ``name``."""
        prefix = self.prefix(name)
        settings = self.base.with_topic_prefix(prefix)
        model = settings.model.model_copy(update={"promotions_topic": f"{prefix}.promotions"})
        return settings.model_copy(update={"model": model})

    def announce(self, settings: Settings, shadow: int | None = None) -> None:
        ensure_topics(settings)
        PromotionLog(settings).announce(
            Promotion(settings.model.name, self.serving, shadow, action="promote", reason="bench")
        )

    # -- events ---------------------------------------------------------------------------------------------------

    def _messages(self, count: int) -> list[Message]:
        return [
            encode_image_event(ImageEvent(new_event_id(), "image/png", self.pngs[n % len(self.pngs)], source="bench"))
            for n in range(count)
        ]

    def _produce(self, settings: Settings, messages: Sequence[Message]) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(
            **kafka_options(settings.kafka),
            acks="all",
            linger_ms=5,
            batch_size=512 * 1024,
            max_request_size=settings.streams.max_request_bytes,
        )
        topic = settings.streams.images_topic
        for m in messages:
            producer.send(topic, key=m.key, value=m.value, headers=list(m.headers), timestamp_ms=m.timestamp_ms)
        producer.flush()
        producer.close()

    def _written(self, topic: str) -> int:
        """Records on ``topic`` so far (the sum of its partitions' end offsets)."""
        from kafka import TopicPartition

        partitions = self.offsets.partitions_for_topic(topic) or set()
        return sum(self.offsets.end_offsets([TopicPartition(topic, p) for p in partitions]).values())

    # -- one consumer on a backlog ----------------------------------------------------------------------------------

    @contextmanager
    def _running(self, services: Sequence[LocalService]) -> Iterator[list[int]]:
        pids: list[int] = []
        try:
            for service in services:
                pids.append(start(service).pid)
            yield pids
        finally:
            for pid in pids:
                stop_pid(pid)

    def backlog(
        self,
        name: str,
        settings: Settings,
        services: Sequence[LocalService],
        done: Callable[[], int],
        events: int,
        max_s: float = 600.0,
    ) -> Backlog:
        """Warm the consumers up, stop them, write ``events`` events, let them go and time the work."""
        with self._running(services) as pids:
            self._produce(settings, self._messages(WARM_UP_EVENTS))
            self._wait(name, lambda: done() >= WARM_UP_EVENTS, 180.0)
            backlog = self._messages(events)
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
            try:
                self._produce(settings, backlog)
            finally:
                consumer_before, triton_before = cpu_seconds(pids), cpu_seconds(self.triton_pids)
                began = time.perf_counter()
                for pid in pids:
                    os.kill(pid, signal.SIGCONT)
            target = WARM_UP_EVENTS + events
            finished = self._wait(name, lambda: done() >= target, max_s, give_up=max_s < 600)
            elapsed = time.perf_counter() - began
            consumer = cpu_seconds(pids) - consumer_before
            triton = cpu_seconds(self.triton_pids) - triton_before
            handled = (target if finished else done()) - WARM_UP_EVENTS
        return Backlog(handled, elapsed, consumer + triton, consumer)

    def _wait(self, name: str, condition: Callable[[], bool], timeout_s: float, give_up: bool = False) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                if give_up:
                    return False
                raise InferloopError(f"bench: {name} stalled (see the logs in {self.logs})")
            time.sleep(0.05)
        return True

    def _outputs(self, settings: Settings) -> Callable[[], int]:
        return lambda: self._written(settings.streams.predictions_topic)

    def _workers(self, settings: Settings, name: str) -> list[LocalService]:
        return [
            WorkerProcess(settings.to_env(), port, self.logs / f"{name}-{n}.log")
            for n, port in enumerate(free_ports(self.workers))
        ]

    def done_with(self, name: str) -> None:
        """Delete a finished step's topics: the steps after it measure on a broker without them."""
        delete_topics_with_prefix(self.base, f"{self.prefix(name)}.")

    def floor(self) -> Backlog:
        settings = self.settings_for("floor")
        ensure_topics(settings)
        count_file = self.logs / "floor.count"
        count_file.write_text("0")
        args = ["cli.bench.floor", str(count_file)]
        service = BenchProcess("floor", settings.to_env(), self.logs / "floor.log", args)
        counted = lambda: int(count_file.read_text() or 0)  # noqa: E731 - the floor's own count
        result = self.backlog("faust's floor", settings, [service], counted, self.events)
        self.done_with("floor")
        return result

    def peer(self, name: str = "peer") -> Backlog:
        settings = self.settings_for(name)
        self.announce(settings)
        args = ["cli.bench.peer", str(self.serving)]
        service = BenchProcess(name, settings.to_env(), self.logs / f"{name}.log", args)
        result = self.backlog("the peer", settings, [service], self._outputs(settings), self.events)
        self._predicted_all("the peer", settings)
        self.done_with(name)
        return result

    def _predicted_all(self, name: str, settings: Settings) -> list[float]:
        """Check that every event of the run was predicted (distinct event ids, not just records: a redelivery
        must not stand in for a missing one); the production-to-prediction latencies of the run."""
        predictions = {p.event_id: p for p in read_predictions(settings, idle_timeout_s=1.0)}
        if len(predictions) < WARM_UP_EVENTS + self.events:
            raise InferloopError(f"bench: {name} predicted {len(predictions)} distinct events of {self.events}")
        return [float(p.predicted_at_ms - p.produced_at_ms) for p in predictions.values()]

    def naive(self) -> Backlog:
        settings = self.settings_for("naive")
        self.announce(settings)
        args = ["cli.bench.peer", str(self.serving), "--naive"]
        service = BenchProcess("naive", settings.to_env(), self.logs / "naive.log", args)
        events = min(self.events, 5000)
        return self.backlog("the naive consumer", settings, [service], self._outputs(settings), events, NAIVE_MAX_S)

    def worker(self, name: str, shadow: int | None = None) -> tuple[Backlog, list[float]]:
        """The worker's backlog run, and the production-to-prediction latencies of that run's events."""
        settings = self.settings_for(name)
        self.announce(settings, shadow)
        result = self.backlog(name, settings, self._workers(settings, name), self._outputs(settings), self.events)
        latencies = self._predicted_all(name, settings)
        self.done_with(name)
        return result, latencies

    # -- latency at fixed rates -------------------------------------------------------------------------------

    def latency(self, half_rate: float) -> tuple[dict[str, list[dict[str, float]]], dict[str, float]]:
        settings = self.settings_for("latency")
        self.announce(settings)
        runs: dict[str, list[dict[str, float]]] = {str(rate): [] for rate in LATENCY_RATES}
        with self._running(self._workers(settings, "latency")):
            self._measure_latency(settings, max(LATENCY_RATES), 2.0)  # warm-up, at the highest rate measured
            for _ in range(LATENCY_RUNS):
                for rate in LATENCY_RATES:
                    runs[str(rate)].append(self._measure_latency(settings, rate, LATENCY_SECONDS))
                    self.progress(f"latency at {rate}/s: {runs[str(rate)][-1]}")
            half = self._measure_latency(settings, half_rate, LATENCY_SECONDS)
            self.progress(f"latency at half load ({half_rate:,.0f}/s): {half}")
        return runs, half

    def _measure_latency(self, settings: Settings, rate: float, seconds: float) -> dict[str, float]:
        env = {**os.environ, **settings.to_env()}
        done = subprocess.run(
            [sys.executable, "-m", "cli.bench.latency", str(rate), str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        if done.returncode != 0:
            raise InferloopError(f"bench: the load generator failed: {done.stderr[-2000:]}")
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        if result["received"] < result["sent"]:
            raise InferloopError(f"bench: {result['sent'] - result['received']} predictions missing at {rate}/s")
        return result

    # -- raw Triton ---------------------------------------------------------------------------------------------

    async def _triton(self, signature: ModelSignature, batch: int, concurrency: int, images: int) -> float:
        spec = InputSpec(*signature.input_shape)
        limits = ImageLimits()
        x = np.stack([to_model_input(decode_image(p, "image/png", limits), spec) for p in self.pngs[:batch]])
        client = triton_inference(self.base)
        calls = max(concurrency, images // batch)
        counter = iter(range(calls))

        async def worker() -> None:
            for _ in counter:
                await client.infer(signature, x, self.serving)

        await client.infer(signature, x, self.serving)  # warm-up
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        await client.close()
        return calls * batch / elapsed

    def raw_triton(self) -> tuple[float, dict[str, int]]:
        async def grid() -> tuple[float, dict[str, int]]:
            client = triton_inference(self.base)
            signature = await client.signature(self.serving)
            await client.close()
            best, best_at = 0.0, {}
            sizes = sorted({min(signature.max_batch_size, b) for b in (8, 32, self.base.streams.max_batch)})
            for batch in sizes:
                for concurrency in (1, 2, 4, 8):
                    rate = await self._triton(signature, batch, concurrency, images=max(2000, self.events // 2))
                    self.progress(f"raw Triton: batch {batch} x {concurrency} in flight: {rate:,.0f} images/s")
                    if rate > best:
                        best, best_at = rate, {"batch": batch, "concurrency": concurrency}
            return best, best_at

        return asyncio.run(grid())

    # -- the run --------------------------------------------------------------------------------------------------

    def _versions(self, control: TritonControl) -> tuple[int, int | None]:
        """The version to serve (the announced one, else Triton's newest ready) and another ready one for the
        shadow run (None when Triton has only one)."""
        model = self.base.model.name
        ready = sorted(v.version for v in control.index(model) if v.state == "READY")
        if not ready:
            raise InferloopError(
                f"model {model!r} is not served by Triton at {self.base.triton.grpc_url}: "
                "run `inferloop up` and `inferloop train --bootstrap` first"
            )
        announced = PromotionLog(self.base, timeout_s=5.0).latest(model)
        serving = announced.serving if announced is not None and announced.serving in ready else ready[-1]
        others = [v for v in ready if v != serving]
        return serving, (others[-1] if others else None)

    def run(self) -> BenchResult:
        control = TritonControl(self.base.triton.grpc_url, options=grpc_options(self.base.triton))
        try:
            self.serving, shadow_version = self._versions(control)
            queue_delay = control.config(self.base.model.name).get("dynamic_batching", {})
            naive_queue_delay_us = int(queue_delay.get("max_queue_delay_microseconds", 0)) if queue_delay else None
        finally:
            control.close()
        self.progress(f"serving version {self.serving}; logs in {self.logs}")
        triton_rate, triton_best = self.raw_triton()
        self.progress("faust's floor: an empty agent on the worker's app and batching")
        floor = self.floor()
        self.progress(f"faust's floor: {floor}")
        peers: list[Backlog] = []
        workers: list[tuple[Backlog, list[float]]] = []
        for n in range(1, BACKLOG_ROUNDS + 1):  # side by side: a drift of the machine's speed hits both alike
            for step in ("peer", "worker") if n % 2 else ("worker", "peer"):  # and neither always goes first
                if step == "peer":
                    peers.append(self.peer(f"peer-{n}"))
                    self.progress(f"peer, round {n}: {peers[-1]}")
                else:
                    workers.append(self.worker(f"worker-{n}"))
                    self.progress(f"worker, round {n}: {workers[-1][0]}")
        peer, worker = median_figures(peers), median_figures([w for w, _ in workers])
        # the earlier fields' run: the round whose throughput is the median
        median_round = sorted(workers, key=lambda w: w[0].images_per_s)[len(workers) // 2]
        backlog_latencies = median_round[1]
        shadow: Backlog | None = None
        if shadow_version is not None:
            shadow, _ = self.worker("shadow", shadow_version)
            self.progress(f"worker with version {shadow_version} in shadow: {shadow}")
        runs, half = self.latency(worker["images_per_s"] / 2)
        naive = self.naive()
        self.progress(f"naive: {naive}")

        def median_of(rate: int) -> dict[str, float]:
            return {q: round(statistics.median(r[q] for r in runs[str(rate)]), 1) for q in ("p50_ms", "p99_ms")}

        return BenchResult(
            events=self.events,
            workers=self.workers,
            machine=f"{platform.machine()}, {os.cpu_count()} cores",
            cpu_counted="the consumer's processes and Triton's (server and backend stubs)"
            if self.triton_pids
            else "the consumer's processes only (Triton is not the local stack's)",
            serving_version=self.serving,
            faust_floor_cpu_us_per_event=floor.cpu_us_per_image,
            faust_floor_events_per_s=floor.images_per_s,
            worker_backlog_images_per_s=worker["images_per_s"],
            worker_cpu_us_per_image=worker["cpu_us_per_image"],
            peer_backlog_images_per_s=peer["images_per_s"],
            peer_cpu_us_per_image=peer["cpu_us_per_image"],
            worker_process_cpu_us_per_image=worker["process_cpu_us_per_image"],
            peer_process_cpu_us_per_image=peer["process_cpu_us_per_image"],
            naive_images_per_s=naive.images_per_s,
            naive_cpu_us_per_image=naive.cpu_us_per_image,
            naive_queue_delay_us=naive_queue_delay_us,
            shadow_version=shadow_version,
            worker_shadow_backlog_images_per_s=shadow.images_per_s if shadow else None,
            worker_shadow_cpu_us_per_image=shadow.cpu_us_per_image if shadow else None,
            backlog_runs={"peer": [p.figures() for p in peers], "worker": [w.figures() for w, _ in workers]},
            latency_at_100_per_s=median_of(100),
            latency_at_1000_per_s=median_of(1000),
            latency_runs=runs,
            triton_images_per_s=round(triton_rate, 1),
            triton_best=triton_best,
            pipeline_images_per_s=worker["images_per_s"],
            p50_ms=_percentile(backlog_latencies, 50),
            p99_ms=_percentile(backlog_latencies, 99),
            half_load_images_per_s=round(worker["images_per_s"] / 2, 1),
            p50_half_load_ms=half["p50_ms"],
            p99_half_load_ms=half["p99_ms"],
            pipeline_vs_triton=round(worker["images_per_s"] / triton_rate, 3),
            pipeline_vs_naive=round(worker["images_per_s"] / max(naive.images_per_s, 1e-9), 1),
        )


def run_bench(settings: Settings, events: int, progress: ProgressFn, workers: int = 1) -> BenchResult:
    bench = Bench(settings, events, progress, workers)
    try:
        return bench.run()
    finally:
        bench.offsets.close()
        deleted = delete_topics_with_prefix(settings, f"bench-{bench.run_id}-")
        progress(f"deleted the run's {len(deleted)} topics")
