"""Rollback and promotion, as the CLI asks for them: one call each, wired from the settings."""

from __future__ import annotations

import logging

from inferloop.settings import Settings
from inferloop.triton.control import triton_control
from trainer.jobs.context import EventFn, publisher

log = logging.getLogger(__name__)


def rollback(settings: Settings, to: int | None = None, on_event: EventFn = log.info) -> int:
    """Serve an earlier version of the settings' model again (``to``, or the one that served before)."""
    return publisher(settings, triton_control(settings)).rollback(to, on_event=on_event)


def promote(settings: Settings, version: int, on_event: EventFn = log.info) -> int:
    """Announce a verified ``version`` of the settings' model as serving (an operator's decision)."""
    return publisher(settings, triton_control(settings)).promote(version, reason="operator", on_event=on_event)
