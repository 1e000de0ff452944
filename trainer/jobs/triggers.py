"""When the trainer retrains: the triggers (new labels, a schedule, online accuracy) and the decision they make."""

from __future__ import annotations

from dataclasses import dataclass

from inferloop.quality import label_quality
from inferloop.settings import Settings
from trainer.jobs.context import TrainerJobs


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
        count = t.min_new_labels if min_new_labels is None else min_new_labels
        return Triggers(
            min_new_labels=count,
            schedule_s=t.schedule_s,
            min_online_accuracy=t.min_online_accuracy,
            min_labels_per_run=min(t.min_labels_per_run, count),
            online_window=settings.feedback.online_window,
        )

    def describe(self) -> str:
        parts = [f"{self.min_new_labels} new labels"]
        if self.schedule_s:
            parts.append(f"every {self.schedule_s:g} s")
        if self.min_online_accuracy is not None:
            parts.append(f"online accuracy below {self.min_online_accuracy:g}")
        return " or ".join(parts)


@dataclass(frozen=True)
class TriggerDecision:
    """What a check of the triggers found."""

    reason: str  # the trigger that fires ("" for none)
    min_labels: int  # the fewest new labels the run it starts needs
    seen: str  # what the check saw, for the log
    pending: int  # new labelled examples since the serving version was trained

    @property
    def fires(self) -> bool:
        return bool(self.reason)


def online_accuracy(jobs: TrainerJobs, window: int) -> tuple[float | None, int]:
    """Online accuracy of the serving version over its last ``window`` labelled predictions in the training log
    since it was trained (``None`` when the labels do not come from the log, or there are none)."""
    from trainer.training_log import TrainingLogReader

    card = jobs.serving_card()
    reader = jobs.reader(card.input_spec)
    if not isinstance(reader, TrainingLogReader) or card.version is None:
        return None, 0
    quality = label_quality(reader.latest(after=card.lineage.reader_cursor).values(), card.model_name, window)
    measured = quality.get(card.model_name, card.version)
    return measured.accuracy, measured.labelled


def due(jobs: TrainerJobs, triggers: Triggers, since_last_run_s: float, new_at_last_attempt: int) -> TriggerDecision:
    """Which trigger fires now, if any (``new_at_last_attempt``: the labels a rejected attempt used)."""
    new, _ = jobs.new_labels()
    pending = len(new)
    fresh = pending - new_at_last_attempt  # labels that arrived since a rejected attempt (if any)
    seen = f"{pending} new labels (count trigger at {triggers.min_new_labels})"
    if pending >= triggers.min_new_labels and fresh > 0:
        return TriggerDecision(f"{pending} new labels", triggers.min_new_labels, seen, pending)
    floor = triggers.min_labels_per_run
    if pending < floor or (new_at_last_attempt and fresh < floor):
        return TriggerDecision("", floor, seen, pending)
    if triggers.schedule_s is not None:
        if since_last_run_s >= triggers.schedule_s:
            return TriggerDecision(f"schedule ({triggers.schedule_s:g} s)", floor, seen, pending)
        seen += f", next scheduled run in {triggers.schedule_s - since_last_run_s:.0f} s"
    threshold = triggers.min_online_accuracy
    if threshold is not None:
        accuracy, labelled = online_accuracy(jobs, triggers.online_window)
        if accuracy is not None and labelled >= floor and accuracy < threshold:
            reason = f"online accuracy {accuracy:.3f} < {threshold:g} over {labelled} labels"
            return TriggerDecision(reason, floor, seen, pending)
        if accuracy is not None:
            seen += f", online accuracy {accuracy:.3f} over {labelled} labels (trigger below {threshold:g})"
    return TriggerDecision("", floor, seen, pending)
