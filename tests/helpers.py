"""Small helpers shared by the integration tests (the servers themselves come from conftest fixtures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from infra.local.kafka_broker import KafkaBroker
from infra.local.settings import LocalSettings
from infra.local.triton_server import TritonServer

T = TypeVar("T")


def stack_env(
    home: Path,
    cache_dir: Path,
    triton: TritonServer | None = None,
    kafka: KafkaBroker | None = None,
    topic_prefix: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The ``INFERLOOP_*`` environment that points a CLI or worker process at the test servers (on topics of
    their own with ``topic_prefix``); ``extra`` variables win."""
    overrides: dict[str, Any] = {
        "home": home,
        "cache_dir": cache_dir,
        "trainer": {"metrics_port": 0},  # trainers started by tests serve no metrics unless a test asks
    }
    if triton is not None:
        overrides["triton"] = {
            "http_port": triton.http_port,
            "grpc_port": triton.grpc_port,
            "model_repository": triton.model_repository,
        }
    if kafka is not None:
        overrides["kafka"] = {"bootstrap_servers": kafka.bootstrap_servers}
    settings = LocalSettings(**overrides)
    if topic_prefix is not None:
        settings = settings.with_topic_prefix(topic_prefix)
    return {**os.environ, **settings.to_env(), "COLUMNS": "200", **extra}


def isolated_env(
    tmp_path: Path, cache_dir: Path, triton: TritonServer, kafka: KafkaBroker, **extra: str
) -> dict[str, str]:
    """The environment of one test's processes: the session's servers, a home and topics of the test's own."""
    return stack_env(tmp_path / "home", cache_dir, triton, kafka, topic_prefix=f"t-{uuid.uuid4().hex[:8]}", **extra)


def own_stack_env(home: Path, cache_dir: Path, ports: list[int], **extra: str) -> dict[str, str]:
    """The environment of a stack of a test's own (``inferloop up`` or the demo start it) on free ``ports``:
    Kafka client and controller, Triton HTTP, gRPC and metrics, in that order."""
    return stack_env(
        home,
        cache_dir,
        INFERLOOP_KAFKA__PORT=str(ports[0]),
        INFERLOOP_KAFKA__CONTROLLER_PORT=str(ports[1]),
        INFERLOOP_TRITON__HTTP_PORT=str(ports[2]),
        INFERLOOP_TRITON__GRPC_PORT=str(ports[3]),
        INFERLOOP_TRITON__METRICS_PORT=str(ports[4]),
        **extra,
    )


def inferloop(env: dict[str, str], *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the ``inferloop`` CLI as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=timeout_s
    )


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: str, interval_s: float = 0.25) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def settings_from_env(env: dict[str, str]) -> LocalSettings:
    """The settings a process started with ``env`` would read (``INFERLOOP_A__B=v`` → ``a.b = v``)."""
    nested: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith("INFERLOOP_"):
            continue
        *groups, field = key.removeprefix("INFERLOOP_").lower().split("__")
        target = nested
        for group in groups:
            target = target.setdefault(group, {})
        target[field] = json.loads(value) if value.startswith(("[", "{")) else value  # as pydantic-settings does
    return LocalSettings(**nested)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Certificates:
    """A test CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed by it."""

    ca: Path
    server_cert: Path
    server_key: Path
    server_keystore: Path  # key and certificate in one PEM (Kafka's PEM keystore)
    client_cert: Path
    client_key: Path


def make_certificates(folder: Path) -> Certificates:
    """A CA made for one test (openssl), and certificates it signed."""
    folder.mkdir(parents=True, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=inferloop test CA", cwd=folder)  # fmt: skip
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=inferloop client")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subject, cwd=folder)  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)  # fmt: skip
    keystore = folder / "server-keystore.pem"
    keystore.write_text((folder / "server.key").read_text() + (folder / "server.pem").read_text())
    return Certificates(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        server_keystore=keystore,
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
