"""Secrets never reach a log: every log record is checked for the configured secret values and masked.

Libraries log what they were given: kafka-python, at debug level, logs its whole configuration, SASL password
included. Rather than trusting each library, :func:`redact_secrets` installs a log-record factory that replaces
any secret value in a record's formatted message (and its arguments) with ``**********`` before any handler
sees it, whoever configured the handlers (the CLI, Faust's worker).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

MASK = "**********"
_SECRETS: list[str] = []  # longest first: a secret containing another is masked whole


def redact_secrets(secrets: Iterable[str | None]) -> None:
    """Mask these values in every log record from now on (values shorter than 4 characters are ignored)."""
    new = {s for s in secrets if s and len(s) >= 4} - set(_SECRETS)
    if not new:
        return
    if not _SECRETS:  # the first secret: install the factory, once
        base = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = base(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a malformed record: leave it to the handler to report
                return record
            if any(v in message for v in _SECRETS):
                for v in _SECRETS:
                    message = message.replace(v, MASK)
                record.msg, record.args = message, None
            return record

        logging.setLogRecordFactory(factory)
    _SECRETS[:] = sorted(new.union(_SECRETS), key=len, reverse=True)
