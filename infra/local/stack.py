"""The local stack behind ``inferloop up``, ``status`` and ``down``.

The servers run in the background, in their own process groups, and outlive the command that started them.
What was started is recorded in ``<home>/stack.json`` (pid, addresses, folders, log), so that a later command
can report on it and stop it. A pid is only ever signalled if its command line still carries the marker that
was recorded with it: a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inferloop.kafka.options import kafka_options
from inferloop.settings import env_var
from infra.local.kafka_broker import KafkaBroker, ensure_kafka_jars, kafka_ready
from infra.local.process import LocalService, pid_alive, pid_cmdline, start, stop_pid
from infra.local.prometheus_server import PrometheusServer
from infra.local.settings import LocalSettings
from infra.local.triton_server import GrpcTls, TritonServer, ensure_backend_dir, triton_ready

STATE_FILE = "stack.json"


@dataclass(frozen=True)
class ComponentRecord:
    """What ``up`` recorded about one server it started."""

    name: str
    pid: int
    marker: str
    address: str
    log: str
    data: str
    started_at: float


@dataclass(frozen=True)
class ComponentStatus:
    """What ``status`` reports for one server."""

    name: str
    running: bool
    ready: bool
    address: str
    pid: int | None
    log: str | None


def prepare_runtimes(settings: LocalSettings) -> tuple[Path, Path]:
    """The Kafka jars (resolved by Maven) and Triton's backend folder, prepared once in the cache folder."""
    return ensure_kafka_jars(settings.cache_dir, settings.kafka.version), ensure_backend_dir(settings.cache_dir)


def kafka_service(settings: LocalSettings) -> KafkaBroker:
    k = settings.kafka
    return KafkaBroker(
        libs_dir=ensure_kafka_jars(settings.cache_dir, k.version),
        data_dir=settings.home / "kafka",
        log_path=settings.home / "logs" / "kafka.log",
        host=k.host,
        port=k.port,
        controller_port=k.controller_port,
        heap_mb=k.heap_mb,
        start_timeout_s=k.start_timeout_s,
        port_env_vars={"port": env_var("kafka.port"), "controller_port": env_var("kafka.controller_port")},
    )


def triton_service(settings: LocalSettings) -> TritonServer:
    t = settings.triton
    return TritonServer(
        model_repository=settings.model_repository,
        backend_dir=ensure_backend_dir(settings.cache_dir),
        log_path=settings.home / "logs" / "triton.log",
        host=t.host,
        http_port=t.http_port,
        grpc_port=t.grpc_port,
        metrics_port=t.metrics_port,
        start_timeout_s=t.start_timeout_s,
        port_env_vars={
            "http_port": env_var("triton.http_port"),
            "grpc_port": env_var("triton.grpc_port"),
            "metrics_port": env_var("triton.metrics_port"),
        },
        grpc_tls=GrpcTls(
            t.tls_server_cert_file,
            t.tls_server_key_file,
            client_ca_file=t.tls_ca_file if t.tls_cert_file else None,  # clients with certificates: require them
        )
        if t.tls_server_cert_file and t.tls_server_key_file
        else None,
    )


def prometheus_service(settings: LocalSettings) -> PrometheusServer:
    p, host = settings.prometheus, "127.0.0.1"
    return PrometheusServer(
        data_dir=settings.home / "prometheus",
        log_path=settings.home / "logs" / "prometheus.log",
        targets={
            "inferloop-worker": [f"{host}:{settings.streams.metrics_port}"],
            "inferloop-joiner": [f"{host}:{settings.feedback.metrics_port}"],
            "inferloop-trainer": [f"{host}:{settings.trainer.metrics_port}"],
            "triton": [f"{settings.triton.host}:{settings.triton.metrics_port}"],
        },
        host=p.host,
        port=p.port,
        scrape_interval_s=p.scrape_interval_s,
        port_env_var=env_var("prometheus.port"),
    )


class LocalStack:
    """The servers of one state folder: start them, report on them, stop them."""

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.home = settings.home
        self.state_path = self.home / STATE_FILE

    # -- the record -------------------------------------------------------------------------------------------

    def records(self) -> dict[str, ComponentRecord]:
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        return {name: ComponentRecord(**rec) for name, rec in raw.get("components", {}).items()}

    def _write_records(self, records: dict[str, ComponentRecord]) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"components": {n: asdict(r) for n, r in records.items()}}, indent=2))
        tmp.replace(self.state_path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise ``up`` and ``down`` of one state folder."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "stack.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @staticmethod
    def is_alive(record: ComponentRecord) -> bool:
        """The recorded process still runs, and is still the server we started."""
        return pid_alive(record.pid) and record.marker in pid_cmdline(record.pid)

    # -- the verbs --------------------------------------------------------------------------------------------

    def services(self, with_prometheus: bool | None = None) -> list[tuple[str, Callable[[], LocalService], str]]:
        """The servers of the stack; Prometheus when asked for, or (``None``) when ``up`` recorded one."""
        s = self.settings
        out: list[tuple[str, Callable[[], LocalService], str]] = [
            ("kafka", lambda: kafka_service(s), s.kafka.bootstrap),
            ("triton", lambda: triton_service(s), s.triton.grpc_url),
        ]
        if with_prometheus or (with_prometheus is None and "prometheus" in self.records()):
            out.append(("prometheus", lambda: prometheus_service(s), s.prometheus.url))
        return out

    def up(
        self, on_event: Callable[[str], None] = lambda _msg: None, with_prometheus: bool = False
    ) -> list[ComponentStatus]:
        """Start what is not running yet and wait until everything is ready; on failure, stop what was started."""
        with self._locked():
            records = self.records()
            started: list[ComponentRecord] = []
            try:
                for name, build, address in self.services(with_prometheus or None):
                    existing = records.get(name)
                    if existing is not None and self.is_alive(existing):
                        on_event(f"{name} already running (pid {existing.pid})")
                        continue
                    service = build()
                    on_event(f"starting {name} on {address}")
                    began = time.monotonic()
                    proc = start(service)
                    record = ComponentRecord(
                        name=name,
                        pid=proc.pid,
                        marker=service.marker,
                        address=address,
                        log=str(service.log_path),
                        data=str(_data_folder(service)),
                        started_at=time.time(),
                    )
                    records[name] = record
                    started.append(record)
                    self._write_records(records)
                    on_event(f"{name} ready in {time.monotonic() - began:.1f} s (pid {proc.pid})")
            except BaseException:
                for record in reversed(started):
                    stop_pid(record.pid)
                    records.pop(record.name, None)
                self._write_records(records)
                raise
        return self.status()

    def status(self) -> list[ComponentStatus]:
        """Each server: whether the recorded process runs, whether it answers, where."""
        records = self.records()
        out = []
        for name, _build, address in self.services():
            rec = records.get(name)
            running = rec is not None and self.is_alive(rec)
            out.append(
                ComponentStatus(
                    name=name,
                    running=running,
                    ready=self._probe(name),
                    address=address,
                    pid=rec.pid if rec is not None and running else None,
                    log=rec.log if rec is not None else None,
                )
            )
        return out

    def _probe(self, name: str) -> bool:
        if name == "kafka":
            options = {k: v for k, v in kafka_options(self.settings.kafka).items() if k != "bootstrap_servers"}
            return kafka_ready(self.settings.kafka.bootstrap, timeout_s=3.0, **options)
        if name == "prometheus":
            return prometheus_service(self.settings).is_ready()
        return triton_ready(self.settings.triton.http_url)

    def down(self, on_event: Callable[[str], None] = lambda _msg: None) -> list[str]:
        """Stop every recorded server (Triton first, the broker last); returns the names stopped."""
        stopped = []
        with self._locked():
            records = self.records()
            for name in ("prometheus", "triton", "kafka"):
                rec = records.pop(name, None)
                if rec is None:
                    continue
                if self.is_alive(rec):
                    on_event(f"stopping {name} (pid {rec.pid})")
                    clean = stop_pid(rec.pid, timeout_s=30.0)
                    on_event(f"{name} stopped" + ("" if clean else " (killed after 30 s)"))
                    stopped.append(name)
                self._write_records(records)
        return stopped


def _data_folder(service: LocalService) -> Path:
    if isinstance(service, KafkaBroker):
        return service.data_dir
    if isinstance(service, TritonServer):
        return service.model_repository
    if isinstance(service, PrometheusServer):
        return service.data_dir
    return service.log_path.parent


def status_as_json(statuses: list[ComponentStatus]) -> dict[str, Any]:
    return {s.name: asdict(s) for s in statuses}
