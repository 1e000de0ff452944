"""The trainer's jobs, one module each: :mod:`.bootstrap` (version 1 from scratch), :mod:`.retrain` (fine-tune the
serving version, gate, publish), :mod:`.triggers` (when to retrain), :mod:`.loop` (``inferloop trainer``),
:mod:`.rollback` (serve an earlier version) and :mod:`.catalog` (what ``inferloop models`` lists);
:mod:`.context` holds what they share."""

from trainer.jobs.bootstrap import bootstrap
from trainer.jobs.context import TrainerJobs, TrainOutcome, serving_options
from trainer.jobs.loop import CheckResult, RunOutcome, run_trainer, run_trainer_loop
from trainer.jobs.retrain import retrain
from trainer.jobs.triggers import TriggerDecision, Triggers, due

__all__ = [
    "CheckResult",
    "RunOutcome",
    "TrainOutcome",
    "TrainerJobs",
    "TriggerDecision",
    "Triggers",
    "bootstrap",
    "due",
    "retrain",
    "run_trainer",
    "run_trainer_loop",
    "serving_options",
]
