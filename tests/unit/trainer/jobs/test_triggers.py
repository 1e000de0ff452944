"""When ``inferloop trainer`` retrains: each trigger, and no retrying of a rejected set of examples."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data import ExampleSet
from trainer.jobs import triggers as triggers_module
from trainer.jobs.triggers import Triggers, due


class FakeJobs:
    def __init__(self, new: int) -> None:
        self.new = new

    def new_labels(self) -> tuple[ExampleSet, str | None]:
        ids = tuple(f"event:{i}" for i in range(self.new))
        return ExampleSet(ids, np.zeros((self.new, 1, 2, 2), np.float32), np.zeros(self.new, np.int64), ("0",)), None


def test_the_count_trigger() -> None:
    triggers = Triggers(min_new_labels=50)
    assert not due(FakeJobs(49), triggers, 0, 0).fires  # type: ignore[arg-type]
    decision = due(FakeJobs(50), triggers, 0, 0)  # type: ignore[arg-type]
    assert decision.reason == "50 new labels" and decision.min_labels == 50 and decision.pending == 50


def test_the_schedule_trigger_needs_a_minimum_of_labels() -> None:
    triggers = Triggers(min_new_labels=1000, schedule_s=60, min_labels_per_run=20)
    assert due(FakeJobs(30), triggers, 59, 0).reason == ""  # type: ignore[arg-type]
    assert due(FakeJobs(19), triggers, 61, 0).reason == ""  # type: ignore[arg-type]
    decision = due(FakeJobs(30), triggers, 61, 0)  # type: ignore[arg-type]
    assert decision.reason.startswith("schedule") and decision.min_labels == 20


def test_the_accuracy_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    triggers = Triggers(min_new_labels=1000, min_online_accuracy=0.8, min_labels_per_run=20)
    monkeypatch.setattr(triggers_module, "online_accuracy", lambda jobs, window: (0.85, 100))
    decision = due(FakeJobs(100), triggers, 0, 0)  # type: ignore[arg-type]
    assert not decision.fires and "online accuracy 0.850" in decision.seen
    monkeypatch.setattr(triggers_module, "online_accuracy", lambda jobs, window: (0.3, 100))
    assert due(FakeJobs(100), triggers, 0, 0).reason.startswith("online accuracy 0.300 < 0.8")  # type: ignore[arg-type]
    monkeypatch.setattr(triggers_module, "online_accuracy", lambda jobs, window: (0.3, 10))  # too few to judge
    assert due(FakeJobs(100), triggers, 0, 0).reason == ""  # type: ignore[arg-type]


def test_after_a_rejection_the_same_examples_do_not_trigger_again() -> None:
    triggers = Triggers(min_new_labels=50, schedule_s=1, min_labels_per_run=20)
    assert due(FakeJobs(60), triggers, 5, new_at_last_attempt=60).reason == ""  # type: ignore[arg-type]
    assert due(FakeJobs(70), triggers, 5, new_at_last_attempt=60).reason == "70 new labels"  # type: ignore[arg-type]
