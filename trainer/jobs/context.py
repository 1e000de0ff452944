"""What every trainer job works with: the settings, Triton, the model repository, the publisher and the source of
new labels; and the small steps bootstrap and retraining share (writing a candidate, its card, a rejection)."""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from inferloop.images.preprocess import InputSpec
from inferloop.settings import Settings
from inferloop.triton.control import ControlPlane, triton_control
from inferloop.triton.options import instance_kind, tensorrt
from trainer.card import Lineage, Metrics, ModelCard, utc_now
from trainer.data import DIGITS_DATASET, ExampleSet, FolderExampleReader, LabelledExampleReader
from trainer.errors import NoServingVersion, RepositoryError
from trainer.evaluate import GateDecision
from trainer.export import write_artifact
from trainer.model import SmallCNN
from trainer.publish import Publisher, ServingOptions
from trainer.repository import ModelRepository, Rejection
from trainer.train import FitConfig, ProgressFn

log = logging.getLogger(__name__)
EventFn = Callable[[str], None]


@dataclass(frozen=True)
class TrainOutcome:
    """What one run of the trainer published."""

    version: int
    card: ModelCard
    decision: GateDecision | None
    status: str = "serving"  # or "in shadow": verified, scored on live traffic before the promoter decides


def serving_options(settings: Settings) -> ServingOptions:
    m, t = settings.model, settings.trainer
    return ServingOptions(
        max_batch_size=m.max_batch_size,
        instance_count=m.instance_count,
        max_queue_delay_us=m.max_queue_delay_us,
        serving_versions=t.serving_versions,
        keep_versions=t.keep_versions,
        load_timeout_s=t.load_timeout_s,
        shadow=t.promotion_min_labels > 0,
        native=m.backend == "onnxruntime",
        instance_kind=instance_kind(m),
        tensorrt=tensorrt(m),
    )


def publisher(settings: Settings, triton: ControlPlane) -> Publisher:
    """The publisher of the settings' model: its repository, on ``triton``, announcing on the promotions topic."""
    from inferloop.kafka.promotions import PromotionLog

    repo = ModelRepository(settings.model_repository, settings.model.name)
    return Publisher(repo, triton, serving_options(settings), PromotionLog(settings))


def dataset_name(source: str) -> str:
    return DIGITS_DATASET if source in ("digits", DIGITS_DATASET) else str(Path(source).expanduser().resolve())


class TrainerJobs:
    """What the jobs (:func:`~trainer.jobs.bootstrap.bootstrap`, :func:`~trainer.jobs.retrain.retrain`) of the model
    named in the settings work with, publishing to the settings' Triton."""

    def __init__(
        self,
        settings: Settings,
        triton: ControlPlane,
        reader: LabelledExampleReader | None = None,
        on_event: EventFn = log.info,
        on_epoch: ProgressFn | None = None,
    ) -> None:
        self.settings, self.triton = settings, triton
        self.publisher = publisher(settings, triton)
        self.repo = self.publisher.repo
        self._reader = reader
        self.on_event, self.on_epoch = on_event, on_epoch

    @classmethod
    def from_settings(
        cls, settings: Settings, on_event: EventFn = log.info, on_epoch: ProgressFn | None = None
    ) -> TrainerJobs:
        """The jobs of ``settings``, with the Triton control plane (one server or the fleet) they name."""
        return cls(settings, triton_control(settings), on_event=on_event, on_epoch=on_epoch)

    # -- what they share --------------------------------------------------------------------------------------

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

    def require_services(self) -> None:
        """Triton answers and the promotions topic can be read: checked before minutes of training, since a
        version that cannot be announced serves nothing."""
        self.triton.require_live()
        self.publisher.promotions.latest(self.repo.name)

    def serving_card(self) -> ModelCard:
        registry = self.repo.read_registry()
        if registry.promoted is None:
            raise NoServingVersion(f"{self.repo.name} has no serving version: run `inferloop train --bootstrap` first")
        return self.repo.card(registry.promoted)

    def new_labels(self) -> tuple[ExampleSet, str | None]:
        """The trusted labelled examples logged since the serving version's training read (open-topic labels
        never count towards a trigger), and the cursor after them."""
        card = self.serving_card()
        reader = self.reader(card.input_spec)
        until = reader.cursor()
        new = reader.read(tuple(card.classes), after=card.lineage.reader_cursor, until=until)
        return new.without(reader.open_ids), until

    def fit_config(self, epochs: int, learning_rate: float) -> FitConfig:
        t = self.settings.trainer
        return FitConfig(
            epochs=epochs, batch_size=t.batch_size, learning_rate=learning_rate, seed=t.seed, threads=t.threads
        )

    def new_card(
        self, parent: int | None, spec: InputSpec, classes: tuple[str, ...], lineage: Lineage, fit_cfg: FitConfig
    ) -> ModelCard:
        return ModelCard(
            model_name=self.repo.name,
            candidate_id=f"c{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
            created_at=utc_now(),
            parent=parent,
            classes=list(classes),
            input_spec=spec,
            lineage=lineage,
            metrics=Metrics(holdout_accuracy=0.0, holdout_examples=0),
            fit=asdict(fit_cfg),
            training_seconds=0.0,
        )

    def write_candidate(self, model: SmallCNN, card: ModelCard, parity_inputs: NDArray[np.float32]) -> Path:
        """The candidate's artifact folder, export checked; :class:`RepositoryError` if it cannot be written."""
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

    def write_card(self, card: ModelCard, folder: Path) -> None:
        try:
            card.write(folder)
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            raise RepositoryError(f"cannot write the model card into {folder}: {exc.strerror or exc}") from exc

    def record_rejection(self, card: ModelCard, reasons: list[str]) -> None:
        with self.repo.lock():
            self.repo.record_rejected(card, reasons)
            registry = self.repo.read_registry()
            registry.rejected.append(Rejection.of(card, reasons))
            registry.event("rejected", candidate_id=card.candidate_id, reasons=reasons)
            self.repo.write_registry(registry)
