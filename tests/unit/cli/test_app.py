"""The command line's conventions that need no server: the version, and settings errors that say what to fix."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from inferloop import __version__


def test_version_is_printed_on_stdout() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"inferloop {__version__}"


def test_the_license_the_package_declares_is_in_the_repository() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["license"]["text"]
    text = (root / "LICENSE").read_text()
    assert declared == "Apache-2.0"
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_bad_settings_name_the_variable_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERLOOP_KAFKA__PORT", "not-a-port")
    result = CliRunner().invoke(app, ["models", "--json", "--no-online"])
    assert result.exit_code == 1
    assert "invalid settings" in result.output and "INFERLOOP_KAFKA__PORT" in result.output
