from __future__ import annotations

from pathlib import Path

from trainer.card import Metrics
from trainer.evaluate import accuracy, gate


def test_accuracy_of_the_artifact(trained: tuple[Path, object, object]) -> None:
    folder, _, holdout = trained
    value = accuracy(folder, holdout)  # type: ignore[arg-type]
    assert value is not None and 0.5 < value <= 1.0


def test_gate_accepts_within_tolerance_and_names_what_failed() -> None:
    serving = Metrics(holdout_accuracy=0.98, holdout_examples=300, feedback_accuracy=0.40, feedback_examples=50)
    better = Metrics(holdout_accuracy=0.975, holdout_examples=300, feedback_accuracy=0.90, feedback_examples=50)
    assert gate(better, serving, tolerance=0.01).accepted
    worse = Metrics(holdout_accuracy=0.90, holdout_examples=300, feedback_accuracy=0.95, feedback_examples=50)
    decision = gate(worse, serving, tolerance=0.01)
    assert not decision.accepted
    assert len(decision.reasons) == 1 and "fixed holdout accuracy 0.9000" in decision.reasons[0]
    forgetful = Metrics(holdout_accuracy=0.99, holdout_examples=300, feedback_accuracy=0.30, feedback_examples=50)
    assert "feedback holdout" in gate(forgetful, serving, tolerance=0.05).reasons[0]
