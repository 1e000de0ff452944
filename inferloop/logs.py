"""How log lines look: text for people (the default), or one JSON object per line for log collectors
(``INFERLOOP_LOG_FORMAT=json``; the chart's default).

Secrets are masked before either format sees a record (:mod:`inferloop.redact` masks each message and its
traceback when the record is made, and the streams both formats write to); the JSON formatter masks the traceback
it renders itself too.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

from inferloop.redact import mask

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# the record's fields a JSON line carries, renamed to what collectors expect; `extra=` fields are added as keys
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}


class JsonLogFormatter(JsonFormatter):
    """One JSON object per record: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``pid``, ``message``, any
    ``extra`` fields, and ``exc_info`` (the masked traceback) when there is one."""

    def __init__(self) -> None:
        super().__init__(JSON_FIELDS, rename_fields=JSON_RENAMES)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(record.created))}.{int(record.msecs):03d}Z"

    def formatException(self, ei: Any) -> str:
        return mask(logging.Formatter.formatException(self, ei))


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonLogFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def use_log_format(log_format: LogFormat) -> None:
    """Give every handler of the root logger the formatter of ``log_format``."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter(log_format))


def logging_config(level: str, log_format: LogFormat) -> dict[str, Any] | None:
    """A ``logging.config.dictConfig`` for a process whose framework configures logging itself (faust's worker):
    one stderr handler in ``log_format`` at ``level``; None for text, which keeps the framework's own format."""
    if log_format != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "json"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }
