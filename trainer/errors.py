"""Exceptions of the trainer: one root, one subclass per failure mode, with structured fields."""

from __future__ import annotations

from collections.abc import Sequence

from inferloop.errors import InferloopError


class TrainerError(InferloopError):
    """Root of the trainer's errors."""


class DatasetError(TrainerError):
    """Training data that cannot be used (missing folder, unreadable image, unknown label)."""


class NotEnoughData(TrainerError):
    """Too few new labelled examples to train on."""

    def __init__(self, have: int, need: int) -> None:
        self.have, self.need = have, need
        super().__init__(f"{have} new labelled examples, {need} needed to train")


class NoServingVersion(TrainerError):
    """A step needs a serving model and there is none yet."""


class CandidateRejected(TrainerError):
    """The evaluation gate refused a candidate; it is recorded with its reasons and nothing is published."""

    def __init__(self, candidate_id: str, reasons: Sequence[str]) -> None:
        self.candidate_id, self.reasons = candidate_id, list(reasons)
        super().__init__(f"candidate {candidate_id} rejected: " + "; ".join(reasons))


class ExportParityError(TrainerError):
    """The exported artifact does not compute what the PyTorch model computes."""


class PublishError(TrainerError):
    """Publishing a version failed; the version that served before still serves."""


class RepositoryError(TrainerError):
    """The model repository is not usable (unwritable, inconsistent, unknown version)."""


class LockBusy(RepositoryError):
    """Another publisher held the model's lock for longer than this one would wait."""


class StaleParent(PublishError):
    """A candidate trained from a version that no longer serves (a rollback or another publish meanwhile)."""
