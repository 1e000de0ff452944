"""How log lines look: text for people (the default), or one JSON object per line for log collectors
(``INFERLOOP_LOG_FORMAT=json``; the chart's default).

Secrets are masked before either format sees a record (:mod:`inferloop.redact` masks each message and its
traceback when the record is made, and the streams both formats write to); the JSON formatter masks the traceback
it renders itself too. The JSON formatter (:mod:`inferloop.json_logs`) needs python-json-logger, the ``json-logs``
extra: it is imported the first time the JSON format is used, so the light client never needs it for text.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

from inferloop.errors import MissingExtra

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def json_formatter() -> logging.Formatter:
    """The JSON formatter (:class:`inferloop.json_logs.JsonLogFormatter`); :class:`MissingExtra` naming the
    ``json-logs`` extra when python-json-logger is not installed."""
    try:
        from inferloop.json_logs import JsonLogFormatter
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("pythonjsonlogger"):
            raise
        raise MissingExtra("INFERLOOP_LOG_FORMAT=json", "json-logs", "python-json-logger") from exc
    return JsonLogFormatter()


def formatter(log_format: LogFormat) -> logging.Formatter:
    return json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def use_log_format(log_format: LogFormat) -> None:
    """Give every handler of the root logger the formatter of ``log_format``."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(log_format))


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any] | None:
    """A ``logging.config.dictConfig`` for a process whose framework configures logging itself (faust's worker):
    one stderr handler in ``log_format`` at ``level``; None for text, which keeps the framework's own format."""
    if log_format != "json":
        return None
    json_formatter()  # MissingExtra now, rather than inside the framework's own logging set-up
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": json_formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


class JsonLineStream:
    """A text stream for what a program prints rather than logs (a command's progress and errors): every line
    written becomes one JSON record of ``logger`` at ``level`` on ``stream``."""

    def __init__(self, stream: TextIO, logger: str, level: int = logging.INFO) -> None:
        self._stream, self._logger, self._level = stream, logger, level
        self._formatter = json_formatter()
        self._pending = ""

    def emit(self, message: str, level: int | None = None) -> None:
        """``message`` as one record, at ``level`` (the stream's by default), whatever the log level."""
        levelno = self._level if level is None else level
        record = logging.makeLogRecord(
            {"name": self._logger, "levelno": levelno, "levelname": logging.getLevelName(levelno), "msg": message}
        )
        self._stream.write(self._formatter.format(record) + "\n")
        self._stream.flush()

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.emit(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self.emit(self._pending.rstrip())
        self._pending = ""
        self._stream.flush()

    def isatty(self) -> bool:
        return False


def log_everything_as_json() -> None:
    """With the JSON format, what would bypass the handlers goes through them too: ``warnings`` and an exception
    nothing caught (its traceback, masked, in ``exc_info``)."""
    logging.captureWarnings(True)

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        logging.getLogger("inferloop").critical("uncaught %s: %s", kind.__name__, exc, exc_info=(kind, exc, tb))

    sys.excepthook = excepthook
