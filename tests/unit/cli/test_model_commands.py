from __future__ import annotations

import pytest
import typer

from cli.model_commands import parse_duration


def test_cli_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("2h") == 7200
    for bad in ("soon", "-5m", "0"):
        with pytest.raises(typer.BadParameter):
            parse_duration(bad)
