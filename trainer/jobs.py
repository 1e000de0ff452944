"""The trainer's jobs: bootstrap version 1, retrain from the serving version, and the periodic loop.

Retraining fine-tunes the serving version on the labelled examples logged since it was trained, mixed with a
replay sample of earlier data (the bootstrap dataset's training part and earlier feedback), evaluates the
candidate and the serving model on the same fixed holdout and feedback holdout, and publishes only if the
gate accepts. A rejected candidate is recorded with its reasons; its examples stay unconsumed, so the next
run sees them again with whatever arrived since.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from streams.errors import InferloopError
from streams.images import InputSpec
from streams.inference import TritonControl, TritonFleet, TritonUnavailable
from streams.metrics import TrainerMetrics
from streams.settings import Settings
from trainer.card import Lineage, Metrics, ModelCard, utc_now
from trainer.data import (
    DIGITS_DATASET,
    ExampleSet,
    FolderExampleReader,
    LabelledExampleReader,
    load_dataset,
    split_holdout,
)
from trainer.errors import CandidateRejected, NoServingVersion, NotEnoughData, RepositoryError
from trainer.evaluate import GateDecision, gate, measure
from trainer.export import load_weights, write_artifact
from trainer.model import SmallCNN
from trainer.publish import Publisher, ServingOptions
from trainer.repository import ModelRepository
from trainer.train import FitConfig, ProgressFn, fit, new_model

log = logging.getLogger(__name__)
EventFn = Callable[[str], None]


@dataclass(frozen=True)
class TrainOutcome:
    """What one run of the trainer did."""

    version: int
    card: ModelCard
    decision: GateDecision | None


def serving_options(settings: Settings) -> ServingOptions:
    m, t = settings.model, settings.trainer
    return ServingOptions(
        max_batch_size=m.max_batch_size,
        instance_count=m.instance_count,
        max_queue_delay_us=m.max_queue_delay_us,
        serving_versions=t.serving_versions,
        keep_versions=t.keep_versions,
        load_timeout_s=t.load_timeout_s,
    )


def _dataset_name(source: str) -> str:
    return DIGITS_DATASET if source in ("digits", DIGITS_DATASET) else str(Path(source).expanduser().resolve())


class TrainerJobs:
    """Bootstrap and retraining of the model named in the settings, published to the settings' Triton."""

    def __init__(
        self,
        settings: Settings,
        triton: TritonControl | TritonFleet,
        reader: LabelledExampleReader | None = None,
        on_event: EventFn = log.info,
        on_epoch: ProgressFn | None = None,
    ) -> None:
        self.settings, self.triton = settings, triton
        self.repo = ModelRepository(settings.model_repository, settings.model.name)
        self.publisher = Publisher(self.repo, triton, serving_options(settings))
        self._reader = reader
        self.on_event, self.on_epoch = on_event, on_epoch

    @property
    def spec(self) -> InputSpec:
        t = self.settings.trainer
        return InputSpec(channels=t.image_channels, height=t.image_height, width=t.image_width)

    def reader(self, spec: InputSpec) -> LabelledExampleReader:
        if self._reader is not None:
            return self._reader
        if self.settings.trainer.feedback_source == "folder":
            return FolderExampleReader(self.settings.feedback_dir, spec)
        from trainer.training_log import TrainingLogReader

        return TrainingLogReader(self.settings, spec)

    def serving_card(self) -> ModelCard:
        registry = self.repo.read_registry()
        if not registry.serving:
            raise NoServingVersion(f"{self.repo.name} has no serving version: run `inferloop train --bootstrap` first")
        return self.repo.card(max(registry.serving))

    def new_labels(self) -> tuple[ExampleSet, str | None]:
        """The labelled examples logged since the serving version's training read, and the cursor after them."""
        card = self.serving_card()
        spec, classes = InputSpec(**card.input_spec), tuple(card.classes)
        reader = self.reader(spec)
        until = reader.cursor()
        return reader.read(classes, after=card.lineage.reader_cursor, until=until), until

    def _fit_config(self, epochs: int, learning_rate: float) -> FitConfig:
        t = self.settings.trainer
        return FitConfig(epochs=epochs, batch_size=t.batch_size, learning_rate=learning_rate, seed=t.seed)

    def _candidate(self, model: SmallCNN, card: ModelCard, parity_inputs: NDArray[np.float32]) -> Path:
        self.repo.ensure()
        folder = self.repo.candidates_dir / card.candidate_id
        try:
            write_artifact(model, card, folder, parity_inputs)
        except OSError as exc:  # a full or read-only volume: nothing was published, the serving version serves
            shutil.rmtree(folder, ignore_errors=True)
            raise RepositoryError(
                f"cannot write candidate {card.candidate_id} to {folder}: {exc.strerror or exc}; "
                "nothing was published and the serving version is unchanged"
            ) from exc
        return folder

    def _write_card(self, card: ModelCard, folder: Path) -> None:
        try:
            card.write(folder)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise RepositoryError(f"cannot write the model card into {folder}: {exc.strerror or exc}") from exc

    @staticmethod
    def _new_card(
        name: str, parent: int | None, spec: InputSpec, classes: tuple[str, ...], lineage: Lineage, fit_cfg: FitConfig
    ) -> ModelCard:
        return ModelCard(
            model_name=name,
            candidate_id=f"c{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
            created_at=utc_now(),
            parent=parent,
            classes=list(classes),
            input_spec={"channels": spec.channels, "height": spec.height, "width": spec.width},
            lineage=lineage,
            metrics=Metrics(holdout_accuracy=0.0, holdout_examples=0),
            fit=asdict(fit_cfg),
            training_seconds=0.0,
        )

    def bootstrap(self, again: bool = False) -> TrainOutcome:
        """Train version 1 from scratch on the configured dataset and publish it.

        ``again``: train from scratch even though versions exist (published as the next version).
        """
        self.triton.require_live()
        registry = self.repo.read_registry()
        if not again and (registry.serving or self.repo.versions()):
            raise RepositoryError(
                f"{self.repo.name} already has versions {self.repo.versions()}; use `inferloop train` to retrain"
            )
        t, spec = self.settings.trainer, self.spec
        self.on_event(f"loading dataset {t.dataset!r}")
        data = load_dataset(t.dataset, spec)
        train, holdout = split_holdout(data, t.holdout_fraction)
        self.on_event(f"training from scratch on {len(train)} examples, {len(holdout)} held out")
        fit_cfg = self._fit_config(t.bootstrap_epochs, t.learning_rate)
        began = time.monotonic()
        model = fit(new_model(spec, len(data.classes), t.seed), train, fit_cfg, self.on_epoch)
        lineage = Lineage(base_dataset=_dataset_name(t.dataset), base_examples=list(train.ids))
        card = self._new_card(self.repo.name, None, spec, data.classes, lineage, fit_cfg)
        card.training_seconds = round(time.monotonic() - began, 2)
        folder = self._candidate(model, card, holdout.x[:64])
        card.metrics = measure(folder, holdout, ExampleSet.empty(spec, data.classes))
        self._write_card(card, folder)
        self.on_event(f"holdout accuracy {card.metrics.holdout_accuracy:.4f}")
        version = self.publisher.publish(folder, card, self.on_event)
        shutil.rmtree(folder, ignore_errors=True)
        return TrainOutcome(version, self.repo.card(version), None)

    def retrain(self, min_new_labels: int | None = None) -> TrainOutcome:
        """Fine-tune the serving version on new labelled examples plus replay; publish if the gate accepts."""
        t = self.settings.trainer
        need = t.min_new_labels if min_new_labels is None else min_new_labels
        self.triton.require_live()
        registry = self.repo.read_registry()
        if not registry.serving:
            raise NoServingVersion(f"{self.repo.name} has no serving version: run `inferloop train --bootstrap` first")
        parent = max(registry.serving)
        parent_card = self.repo.card(parent)
        spec, classes = InputSpec(**parent_card.input_spec), tuple(parent_card.classes)
        reader = self.reader(spec)
        after, until = parent_card.lineage.reader_cursor, reader.cursor()
        new = reader.read(classes, after=after, until=until)
        if len(new) < need:
            raise NotEnoughData(len(new), need)
        earlier = reader.read(classes, after=None, until=after) if after else ExampleSet.empty(spec, classes)
        earlier = earlier.without(new.ids)  # relabelled since: the newer label wins
        skipped = getattr(reader, "skipped", None)
        if skipped:
            self.on_event(f"left out of the new examples: {dict(skipped)}")
        new_train, new_holdout = split_holdout(new, t.feedback_holdout_fraction)
        earlier_train, earlier_holdout = split_holdout(earlier, t.feedback_holdout_fraction)
        feedback_holdout = ExampleSet.concat([earlier_holdout, new_holdout])

        base = load_dataset(parent_card.lineage.base_dataset, spec)
        base_train, holdout = split_holdout(base, t.holdout_fraction)
        pool = ExampleSet.concat([base_train, earlier_train])
        rng = np.random.default_rng(t.seed + parent)
        k = min(len(pool), round(t.replay_ratio * len(new_train)))
        replay = pool.take(np.sort(rng.choice(len(pool), size=k, replace=False)))
        train = ExampleSet.concat([new_train, replay])
        self.on_event(
            f"fine-tuning version {parent} on {len(new_train)} new examples + {len(replay)} replayed "
            f"({len(feedback_holdout)} feedback and {len(holdout)} fixed holdout examples kept out)"
        )
        fit_cfg = self._fit_config(t.finetune_epochs, t.finetune_learning_rate)
        began = time.monotonic()
        model = fit(load_weights(self.repo.version_dir(parent), spec, len(classes)), train, fit_cfg, self.on_epoch)
        lineage = Lineage(
            base_dataset=parent_card.lineage.base_dataset,
            new_examples=list(new_train.ids),
            replay_examples=list(replay.ids),
            feedback_holdout=list(new_holdout.ids),
            reader_cursor=until,
        )
        card = self._new_card(self.repo.name, parent, spec, classes, lineage, fit_cfg)
        card.training_seconds = round(time.monotonic() - began, 2)
        folder = self._candidate(model, card, holdout.x[:64])
        card.metrics = measure(folder, holdout, feedback_holdout)
        card.serving_metrics = measure(self.repo.version_dir(parent), holdout, feedback_holdout)
        self._write_card(card, folder)
        decision = gate(card.metrics, card.serving_metrics, t.tolerance)
        self.on_event(
            f"candidate: holdout {card.metrics.holdout_accuracy:.4f}, feedback {_fmt(card.metrics.feedback_accuracy)}; "
            f"serving v{parent}: holdout {card.serving_metrics.holdout_accuracy:.4f}, "
            f"feedback {_fmt(card.serving_metrics.feedback_accuracy)}"
        )
        if not decision.accepted:
            self._reject(card, decision.reasons)
            shutil.rmtree(folder, ignore_errors=True)
            raise CandidateRejected(card.candidate_id, decision.reasons)
        version = self.publisher.publish(folder, card, self.on_event)
        shutil.rmtree(folder, ignore_errors=True)
        return TrainOutcome(version, self.repo.card(version), decision)

    def _reject(self, card: ModelCard, reasons: list[str]) -> None:
        with self.repo.lock():
            self.repo.record_rejected(card, reasons)
            registry = self.repo.read_registry()
            registry.rejected.append(
                {"candidate_id": card.candidate_id, "version": None, "at": card.created_at, "reasons": reasons,
                 "metrics": asdict(card.metrics), "parent": card.parent}
            )  # fmt: skip
            registry.event("rejected", candidate_id=card.candidate_id, reasons=reasons)
            self.repo.write_registry(registry)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@dataclass(frozen=True)
class Triggers:
    """When ``inferloop trainer`` retrains (each one a setting; any that fires starts a run)."""

    min_new_labels: int  # this many new labelled examples
    schedule_s: float | None = None  # this long since the last run, given min_labels_per_run new examples
    min_online_accuracy: float | None = None  # the serving version's online accuracy fell below this
    min_labels_per_run: int = 20  # fewest new examples the schedule and accuracy triggers act on
    online_window: int = 200

    @staticmethod
    def from_settings(settings: Settings, min_new_labels: int | None = None) -> Triggers:
        t = settings.trainer
        return Triggers(
            min_new_labels=t.min_new_labels if min_new_labels is None else min_new_labels,
            schedule_s=t.schedule_s,
            min_online_accuracy=t.min_online_accuracy,
            min_labels_per_run=min(
                t.min_labels_per_run, t.min_new_labels if min_new_labels is None else min_new_labels
            ),
            online_window=settings.feedback.online_window,
        )

    def describe(self) -> str:
        parts = [f"{self.min_new_labels} new labels"]
        if self.schedule_s:
            parts.append(f"every {self.schedule_s:g} s")
        if self.min_online_accuracy is not None:
            parts.append(f"online accuracy below {self.min_online_accuracy:g}")
        return " or ".join(parts)


def online_accuracy(jobs: TrainerJobs, window: int) -> tuple[float | None, int]:
    """Online accuracy of the serving version over its last ``window`` labelled predictions in the training log
    since it was trained (``None`` when the labels do not come from the log, or there are none)."""
    from trainer.training_log import TrainingLogReader

    card = jobs.serving_card()
    reader = jobs.reader(InputSpec(**card.input_spec))
    if not isinstance(reader, TrainingLogReader):
        return None, 0
    version = card.version
    outcomes = [
        e.correct
        for e in sorted(reader.latest(after=card.lineage.reader_cursor).values(), key=lambda e: e.logged_at_ms)
        if e.model_version == version and e.model_name == card.model_name
    ][-window:]
    return (sum(outcomes) / len(outcomes) if outcomes else None), len(outcomes)


def due(
    jobs: TrainerJobs, triggers: Triggers, since_last_run_s: float, new_at_last_attempt: int
) -> tuple[str, int, str, int]:
    """Which trigger fires now ('' for none), the fewest new labels that run needs, what was seen, and how many
    new labels there are."""
    new, _ = jobs.new_labels()
    pending = len(new)
    fresh = pending - new_at_last_attempt  # labels that arrived since a rejected attempt (if any)
    seen = f"{pending} new labels (count trigger at {triggers.min_new_labels})"
    if pending >= triggers.min_new_labels and fresh > 0:
        return f"{pending} new labels", triggers.min_new_labels, seen, pending
    floor = triggers.min_labels_per_run
    if pending < floor or (new_at_last_attempt and fresh < floor):
        return "", floor, seen, pending
    if triggers.schedule_s is not None:
        if since_last_run_s >= triggers.schedule_s:
            return f"schedule ({triggers.schedule_s:g} s)", floor, seen, pending
        seen += f", next scheduled run in {triggers.schedule_s - since_last_run_s:.0f} s"
    threshold = triggers.min_online_accuracy
    if threshold is not None:
        accuracy, labelled = online_accuracy(jobs, triggers.online_window)
        if accuracy is not None and labelled >= floor and accuracy < threshold:
            return f"online accuracy {accuracy:.3f} < {threshold:g} over {labelled} labels", floor, seen, pending
        if accuracy is not None:
            seen += f", online accuracy {accuracy:.3f} over {labelled} labels (trigger below {threshold:g})"
    return "", floor, seen, pending


def _export_serving(metrics: TrainerMetrics, card: ModelCard, pending: int | None) -> None:
    from datetime import datetime

    metrics.serving_version.labels(card.model_name).set(card.version or 0)
    metrics.serving_created.labels(card.model_name).set(datetime.fromisoformat(card.created_at).timestamp())
    if pending is not None:
        metrics.new_labels.labels(card.model_name).set(pending)


def run_trainer_loop(
    jobs: TrainerJobs,
    interval_s: float,
    triggers: Triggers,
    stop: threading.Event,
    max_runs: int | None = None,
    metrics: TrainerMetrics | None = None,
) -> list[str]:
    """Check the triggers every ``interval_s``; retrain when one fires. Returns what each check did.

    A rejected candidate, a missing Triton or Kafka, or nothing to do ends one check, never the loop. After a
    rejection the same examples are not tried again: the next run waits for new ones.
    """
    outcomes: list[str] = []
    model = jobs.settings.model.name
    last_run = time.monotonic()
    new_at_last_attempt = 0
    while not stop.is_set() and (max_runs is None or len(outcomes) < max_runs):
        pending = 0
        try:
            reason, need, seen, pending = due(jobs, triggers, time.monotonic() - last_run, new_at_last_attempt)
            if metrics is not None:
                _export_serving(metrics, jobs.serving_card(), pending)
            if not reason:
                outcomes.append(f"skipped: {seen}")
            else:
                jobs.on_event(f"retraining: {reason}")
                last_run = time.monotonic()
                outcome = jobs.retrain(need)
                new_at_last_attempt = 0
                outcomes.append(f"published v{outcome.version}")
                if metrics is not None:
                    metrics.training_seconds.labels(model).set(outcome.card.training_seconds)
                    _export_serving(metrics, outcome.card, None)
        except NotEnoughData as exc:
            outcomes.append(f"skipped: {exc}")
        except CandidateRejected as exc:
            new_at_last_attempt = pending  # the examples it was trained on; it waits for newer ones
            outcomes.append(f"rejected: {exc}")
        except (TritonUnavailable, InferloopError) as exc:
            outcomes.append(f"failed: {exc}")
        except Exception as exc:  # Kafka unreachable, a bug: this check failed, the loop goes on
            log.exception("trainer check failed")
            outcomes.append(f"failed: {type(exc).__name__}: {exc}")
        if metrics is not None:  # published / skipped / rejected / failed
            metrics.runs.labels(model, outcomes[-1].split(" ", 1)[0].rstrip(":")).inc()
        jobs.on_event(outcomes[-1])
        if max_runs is not None and len(outcomes) >= max_runs:
            break
        stop.wait(interval_s)
    return outcomes
