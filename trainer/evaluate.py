"""Evaluating candidate and serving model on the same holdouts, and the gates a candidate must pass.

Two gates: against the serving version on the fixed and the feedback holdouts (:func:`gate`), and against the
best version ever served on the trusted holdout (:func:`trusted_gate`), which feedback cannot change: the
dataset's own holdout split, or a labelled folder the operator names (``trainer.trusted_holdout``). The second
keeps a run of candidates, each a little worse than the last, from ratcheting the model down.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.card import Metrics
from trainer.data import ExampleSet
from trainer.export import ONNX_FILE
from trainer.onnx_inference import onnx_proba


def accuracy(artifact_dir: Path, examples: ExampleSet) -> float | None:
    """Top-1 accuracy of the exported model in ``artifact_dir`` (what Triton serves); None without examples."""
    if len(examples) == 0:
        return None
    predicted = onnx_proba(artifact_dir / ONNX_FILE, examples.x).argmax(axis=1)
    return float(np.mean(predicted == examples.y))


def measure(artifact_dir: Path, holdout: ExampleSet, feedback_holdout: ExampleSet) -> Metrics:
    holdout_accuracy = accuracy(artifact_dir, holdout)
    if holdout_accuracy is None:
        raise ValueError("the fixed holdout is empty")
    return Metrics(
        holdout_accuracy=holdout_accuracy,
        holdout_examples=len(holdout),
        feedback_accuracy=accuracy(artifact_dir, feedback_holdout),
        feedback_examples=len(feedback_holdout),
    )


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    reasons: list[str]


def gate(candidate: Metrics, serving: Metrics, tolerance: float) -> GateDecision:
    """Accept unless the candidate is worse than the serving model by more than ``tolerance`` on a holdout."""
    reasons = []
    pairs = [("fixed holdout", candidate.holdout_accuracy, serving.holdout_accuracy)]
    if candidate.feedback_accuracy is not None and serving.feedback_accuracy is not None:
        pairs.append(("feedback holdout", candidate.feedback_accuracy, serving.feedback_accuracy))
    for name, cand, serv in pairs:
        if cand < serv - tolerance:
            reasons.append(
                f"{name} accuracy {cand:.4f} is below the serving model's {serv:.4f} by more than {tolerance:g}"
            )
    return GateDecision(accepted=not reasons, reasons=reasons)


@dataclass(frozen=True)
class TrustedGate:
    """The candidate against the best version ever served, on the trusted holdout."""

    candidate_accuracy: float
    best_version: int | None
    best_accuracy: float | None
    tolerance: float
    floor: float
    examples: int
    source: str

    def reasons(self) -> list[str]:
        reasons = []
        if self.candidate_accuracy < self.floor:
            reasons.append(f"trusted-holdout accuracy {self.candidate_accuracy:.4f} is below the floor {self.floor:g}")
        if self.best_accuracy is not None and self.candidate_accuracy < self.best_accuracy - self.tolerance:
            reasons.append(
                f"trusted-holdout accuracy {self.candidate_accuracy:.4f} is below the best version ever served "
                f"(v{self.best_version}: {self.best_accuracy:.4f}) by more than {self.tolerance:g}"
            )
        return reasons

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accepted": not self.reasons()}


def trusted_gate(
    candidate_dir: Path,
    served: dict[int, Path],
    trusted: ExampleSet,
    tolerance: float,
    floor: float,
    source: str,
    recorded: dict[int, float] | None = None,
) -> TrustedGate:
    """Measure the candidate and every version ever served that is on disk (``served``: version -> its folder)
    on ``trusted``; ``recorded``: accuracies on the same holdout recorded when versions were promoted (those
    pruned since count too)."""
    candidate = accuracy(candidate_dir, trusted)
    if candidate is None:
        raise ValueError("the trusted holdout is empty")
    measured: dict[int, float | None] = {**(recorded or {})}
    measured |= {v: accuracy(folder, trusted) for v, folder in served.items()}
    best = max(((a, v) for v, a in measured.items() if a is not None), default=None)
    return TrustedGate(
        candidate_accuracy=round(candidate, 6),
        best_version=best[1] if best else None,
        best_accuracy=round(best[0], 6) if best else None,
        tolerance=tolerance,
        floor=floor,
        examples=len(trusted),
        source=source,
    )
