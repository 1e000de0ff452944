from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streams.images import InputSpec
from trainer.card import Lineage, Metrics, ModelCard
from trainer.data import load_dataset, split_holdout
from trainer.errors import ExportParityError
from trainer.evaluate import accuracy, gate
from trainer.export import ONNX_FILE, check_parity, load_weights, sha256_file, write_artifact
from trainer.train import FitConfig, fit, new_model, predict_proba

SPEC = InputSpec()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, object]:
    data = load_dataset("digits", SPEC)
    train, holdout = split_holdout(data, 0.2)
    model = fit(new_model(SPEC, 10, seed=0), train.take(np.arange(600)), FitConfig(epochs=4))
    card = ModelCard(
        model_name="digits",
        candidate_id="c-test",
        created_at="2026-01-01T00:00:00+00:00",
        parent=None,
        classes=list(data.classes),
        input_spec={"channels": 1, "height": 28, "width": 28},
        lineage=Lineage(base_dataset="sklearn-digits", base_examples=list(train.ids[:600])),
        metrics=Metrics(holdout_accuracy=0.0, holdout_examples=0),
        fit={},
        training_seconds=1.0,
    )
    folder = tmp_path_factory.mktemp("artifact")
    write_artifact(model, card, folder, holdout.x[:32])
    return folder, model, holdout


def test_artifact_holds_what_a_version_needs(trained: tuple[Path, object, object]) -> None:
    folder, _, _ = trained
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.py", "model_card.json", "weights.pt"]
    card = ModelCard.read(folder)
    assert card.artifact_sha256 == sha256_file(folder / ONNX_FILE)
    assert card.lineage.base_examples[0].startswith("sklearn-digits:")


def test_exported_model_matches_pytorch(trained: tuple[Path, object, object]) -> None:
    folder, model, holdout = trained
    diff = check_parity(model, folder / ONNX_FILE, holdout.x)  # type: ignore[arg-type, attr-defined]
    assert diff < 1e-4
    reloaded = load_weights(folder, SPEC, 10)
    np.testing.assert_allclose(predict_proba(reloaded, holdout.x[:8]), predict_proba(model, holdout.x[:8]), atol=1e-6)  # type: ignore[arg-type, attr-defined]


def test_parity_check_catches_a_diverging_export(trained: tuple[Path, object, object]) -> None:
    folder, _, holdout = trained
    changed = load_weights(folder, SPEC, 10)
    with torch.no_grad():
        changed.head[-1].bias.add_(5.0 * torch.arange(10, dtype=torch.float32))
    with pytest.raises(ExportParityError):
        check_parity(changed, folder / ONNX_FILE, holdout.x[:16])  # type: ignore[attr-defined]


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
