"""Bootstrap: version 1 of the model, trained from scratch on the configured dataset, evaluated and published."""

from __future__ import annotations

import shutil
import time

from trainer.card import Lineage
from trainer.data import ExampleSet, load_dataset, split_holdout
from trainer.errors import RepositoryError
from trainer.evaluate import measure
from trainer.jobs.context import TrainerJobs, TrainOutcome, dataset_name
from trainer.train import fit, new_model


def bootstrap(jobs: TrainerJobs, again: bool = False) -> TrainOutcome:
    """Train version 1 from scratch on the configured dataset and publish it.

    ``again``: train from scratch even though versions exist (published as the next version).
    """
    jobs.require_services()
    repo = jobs.repo
    registry = repo.read_registry()
    if not again and registry.promoted is not None:
        raise RepositoryError(f"{repo.name} already has versions {repo.versions()}; use `inferloop train` to retrain")
    if registry.promoted is None and repo.versions():  # a first publish died before its promotion
        jobs.on_event(f"{repo.name} has versions {repo.versions()} but none serves: training one from scratch again")
    t, spec = jobs.settings.trainer, jobs.spec
    jobs.on_event(f"loading dataset {t.dataset!r}")
    data = load_dataset(t.dataset, spec)
    train, holdout = split_holdout(data, t.holdout_fraction)
    jobs.on_event(f"training from scratch on {len(train)} examples, {len(holdout)} held out")
    fit_cfg = jobs.fit_config(t.bootstrap_epochs, t.learning_rate)
    began = time.monotonic()
    model = fit(new_model(spec, len(data.classes), t.seed), train, fit_cfg, jobs.on_epoch)
    lineage = Lineage(base_dataset=dataset_name(t.dataset), base_examples=list(train.ids))
    card = jobs.new_card(None, spec, data.classes, lineage, fit_cfg)
    card.training_seconds = round(time.monotonic() - began, 2)
    folder = jobs.write_candidate(model, card, holdout.x[:64])
    card.metrics = measure(folder, holdout, ExampleSet.empty(spec, data.classes))
    jobs.write_card(card, folder)
    jobs.on_event(f"holdout accuracy {card.metrics.holdout_accuracy:.4f}")
    # trained from scratch on the dataset by an operator's explicit command: promoted once verified, no shadow
    version = jobs.publisher.publish(folder, card, jobs.on_event, shadow=False)
    shutil.rmtree(folder, ignore_errors=True)
    return TrainOutcome(version, repo.card(version), None)
