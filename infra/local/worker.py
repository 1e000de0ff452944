"""The streaming worker and the feedback joiner as local processes (``inferloop worker`` / ``inferloop joiner``),
for tests, the bench and the demo."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.local.process import LocalService, Port
from infra.local.triton_server import http_ok


class WorkerProcess(LocalService):
    """An ``inferloop worker`` configured by ``env`` (``INFERLOOP_*`` variables); ready when /metrics answers."""

    name = "worker"
    metrics_env = "INFERLOOP_STREAMS__METRICS_PORT"

    def __init__(
        self,
        env: Mapping[str, str],
        metrics_port: int,
        log_path: Path,
        start_timeout_s: float = 90.0,
        log_level: str = "WARNING",
    ) -> None:
        super().__init__(log_path)
        self.env = {**env, self.metrics_env: str(metrics_port)}
        self.log_level = log_level
        self.metrics_port = metrics_port
        self._start_timeout_s = start_timeout_s

    @property
    def start_timeout_s(self) -> float:
        return self._start_timeout_s

    @property
    def marker(self) -> str:
        return f"--metrics-marker={self.metrics_port}"

    def ports(self) -> Sequence[Port]:
        return [Port("metrics", "127.0.0.1", self.metrics_port, self.metrics_env)]

    def command(self) -> list[str]:
        # The marker is an inert argument that tells this worker's process apart (see LocalService.marker).
        return [sys.executable, "-c", "import sys; from cli.main import main; sys.argv[1:2] = []; main()",
                self.marker, self.name, "--log-level", self.log_level]  # fmt: skip

    def environment(self) -> Mapping[str, str]:
        return {**self.env, "PYTHONUNBUFFERED": "1", "PATH": os.environ.get("PATH", "")}

    def is_ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.metrics_port}/metrics")


class JoinerProcess(WorkerProcess):
    """An ``inferloop joiner`` configured by ``env``; ready when its /metrics answers."""

    name = "joiner"
    metrics_env = "INFERLOOP_FEEDBACK__METRICS_PORT"


class TrainerProcess(LocalService):
    """An ``inferloop trainer --every ...`` loop configured by ``env``; ready as soon as it runs."""

    name = "trainer"

    def __init__(self, env: Mapping[str, str], log_path: Path, every: str = "2s") -> None:
        super().__init__(log_path)
        self.env, self.every = dict(env), every

    def ports(self) -> Sequence[Port]:
        return []

    def command(self) -> list[str]:
        return [sys.executable, "-m", "cli", "trainer", "--every", self.every]

    def environment(self) -> Mapping[str, str]:
        return {**self.env, "PYTHONUNBUFFERED": "1", "PATH": os.environ.get("PATH", "")}

    def is_ready(self) -> bool:
        return True
