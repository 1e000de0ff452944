"""Secrets never reach an output: log records, exception text and tracebacks, and whatever the process writes to
stdout and stderr are checked for the configured secret values and masked.

Libraries log what they were given: kafka-python, at debug level, logs its whole configuration, SASL password
included. Rather than trusting each library, :func:`redact_secrets` masks every secret value with
``**********``

* in each log record before any handler sees it, whoever configured the handlers (the CLI, Faust's worker): its
  message and arguments, the text of the exception it carries and its stack, formatted here and then cached on
  the record, so a handler's formatter prints the masked text;
* in everything written to ``sys.stdout`` and ``sys.stderr`` from then on (tracebacks of uncaught exceptions,
  error messages, tables), through a thin wrapper around each stream.

Settings errors never show input values in the first place (:func:`inferloop.settings.load_tree`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

MASK = "**********"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary text
_SECRETS: list[str] = []  # longest first: a secret containing another is masked whole


def mask(text: str) -> str:
    """``text`` with every registered secret replaced by :data:`MASK`."""
    if any(v in text for v in _SECRETS):
        for v in _SECRETS:
            text = text.replace(v, MASK)
    return text


def key_file_secrets(paths: Iterable[Path | None]) -> list[str]:
    """The contents of these private-key files as secrets to mask: each line of a PEM body (a key never shows,
    whole or line by line); files that cannot be read give nothing (the settings report them)."""
    found: list[str] = []
    for path in paths:
        if path is None:
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        found += [line.strip() for line in text.splitlines() if len(line.strip()) >= 16 and "-----" not in line]
    return found


def _forms(secret: str) -> set[str]:
    """The secret as it may be printed: as is, inside a Python ``repr`` or a JSON string (escaped), URL-quoted."""
    return {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
            quote(secret, safe="")}  # fmt: skip


def redact_secrets(secrets: Iterable[str | None]) -> None:
    """Mask these values (and their escaped forms) in every log record and in stdout and stderr from now on
    (values shorter than :data:`MIN_SECRET_CHARS` are ignored)."""
    forms = {form for s in secrets if s and len(s) >= MIN_SECRET_CHARS for form in _forms(s)}
    new = forms - set(_SECRETS)
    if not new:
        return
    if not _SECRETS:  # the first secret: install the record factory and the stream wrappers, once
        _install()
    _SECRETS[:] = sorted(new.union(_SECRETS), key=len, reverse=True)


def _install() -> None:
    base = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return record
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, ()  # () and not None: some formatters (mode's) re-apply the args
        if record.exc_info and not record.exc_text:  # formatters print exc_text when it is set
            record.exc_text = mask(formatter.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)
    raw = {id(sys.stdout): MaskedStream(sys.stdout), id(sys.stderr): MaskedStream(sys.stderr)}
    sys.stdout, sys.stderr = raw[id(sys.stdout)], raw[id(sys.stderr)]
    # handlers configured before now (the CLI's, at start) write to the raw streams: point them at the wrappers
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    for handler in (h for logger in loggers for h in logger.handlers):
        if isinstance(handler, logging.StreamHandler) and id(handler.stream) in raw:
            handler.setStream(raw[id(handler.stream)])


class MaskedStream:
    """A text stream that writes through to ``stream`` with every secret masked; anything else is delegated."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
