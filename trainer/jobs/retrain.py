"""Retraining: fine-tune the serving version on new labels plus replay, gate the candidate, publish if accepted.

Retraining fine-tunes the serving version on the labelled examples logged since it was trained, mixed with a
replay sample of earlier data (the bootstrap dataset's training part and earlier trusted feedback), evaluates
the candidate and the serving model on the same fixed holdout and feedback holdout, and publishes only if the
gate accepts. Labels from the open feedback topic train, at most ``trainer.open_label_share`` of the new examples
fitted on (a deterministic sample beyond that; none without trusted labels, and only trusted labels count
towards ``min_new_labels``), and are never evidence: the feedback holdout and the replay hold trusted labels only. A
rejected candidate is recorded with its reasons; its examples stay unconsumed, so the next run sees them again
with whatever arrived since.
"""

from __future__ import annotations

import shutil
import time

import numpy as np

from trainer.card import Lineage
from trainer.data import ExampleSet, load_dataset, split_holdout
from trainer.errors import CandidateRejected, DatasetError, NoServingVersion, NotEnoughData
from trainer.evaluate import GateDecision, gate, measure, trusted_gate
from trainer.export import load_weights
from trainer.jobs.context import TrainerJobs, TrainOutcome
from trainer.train import fit


def retrain(jobs: TrainerJobs, min_new_labels: int | None = None) -> TrainOutcome:
    """Fine-tune the serving version on new labelled examples plus replay; publish if the gate accepts."""
    t = jobs.settings.trainer
    need = t.min_new_labels if min_new_labels is None else min_new_labels
    jobs.require_services()
    registry = jobs.repo.read_registry()
    if registry.promoted is None:
        raise NoServingVersion(f"{jobs.repo.name} has no serving version: run `inferloop train --bootstrap` first")
    parent = registry.promoted
    parent_card = jobs.repo.card(parent)
    spec, classes = parent_card.input_spec, tuple(parent_card.classes)
    reader = jobs.reader(spec)
    after, until = parent_card.lineage.reader_cursor, reader.cursor()
    new = reader.read(classes, after=after, until=until)
    rng = np.random.default_rng(t.seed + parent)
    new_train, new_holdout, open_train = select_new(
        new, reader.open_ids, t.feedback_holdout_fraction, t.open_label_share, rng
    )
    new_open_count = len(reader.open_ids)  # the ids of this read labelled on the open topic
    trusted_count = len(new_train) + len(new_holdout)  # open labels never count towards min_new_labels
    if trusted_count < need:
        raise NotEnoughData(trusted_count, need)
    skipped = getattr(reader, "skipped", None)
    if skipped:
        jobs.on_event(f"left out of the new examples: {dict(skipped)}")
    earlier, earlier_open_ids = ExampleSet.empty(spec, classes), frozenset[str]()
    if after:
        earlier = reader.read(classes, after=None, until=after)
        earlier_open_ids = reader.open_ids
    earlier = earlier.without(new.ids).without(earlier_open_ids)  # relabelled since: the newer label wins
    earlier_train, earlier_holdout = split_holdout(earlier, t.feedback_holdout_fraction)
    feedback_holdout = ExampleSet.concat([earlier_holdout, new_holdout])  # trusted labels only: evidence

    base = load_dataset(parent_card.lineage.base_dataset, spec)
    base_train, holdout = split_holdout(base, t.holdout_fraction)
    pool = ExampleSet.concat([base_train, earlier_train])  # replay: trusted labels only
    k = min(len(pool), round(t.replay_ratio * (len(new_train) + len(open_train))))
    replay = pool.take(np.sort(rng.choice(len(pool), size=k, replace=False)))
    train = ExampleSet.concat([new_train, open_train, replay])
    jobs.on_event(
        f"fine-tuning version {parent} on {len(new_train)} new trusted + {len(open_train)} open-feedback examples "
        f"({new_open_count - len(open_train)} more left out by trainer.open_label_share {t.open_label_share:g}) "
        f"+ {len(replay)} replayed ({len(feedback_holdout)} feedback and {len(holdout)} fixed holdout examples kept "
        "out)"
    )
    fit_cfg = jobs.fit_config(t.finetune_epochs, t.finetune_learning_rate)
    began = time.monotonic()
    model = fit(load_weights(jobs.repo.version_dir(parent), spec, len(classes)), train, fit_cfg, jobs.on_epoch)
    lineage = Lineage(
        base_dataset=parent_card.lineage.base_dataset,
        new_examples=[*new_train.ids, *open_train.ids],
        replay_examples=list(replay.ids),
        feedback_holdout=list(new_holdout.ids),
        reader_cursor=until,
        open_examples=list(open_train.ids),
        open_left_out=new_open_count - len(open_train),
    )
    card = jobs.new_card(parent, spec, classes, lineage, fit_cfg)
    card.training_seconds = round(time.monotonic() - began, 2)
    folder = jobs.write_candidate(model, card, holdout.x[:64])
    card.metrics = measure(folder, holdout, feedback_holdout)
    card.serving_metrics = measure(jobs.repo.version_dir(parent), holdout, feedback_holdout)
    trusted, source = (
        (holdout, "the dataset's fixed holdout")
        if t.trusted_holdout is None
        else (
            load_dataset(str(t.trusted_holdout), spec),
            str(t.trusted_holdout),
        )
    )
    if trusted.classes != classes:
        raise DatasetError(
            f"the trusted holdout {source} has classes {list(trusted.classes)}, the model {list(classes)}"
        )
    served = [v for v in (registry.promoted, *registry.promoted_before()) if v is not None]
    on_disk = set(jobs.repo.versions())
    recorded = {int(v): float(r["accuracy"]) for v, r in registry.trusted.items() if r.get("source") == source}
    best_ever = trusted_gate(
        folder,
        {v: jobs.repo.version_dir(v) for v in served if v in on_disk},
        trusted,
        t.best_tolerance,
        t.min_trusted_accuracy,
        source,
        recorded,
    )
    card.trusted_gate = best_ever.as_dict()
    jobs.write_card(card, folder)
    decision = gate(card.metrics, card.serving_metrics, t.tolerance)
    decision = GateDecision(not decision.reasons and not best_ever.reasons(), [*decision.reasons, *best_ever.reasons()])
    jobs.on_event(
        f"candidate: holdout {card.metrics.holdout_accuracy:.4f}, feedback {_fmt(card.metrics.feedback_accuracy)}; "
        f"serving v{parent}: holdout {card.serving_metrics.holdout_accuracy:.4f}, "
        f"feedback {_fmt(card.serving_metrics.feedback_accuracy)}; trusted holdout: candidate "
        f"{best_ever.candidate_accuracy:.4f}, best ever v{best_ever.best_version} {_fmt(best_ever.best_accuracy)}"
    )
    if not decision.accepted:
        jobs.record_rejection(card, decision.reasons)
        shutil.rmtree(folder, ignore_errors=True)
        raise CandidateRejected(card.candidate_id, decision.reasons)
    try:  # under the publisher's lock: discarded (StaleParent) if the parent no longer serves
        version = jobs.publisher.publish(folder, card, jobs.on_event)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    status = "in shadow" if jobs.repo.read_registry().shadow == version else "serving"
    return TrainOutcome(version, jobs.repo.card(version), decision, status)


def select_new(
    new: ExampleSet, open_ids: frozenset[str], holdout_fraction: float, open_share: float, rng: np.random.Generator
) -> tuple[ExampleSet, ExampleSet, ExampleSet]:
    """``(trusted to train on, trusted holdout, open to train on)`` of the new examples: the trusted ones split by
    the stable holdout hash, the open ones (``open_ids``) never held out (not evidence) and capped by
    :func:`cap_open_labels` against the trusted ones trained on."""
    trusted_train, trusted_holdout = split_holdout(new.without(open_ids), holdout_fraction)
    return trusted_train, trusted_holdout, cap_open_labels(new.only(open_ids), len(trusted_train), open_share, rng)


def cap_open_labels(
    open_examples: ExampleSet, trusted_count: int, share: float, rng: np.random.Generator
) -> ExampleSet:
    """The open-feedback examples a retraining may fit on beside ``trusted_count`` new trusted ones, so that they
    make up at most ``share`` of the new examples it fits on (none without trusted labels): all of them when that
    allows, else a sample (by ``rng``, in their order). Replay is sized from both afterwards, so it never buys
    open labels room."""
    most = int(share / (1 - share) * trusted_count + 1e-9) if share > 0 else 0
    if len(open_examples) <= most:
        return open_examples
    return open_examples.take(np.sort(rng.choice(len(open_examples), size=most, replace=False)))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
