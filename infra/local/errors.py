"""Errors of the local launchers."""

from __future__ import annotations

from pathlib import Path

from inferloop.errors import InferloopError


class StackError(InferloopError):
    """Root of the local-stack errors."""


class PortInUse(StackError):
    """A port the stack needs is taken by another process."""

    def __init__(self, service: str, host: str, port: int, env_var: str | None) -> None:
        self.service, self.host, self.port, self.env_var = service, host, port, env_var
        hint = f"; set {env_var} to a free port" if env_var else ""
        super().__init__(f"{service}: port {port} on {host} is already in use{hint}")


class RuntimeMissing(StackError):
    """A program or file the launcher needs is not installed."""

    def __init__(self, what: str, hint: str) -> None:
        self.what, self.hint = what, hint
        super().__init__(f"{what} is missing: {hint}")


class ServiceStartFailed(StackError):
    """A server exited or did not become ready in time; carries the tail of its log."""

    def __init__(self, service: str, reason: str, log_path: Path, log_tail: str) -> None:
        self.service, self.reason, self.log_path, self.log_tail = service, reason, log_path, log_tail
        super().__init__(f"{service} did not start: {reason} (log: {log_path})\n--- last lines ---\n{log_tail}")
