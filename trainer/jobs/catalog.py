"""The catalog of a model's versions, as ``inferloop models`` shows it: the repository's record, with online quality."""

from __future__ import annotations

import logging
from typing import Any

from inferloop.errors import InferloopError
from inferloop.quality import VersionQuality, read_online_quality
from inferloop.settings import Settings
from trainer.jobs.context import EventFn
from trainer.repository import ModelRepository

log = logging.getLogger(__name__)


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
