"""INFERLOOP_LOG_FORMAT=json: one JSON object per line, secrets masked in messages and tracebacks alike."""

from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys

import pytest

from cli.app import events_log
from inferloop.json_logs import JsonLogFormatter
from inferloop.logs import logging_config
from inferloop.redact import redact_secrets
from inferloop.settings import Settings


def _record(message: str, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("inferloop.test").makeRecord(
        "inferloop.test", logging.ERROR, __file__, 1, message, (), (type(exc), exc, None) if exc else None, extra=extra
    )
    return record


def test_a_record_becomes_one_json_object_with_the_usual_fields() -> None:
    line = JsonLogFormatter().format(_record("three events dead-lettered", batch=7))
    assert "\n" not in line
    record = json.loads(line)
    assert record["level"] == "ERROR" and record["logger"] == "inferloop.test"
    assert record["message"] == "three events dead-lettered" and record["batch"] == 7
    assert record["time"].endswith("Z") and record["time"][10] == "T"
    assert isinstance(record["pid"], int)


def test_secrets_are_masked_in_the_message_and_the_traceback() -> None:
    secret = "hunter2-json-secret"  # noqa: S105 - a test value
    redact_secrets([secret])
    try:
        raise RuntimeError(f"password was {secret}")
    except RuntimeError as exc:
        line = JsonLogFormatter().format(_record(f"login with {secret} failed", exc))
    assert secret not in line
    record = json.loads(line)
    assert "RuntimeError: password was" in record["exc_info"] and "***" in record["exc_info"]


def test_a_framework_configured_by_dict_logs_json_lines() -> None:
    """What faust's worker is given (``run_app``): a fresh process whose every line parses."""
    assert logging_config("INFO", "text") is None  # text keeps faust's own format
    program = (
        "import logging, logging.config; from inferloop.logs import logging_config\n"
        "logging.config.dictConfig(logging_config('INFO', 'json'))\n"
        "logging.getLogger('faust.x').info('started %d', 3)\n"
        "logging.getLogger('faust.x').debug('hidden')\n"
        "try:\n    1/0\nexcept ZeroDivisionError:\n    logging.getLogger('y').exception('boom')\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(r["logger"], r["message"]) for r in records] == [("faust.x", "started 3"), ("y", "boom")]
    assert "ZeroDivisionError" in records[1]["exc_info"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_long_running_commands_report_in_the_log_format(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emit = events_log(Settings(log_format=log_format), "inferloop.trainer")  # type: ignore[arg-type]
    emit("retrained: version 3 in shadow")
    err = capsys.readouterr().err
    if log_format == "json":
        record = json.loads(err)
        assert (record["logger"], record["level"], record["message"]) == (
            "inferloop.trainer", "INFO", "retrained: version 3 in shadow"
        )  # fmt: skip
    else:
        assert "retrained: version 3 in shadow" in err
        with pytest.raises(json.JSONDecodeError):
            json.loads(err)


def test_printed_lines_become_records_too() -> None:
    """A command's progress and errors (rich's console on stderr) in JSON mode: one record per line written."""
    import io

    from inferloop.logs import JsonLineStream

    sink = io.StringIO()
    stream = JsonLineStream(sink, "inferloop.cli")
    stream.write("published 3 events\ntrain")
    stream.write("ing version 2\n\n")
    stream.emit("error: no such file", logging.ERROR)
    stream.write("unfinished")
    stream.flush()
    records = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [(r["level"], r["message"]) for r in records] == [
        ("INFO", "published 3 events"), ("INFO", "training version 2"), ("ERROR", "error: no such file"),
        ("INFO", "unfinished"),
    ]  # fmt: skip


def test_warnings_and_uncaught_exceptions_are_records_in_json_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import warnings

    from inferloop.logs import log_everything_as_json, use_log_format

    sink = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(sink)
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    try:
        use_log_format("json")
        log_everything_as_json()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("an old API", DeprecationWarning, stacklevel=1)
        try:
            raise RuntimeError("boom")
        except RuntimeError as exc:
            sys.excepthook(RuntimeError, exc, exc.__traceback__)
    finally:
        logging.captureWarnings(False)
    records = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [(r["logger"], r["level"]) for r in records] == [("py.warnings", "WARNING"), ("inferloop", "CRITICAL")]
    assert "an old API" in records[0]["message"]
    assert records[1]["message"] == "uncaught RuntimeError: boom" and "RuntimeError: boom" in records[1]["exc_info"]


def test_a_command_that_fails_says_why_in_one_json_record(tmp_path: object) -> None:
    """The CLI's error exit, as a pod's log collector reads it (a real process: its stderr, whole)."""
    import os
    from pathlib import Path

    env = {**os.environ, "INFERLOOP_LOG_FORMAT": "json", "INFERLOOP_HOME": str(tmp_path)}
    inferloop = Path(sys.executable).parent / "inferloop"
    result = subprocess.run(
        [str(inferloop), "produce", str(Path(str(tmp_path)) / "missing")], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    (record,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert record["level"] == "ERROR" and record["logger"] == "inferloop.cli"
    assert record["message"].startswith("error: ") and "missing" in record["message"]


def test_a_long_event_with_a_secret_is_one_masked_record(tmp_path: object) -> None:
    """rich's ``log`` would wrap a long line at 80 columns, splitting it (and a secret in it) over records: in JSON
    mode each event is one record, and the whole secret is there to be masked."""
    import os

    secret = "k" * 40 + "-a-long-sasl-password"
    program = (
        "import sys; from inferloop.redact import redact_secrets; from cli.app import load, err\n"
        f"redact_secrets([{secret!r}]); load()\n"
        f"err.log('the broker refused ' + 'x' * 60 + ' with {secret} in the request')\n"
    )
    env = {**os.environ, "INFERLOOP_LOG_FORMAT": "json", "INFERLOOP_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert record["message"].startswith("the broker refused ") and record["message"].endswith(" in the request")
    assert secret not in result.stderr and "***" in record["message"]
