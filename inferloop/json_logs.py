"""The JSON log formatter (``INFERLOOP_LOG_FORMAT=json``), on python-json-logger.

A module of its own so that only a process that asks for JSON lines imports python-json-logger: it is the
``json-logs`` extra (the worker and trainer extras include it), not part of the light client. :mod:`inferloop.logs`
imports this module when the JSON format is first used and says which extra to install when it cannot.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from inferloop.redact import mask

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
