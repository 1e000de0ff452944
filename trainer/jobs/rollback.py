"""Rollback, as the CLI asks for it: one call, wired from the settings."""

from __future__ import annotations

import logging

from inferloop.settings import Settings
from inferloop.triton.control import triton_control
from trainer.jobs.context import EventFn, serving_options
from trainer.publish import Publisher
from trainer.repository import ModelRepository

log = logging.getLogger(__name__)


def rollback(settings: Settings, to: int | None = None, on_event: EventFn = log.info) -> int:
    """Serve an earlier version of the settings' model again (``to``, or the one that served before)."""
    repo = ModelRepository(settings.model_repository, settings.model.name)
    publisher = Publisher(repo, triton_control(settings), serving_options(settings))
    return publisher.rollback(to, on_event=on_event)
