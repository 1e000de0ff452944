from __future__ import annotations

import itertools
from pathlib import Path

from trainer.card import Metrics
from trainer.evaluate import TrustedGate, accuracy, gate, trusted_gate


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


def test_a_chain_of_slightly_worse_candidates_cannot_ratchet_the_model_down() -> None:
    """Each generation 0.019 worse passes the gate against the version it replaces (tolerance 0.02), but never
    the comparison with the best version ever served (0.01): the second one is already refused."""
    accuracies = [0.97 - 0.019 * k for k in range(7)]
    passed_serving_gate = [
        gate(Metrics(a, 300), Metrics(prev, 300), tolerance=0.02).accepted for prev, a in itertools.pairwise(accuracies)
    ]
    assert all(passed_serving_gate), "the old gate lets the whole chain through"
    best = TrustedGate(accuracies[1], 1, accuracies[0], tolerance=0.01, floor=0.5, examples=300, source="holdout")
    assert best.reasons() and "best version ever served (v1: 0.9700)" in best.reasons()[0]
    within = TrustedGate(0.962, 1, 0.97, tolerance=0.01, floor=0.5, examples=300, source="holdout")
    assert within.reasons() == [] and within.as_dict()["accepted"] is True
    assert "below the floor" in TrustedGate(0.4, None, None, 0.01, 0.5, 300, "holdout").reasons()[0]


def test_the_trusted_gate_measures_the_candidate_and_every_version_served(
    trained: tuple[Path, object, object],
) -> None:
    folder, _, holdout = trained
    measured = trusted_gate(folder, {1: folder, 2: folder}, holdout, 0.01, 0.5, "the dataset's fixed holdout")  # type: ignore[arg-type]
    assert measured.best_accuracy == measured.candidate_accuracy and measured.best_version in (1, 2)
    assert measured.examples == len(holdout) and measured.reasons() == []  # type: ignore[arg-type]
