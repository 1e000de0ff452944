from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inferloop.images.preprocess import InputSpec
from trainer.card import ModelCard
from trainer.errors import ExportParityError
from trainer.export import ONNX_FILE, check_parity, load_weights, sha256_file
from trainer.train import predict_proba

SPEC = InputSpec()


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
