from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

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


def _worse_copy(folder: Path, model: object, destination: Path) -> Path:
    """The artifact with its output rows rolled by one: it answers the next class, a much worse model."""
    import copy

    import torch

    from trainer.card import ModelCard
    from trainer.export import write_artifact

    worse = copy.deepcopy(model)
    last = [m for m in worse.modules() if isinstance(m, torch.nn.Linear)][-1]  # type: ignore[attr-defined]
    with torch.no_grad():
        last.weight.copy_(torch.roll(last.weight, 1, dims=0))
        last.bias.copy_(torch.roll(last.bias, 1, dims=0))
    card = ModelCard.read(folder)
    write_artifact(worse, card, destination, np.zeros((4, 1, 28, 28), np.float32))  # type: ignore[arg-type]
    return destination


def test_the_trusted_gate_compares_with_the_best_version_ever_served_measured_or_recorded(
    trained: tuple[Path, object, object], tmp_path: Path
) -> None:
    folder, model, holdout = trained
    worse = _worse_copy(folder, model, tmp_path / "worse")
    # the best of the versions served is the good one (v1), whatever served last (v2, the worse one)
    against_best = trusted_gate(worse, {1: folder, 2: worse}, holdout, 0.01, 0.0, "holdout")  # type: ignore[arg-type]
    assert against_best.best_version == 1 and against_best.reasons()
    assert against_best.candidate_accuracy < 0.3 < (against_best.best_accuracy or 0)
    # v1 pruned from disk: its accuracy recorded at promotion still counts
    pruned = trusted_gate(worse, {2: worse}, holdout, 0.01, 0.0, "holdout", recorded={1: 0.97})  # type: ignore[arg-type]
    assert pruned.best_version == 1 and pruned.best_accuracy == 0.97 and pruned.reasons()
    good = trusted_gate(folder, {2: worse}, holdout, 0.01, 0.5, "holdout")  # type: ignore[arg-type]
    assert good.best_version == 2 and good.reasons() == []
