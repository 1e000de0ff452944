from __future__ import annotations

import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from infra.local.errors import PortInUse, ServiceStartFailed
from infra.local.process import (
    LocalService,
    Port,
    check_ports,
    free_ports,
    group_members,
    pid_alive,
    port_is_free,
    start,
    stop_pid,
    tail,
)


class Sleeper(LocalService):
    """A stand-in server: a Python process (with a child) that becomes 'ready' when it writes a file."""

    name = "sleeper"

    def __init__(self, tmp: Path, *, crash: bool = False, ignore_term: bool = False, timeout_s: float = 10) -> None:
        super().__init__(tmp / "sleeper.log")
        self.ready_file = tmp / "ready"
        self.crash, self.ignore_term, self.timeout_s = crash, ignore_term, timeout_s
        self.port = free_ports(1)[0]

    @property
    def start_timeout_s(self) -> float:
        return self.timeout_s

    def ports(self) -> Sequence[Port]:
        return [Port("main", "127.0.0.1", self.port, "INFERLOOP_SLEEPER_PORT")]

    def command(self) -> list[str]:
        code = "import signal, subprocess, sys, time, pathlib\n"
        if self.crash:
            code += "print('boom: cannot start', flush=True); sys.exit(7)\n"
        if self.ignore_term:
            code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        code += (
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
            f"pathlib.Path({str(self.ready_file)!r}).write_text('ok')\n"
            "time.sleep(300)\n"
        )
        return [sys.executable, "-c", code]

    def is_ready(self) -> bool:
        return self.ready_file.exists()


def test_port_in_use_is_detected() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
    assert port_is_free("127.0.0.1", port)


def test_check_ports_names_the_variable(tmp_path: Path) -> None:
    service = Sleeper(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", service.port))
        s.listen()
        with pytest.raises(PortInUse, match="INFERLOOP_SLEEPER_PORT") as info:
            check_ports(service)
    assert info.value.port == service.port


def test_start_waits_for_ready_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    proc = start(Sleeper(tmp_path))
    assert pid_alive(proc.pid)
    assert len(list(group_members(proc.pid))) == 2  # the server and its child
    assert stop_pid(proc.pid, timeout_s=10)
    assert not list(group_members(proc.pid))


def test_a_server_that_exits_fails_with_its_log(tmp_path: Path) -> None:
    with pytest.raises(ServiceStartFailed, match="exited with code 7") as info:
        start(Sleeper(tmp_path, crash=True))
    assert "boom: cannot start" in info.value.log_tail


def test_a_server_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    proc = start(Sleeper(tmp_path, ignore_term=True))
    assert stop_pid(proc.pid, timeout_s=1) is False
    assert not pid_alive(proc.pid)
    assert not list(group_members(proc.pid))


def test_tail_reads_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3).splitlines() == ["line 97", "line 98", "line 99"]
    assert "no log" in tail(tmp_path / "missing.log")
