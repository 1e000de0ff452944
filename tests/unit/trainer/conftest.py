"""What the trainer's unit tests share: one small model trained on the embedded digits, exported as an artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferloop.images.preprocess import InputSpec
from trainer.card import Lineage, Metrics, ModelCard
from trainer.data import load_dataset, split_holdout
from trainer.export import write_artifact
from trainer.train import FitConfig, fit, new_model

SPEC = InputSpec()


@pytest.fixture(scope="session")
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
        input_spec=SPEC,
        lineage=Lineage(base_dataset="sklearn-digits", base_examples=list(train.ids[:600])),
        metrics=Metrics(holdout_accuracy=0.0, holdout_examples=0),
        fit={},
        training_seconds=1.0,
    )
    folder = tmp_path_factory.mktemp("artifact")
    write_artifact(model, card, folder, holdout.x[:32])
    return folder, model, holdout
