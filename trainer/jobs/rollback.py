"""Rollback and the catalog, as the CLI asks for them: one call each, wired from the settings."""

from __future__ import annotations

import logging
from typing import Any

from inferloop.errors import InferloopError
from inferloop.quality import VersionQuality, read_online_quality
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


def model_catalog(settings: Settings, online: bool = True, on_warning: EventFn = log.warning) -> list[dict[str, Any]]:
    """Every version (serving, retired) and rejected candidate, with online quality from Kafka when ``online``
    (a catalog without it when Kafka cannot be read: ``on_warning`` says why)."""
    rows = ModelRepository(settings.model_repository, settings.model.name).catalog()
    quality: dict[int, VersionQuality] = {}
    if online:
        try:
            quality = read_online_quality(settings, settings.model.name)
        except InferloopError as exc:
            on_warning(f"online quality unavailable: {exc}")
        except Exception as exc:  # Kafka not running: the catalog is still worth showing
            on_warning(f"online quality unavailable (is Kafka up?): {exc}")
    for r in rows:
        q = quality.get(r["version"]) if r["version"] is not None else None
        r["online"] = (
            {"accuracy": q.accuracy, "labelled": q.labelled, "confidence": q.confidence,
             "confidence_drift": q.confidence_drift}
            if q is not None
            else None
        )  # fmt: skip
    return rows
