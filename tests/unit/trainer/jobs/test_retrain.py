"""How much a retraining may learn from the open feedback topic."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.data import ExampleSet
from trainer.jobs.retrain import cap_open_labels, select_new


def examples(n: int) -> ExampleSet:
    return ExampleSet(
        tuple(f"event:open-{i}" for i in range(n)), np.zeros((n, 1, 2, 2), np.float32), np.zeros(n, np.int64), ("0",)
    )


@pytest.mark.security
@pytest.mark.parametrize(
    ("open_count", "trusted", "share", "kept"),
    [(30, 10, 0.5, 10), (5, 10, 0.5, 5), (100, 30, 0.25, 10), (100, 0, 0.5, 0), (40, 100, 0.0, 0), (7, 3, 0.7, 7)],
)
def test_open_labels_never_exceed_their_share_of_a_retraining(
    open_count: int, trusted: int, share: float, kept: int
) -> None:
    """A flood of open-topic labels beside few trusted ones: at most ``open_label_share`` of the new examples
    fitted on are open labels (a deterministic sample of them, in order), all of them when the share allows, none
    without trusted labels."""
    chosen = cap_open_labels(examples(open_count), trusted, share, np.random.default_rng(0))
    assert len(chosen) == kept
    assert len(chosen) <= share * (len(chosen) + trusted) + 1e-9
    assert list(chosen.ids) == sorted(chosen.ids, key=lambda i: int(i.rsplit("-", 1)[1]))
    again = cap_open_labels(examples(open_count), trusted, share, np.random.default_rng(0))
    assert again.ids == chosen.ids


@pytest.mark.security
def test_a_retraining_takes_evidence_from_trusted_labels_only_and_open_labels_within_their_share() -> None:
    """100 new examples, 80 of them from the open topic: the feedback holdout holds trusted labels only, the open
    ones train at most as many as the trusted ones trained on (share 0.5), and none train without trusted ones."""
    new = ExampleSet(
        tuple(f"event:e{i}" for i in range(100)), np.zeros((100, 1, 2, 2), np.float32), np.zeros(100, np.int64), ("0",)
    )
    open_ids = frozenset(f"event:e{i}" for i in range(20, 100))
    train, holdout, open_train = select_new(new, open_ids, 0.2, 0.5, np.random.default_rng(1))
    assert not (set(holdout.ids) | set(train.ids)) & open_ids and len(train) + len(holdout) == 20
    assert set(open_train.ids) <= open_ids and len(open_train) == len(train) > 0
    alone = select_new(new.only(open_ids), open_ids, 0.2, 0.5, np.random.default_rng(1))
    assert [len(part) for part in alone] == [0, 0, 0]
