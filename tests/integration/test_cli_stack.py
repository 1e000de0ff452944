"""``inferloop up``, ``status --json`` and ``down`` end to end, as a user runs them."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from infra.local.process import free_ports, group_members, pid_alive
from infra.local.settings import LocalSettings
from tests.helpers import inferloop

pytestmark = pytest.mark.integration


def _env(home: Path, cache_dir: Path, ports: list[int]) -> dict[str, str]:
    kafka, controller, http, grpc, metrics = ports
    return {
        **os.environ,
        "INFERLOOP_HOME": str(home),
        "INFERLOOP_CACHE_DIR": str(cache_dir),
        "INFERLOOP_KAFKA__PORT": str(kafka),
        "INFERLOOP_KAFKA__CONTROLLER_PORT": str(controller),
        "INFERLOOP_TRITON__HTTP_PORT": str(http),
        "INFERLOOP_TRITON__GRPC_PORT": str(grpc),
        "INFERLOOP_TRITON__METRICS_PORT": str(metrics),
        "COLUMNS": "200",
    }


@pytest.fixture
def stack_env(tmp_path: Path, base_settings: LocalSettings) -> dict[str, str]:
    env = _env(tmp_path / "home", base_settings.cache_dir, free_ports(5))
    yield env
    inferloop(env, "down")  # whatever a failing test left behind


def test_up_status_down(stack_env: dict[str, str]) -> None:
    up = inferloop(stack_env, "up")
    assert up.returncode == 0, up.stderr

    status = inferloop(stack_env, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert set(report) == {"kafka", "triton"}
    for name, component in report.items():
        assert component["running"] and component["ready"], (name, component)
    assert report["kafka"]["address"] == f"127.0.0.1:{stack_env['INFERLOOP_KAFKA__PORT']}"
    assert report["triton"]["address"] == f"127.0.0.1:{stack_env['INFERLOOP_TRITON__GRPC_PORT']}"
    pids = {name: component["pid"] for name, component in report.items()}

    # The state folder records what was started, with logs that the servers really wrote.
    home = Path(stack_env["INFERLOOP_HOME"])
    state = json.loads((home / "stack.json").read_text())
    assert {n: c["pid"] for n, c in state["components"].items()} == pids
    assert "Kafka Server started" in (home / "logs" / "kafka.log").read_text()
    assert "Started GRPCInferenceService" in (home / "logs" / "triton.log").read_text()

    again = inferloop(stack_env, "up")  # idempotent: nothing new is started
    assert again.returncode == 0 and "already running" in again.stderr
    table = inferloop(stack_env, "status")  # tables go to stdout, so that `inferloop status | grep` works
    assert table.returncode == 0 and "inferloop local stack" in table.stdout and "kafka" in table.stdout
    assert "inferloop local stack" not in table.stderr
    assert {n: c["pid"] for n, c in json.loads(inferloop(stack_env, "status", "--json").stdout).items()} == pids

    down = inferloop(stack_env, "down")
    assert down.returncode == 0, down.stderr
    for pid in pids.values():
        assert not pid_alive(pid)
        assert not list(group_members(pid)), "a child process of a server was left behind"

    after = inferloop(stack_env, "status", "--json")
    assert after.returncode == 3
    assert all(not c["running"] and not c["ready"] for c in json.loads(after.stdout).values())


def test_port_in_use_names_the_port_and_the_variable(stack_env: dict[str, str]) -> None:
    port = int(stack_env["INFERLOOP_TRITON__GRPC_PORT"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        up = inferloop(stack_env, "up")
    assert up.returncode == 1
    message = " ".join(up.stderr.split())
    assert f"port {port}" in message
    assert "INFERLOOP_TRITON__GRPC_PORT" in message
    # Kafka had started before Triton's port check failed: it was stopped again.
    state = json.loads((Path(stack_env["INFERLOOP_HOME"]) / "stack.json").read_text())
    assert state["components"] == {}
    status = json.loads(inferloop(stack_env, "status", "--json").stdout)
    assert not status["kafka"]["running"] and not status["kafka"]["ready"]


def test_invalid_setting_is_a_clear_error(stack_env: dict[str, str]) -> None:
    result = inferloop({**stack_env, "INFERLOOP_KAFKA__PORT": "not-a-port"}, "status")
    assert result.returncode == 1
    assert "invalid settings: INFERLOOP_KAFKA__PORT: Input should be a valid integer" in result.stderr
