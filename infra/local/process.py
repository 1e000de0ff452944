"""Starting, watching and stopping one local server process.

A :class:`LocalService` knows its command, environment, ports and readiness probe; :func:`start` checks the
ports, spawns it in its own process group with its output in a log file, and waits until it is ready or has
died. :func:`stop` sends SIGTERM to the group, waits, and only then kills.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.local.errors import PortInUse, ServiceStartFailed

POLL_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Port:
    """A port a service listens on, and the setting that chooses it (for error messages)."""

    role: str
    host: str
    port: int
    env_var: str | None = None


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or a note that it does not exist."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(data.splitlines()[-lines:])


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP listener could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def port_accepts(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (for tests)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind((host, 0))
            ports.append(s.getsockname()[1])
        return ports


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` names a live process (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def pid_cmdline(pid: int) -> list[str]:
    """The command line of ``pid``, empty if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


class LocalService(ABC):
    """One server this machine runs: what to execute and how to tell that it is ready."""

    name: str

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path

    @abstractmethod
    def ports(self) -> Sequence[Port]:
        """The ports the server listens on."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argument vector that runs the server in the foreground."""

    def environment(self) -> Mapping[str, str]:
        """Variables added to this process's environment for the server."""
        return {}

    def prepare(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """One-off work before the first start (writing config, formatting storage)."""

    @abstractmethod
    def is_ready(self) -> bool:
        """Whether the server answers as a client needs it to (cheap; called in a loop)."""

    @property
    def start_timeout_s(self) -> float:
        return 120.0

    @property
    def marker(self) -> str:
        """A string in the server's command line that tells its process apart from others."""
        return self.command()[-1]


def check_ports(service: LocalService) -> None:
    """Raise :class:`PortInUse` for the first port of ``service`` that is already taken."""
    for p in service.ports():
        if not port_is_free(p.host, p.port):
            raise PortInUse(f"{service.name} {p.role}", p.host, p.port, p.env_var)


def spawn(service: LocalService) -> subprocess.Popen[bytes]:
    """Start ``service`` in its own process group, its output appended to its log file."""
    service.log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **service.environment()}
    with service.log_path.open("ab") as log:
        log.write(f"\n==== inferloop: starting {service.name} at {time.strftime('%F %T')} ====\n".encode())
        log.flush()
        return subprocess.Popen(
            service.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def wait_ready(service: LocalService, proc: subprocess.Popen[bytes] | None, pid: int) -> None:
    """Wait until ``service`` is ready; raise :class:`ServiceStartFailed` if it dies or times out."""
    deadline = time.monotonic() + service.start_timeout_s
    while time.monotonic() < deadline:
        exited = proc.poll() is not None if proc is not None else not pid_alive(pid)
        if exited:
            code = proc.returncode if proc is not None else "unknown"
            raise ServiceStartFailed(
                service.name, f"the process exited with code {code}", service.log_path, tail(service.log_path)
            )
        if service.is_ready():
            return
        time.sleep(POLL_INTERVAL_S)
    raise ServiceStartFailed(
        service.name,
        f"not ready after {service.start_timeout_s:.0f} s",
        service.log_path,
        tail(service.log_path),
    )


def start(service: LocalService) -> subprocess.Popen[bytes]:
    """Check ports, prepare, spawn and wait for readiness; on failure nothing is left running."""
    check_ports(service)
    service.prepare()
    proc = spawn(service)
    try:
        wait_ready(service, proc, proc.pid)
    except BaseException:
        stop_pid(proc.pid, timeout_s=10.0)
        proc.wait()
        raise
    return proc


def stop_pid(pid: int, timeout_s: float = 30.0) -> bool:
    """SIGTERM the process group led by ``pid`` and wait until the whole group is gone.

    Whatever is still alive after ``timeout_s`` is killed. True if everything stopped by itself.
    """
    if not pid_alive(pid) and not any(group_members(pid)):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid) and not any(group_members(pid)):
            return True
        time.sleep(0.1)
    kill_pid(pid)
    return False


def kill_pid(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` and wait until none of it is left (crash tests, timeouts)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    while pid_alive(pid) or any(group_members(pid)):
        _reap(pid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our child, so that it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_members(pgid: int) -> Iterator[int]:
    """Live processes in process group ``pgid`` (to prove nothing is left behind)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and pid_alive(int(entry.name)):
                yield int(entry.name)
        except (ProcessLookupError, PermissionError):
            continue
