"""When ``inferloop trainer`` retrains: each trigger, and no retrying of a rejected set of examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.client import FeedbackError, parse_feedback_file
from trainer import jobs as jobs_module
from trainer.data import ExampleSet
from trainer.jobs import Triggers, due


class FakeJobs:
    def __init__(self, new: int) -> None:
        self.new = new

    def new_labels(self) -> tuple[ExampleSet, str | None]:
        ids = tuple(f"event:{i}" for i in range(self.new))
        return ExampleSet(ids, np.zeros((self.new, 1, 2, 2), np.float32), np.zeros(self.new, np.int64), ("0",)), None


def test_the_count_trigger() -> None:
    triggers = Triggers(min_new_labels=50)
    assert due(FakeJobs(49), triggers, 0, 0)[0] == ""  # type: ignore[arg-type]
    reason, need, _, _ = due(FakeJobs(50), triggers, 0, 0)  # type: ignore[arg-type]
    assert reason == "50 new labels" and need == 50


def test_the_schedule_trigger_needs_a_minimum_of_labels() -> None:
    triggers = Triggers(min_new_labels=1000, schedule_s=60, min_labels_per_run=20)
    assert due(FakeJobs(30), triggers, 59, 0)[0] == ""  # type: ignore[arg-type]
    assert due(FakeJobs(19), triggers, 61, 0)[0] == ""  # type: ignore[arg-type]
    reason, need, _, _ = due(FakeJobs(30), triggers, 61, 0)  # type: ignore[arg-type]
    assert reason.startswith("schedule") and need == 20


def test_the_accuracy_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    triggers = Triggers(min_new_labels=1000, min_online_accuracy=0.8, min_labels_per_run=20)
    monkeypatch.setattr(jobs_module, "online_accuracy", lambda jobs, window: (0.85, 100))
    reason, _, seen, _ = due(FakeJobs(100), triggers, 0, 0)  # type: ignore[arg-type]
    assert reason == "" and "online accuracy 0.850" in seen
    monkeypatch.setattr(jobs_module, "online_accuracy", lambda jobs, window: (0.3, 100))
    assert due(FakeJobs(100), triggers, 0, 0)[0].startswith("online accuracy 0.300 < 0.8")  # type: ignore[arg-type]
    monkeypatch.setattr(jobs_module, "online_accuracy", lambda jobs, window: (0.3, 10))  # too few to judge
    assert due(FakeJobs(100), triggers, 0, 0)[0] == ""  # type: ignore[arg-type]


def test_after_a_rejection_the_same_examples_do_not_trigger_again() -> None:
    triggers = Triggers(min_new_labels=50, schedule_s=1, min_labels_per_run=20)
    assert due(FakeJobs(60), triggers, 5, new_at_last_attempt=60)[0] == ""  # type: ignore[arg-type]
    assert due(FakeJobs(70), triggers, 5, new_at_last_attempt=60)[0] == "70 new labels"  # type: ignore[arg-type]


def test_feedback_files(tmp_path: Path) -> None:
    csv = tmp_path / "f.csv"
    csv.write_text("event_id,label\na,1\n\nb, 2 ,person\n")
    assert parse_feedback_file(csv) == [("a", "1", None), ("b", "2", "person")]
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_text('{"event_id": "a", "label": "1"}\n{"event_id": "b", "label": "2", "source": "x"}\n')
    assert parse_feedback_file(jsonl) == [("a", "1", None), ("b", "2", "x")]
    jsonl.write_text('{"event_id": "a"}\n')
    with pytest.raises(FeedbackError, match=r"f\.jsonl:1"):
        parse_feedback_file(jsonl)
    csv.write_text("a\n")
    with pytest.raises(FeedbackError, match=r"f\.csv:1"):
        parse_feedback_file(csv)
