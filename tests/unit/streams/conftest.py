"""What the streams tests share: ``os._exit`` replaced by a recorder that raises, so that a test sees the exit code
and that nothing after the exit ran."""

from __future__ import annotations

import os

import pytest


class Exited(BaseException):
    """What the recorder raises instead of ending the test process (not an Exception: no handler catches it)."""


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    codes: list[int] = []

    def record(code: int) -> None:
        codes.append(code)
        raise Exited(code)

    monkeypatch.setattr(os, "_exit", record)
    return codes
