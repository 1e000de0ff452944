"""Evaluating candidate and serving model on the same holdouts, and the gate between them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
