"""The model card: what every version (and every rejected candidate) says about itself, as JSON."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inferloop import __version__
from inferloop.images.preprocess import InputSpec
from inferloop.triton.signature import ModelSignature

CARD_FILE = "model_card.json"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def code_version() -> str:
    """The package version and, when run from a git checkout, its commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{__version__}+g{commit}" if commit else __version__


@dataclass
class Lineage:
    """Exactly which examples trained this model."""

    base_dataset: str
    base_examples: list[str] = field(default_factory=list)
    new_examples: list[str] = field(default_factory=list)
    replay_examples: list[str] = field(default_factory=list)
    feedback_holdout: list[str] = field(default_factory=list)  # new examples kept out to evaluate on
    reader_cursor: str | None = None  # position of the newest logged example this model saw
    # of new_examples, those labelled on the open feedback topic; and how many more were left out by the cap
    open_examples: list[str] = field(default_factory=list)
    open_left_out: int = 0

    @property
    def all_examples(self) -> list[str]:
        return [*self.base_examples, *self.new_examples, *self.replay_examples]


@dataclass
class Metrics:
    """Accuracy on the fixed holdout and on held-out recent feedback (None when there was none)."""

    holdout_accuracy: float
    holdout_examples: int
    feedback_accuracy: float | None = None
    feedback_examples: int = 0


@dataclass
class ModelCard:
    """Everything known about one trained model."""

    model_name: str
    candidate_id: str
    created_at: str
    parent: int | None
    classes: list[str]
    input_spec: InputSpec
    lineage: Lineage
    metrics: Metrics
    fit: dict[str, Any]
    training_seconds: float
    code_version: str = field(default_factory=code_version)
    version: int | None = None  # set when published
    serving_metrics: Metrics | None = None  # the serving model on the same holdouts, when there was one
    artifact_sha256: str | None = None
    trusted_gate: dict[str, Any] | None = None  # the comparison with the best version ever served (trainer.evaluate)
    shadow_evidence: dict[str, Any] | None = None  # live labels behind its promotion or rejection (the promoter)

    def signature(self, max_batch_size: int) -> ModelSignature:
        """What this model takes and answers when Triton serves it with ``max_batch_size``."""
        return ModelSignature.classifier(self.model_name, self.input_spec.shape, tuple(self.classes), max_batch_size)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def write(self, folder: Path) -> Path:
        path = folder / CARD_FILE
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelCard:
        raw = dict(raw)
        raw["input_spec"] = InputSpec(**raw["input_spec"])
        raw["lineage"] = Lineage(**raw["lineage"])
        raw["metrics"] = Metrics(**raw["metrics"])
        if raw.get("serving_metrics") is not None:
            raw["serving_metrics"] = Metrics(**raw["serving_metrics"])
        return cls(**raw)

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        return cls.from_dict(json.loads((folder / CARD_FILE).read_text()))
