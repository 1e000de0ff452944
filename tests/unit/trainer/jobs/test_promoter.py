"""The promoter's arithmetic: which labelled examples count as shadow evidence, and the verdict they give."""

from __future__ import annotations

import pytest

from inferloop.events import LabelledExample
from trainer.jobs.promoter import ShadowEvidence, ShadowTally, decide


def example(
    event_id: str, label: str, served: tuple[int, str], shadow: tuple[int, str] | None, trusted: bool = True
) -> LabelledExample:
    return LabelledExample(
        event_id=event_id,
        label=label,
        content_type="image/png",
        image=b"",
        predicted_label=served[1],
        predicted_score=0.9,
        model_name="digits",
        model_version=served[0],
        shadow_version=shadow[0] if shadow else None,
        shadow_label=shadow[1] if shadow else "",
        feedback_trusted=trusted,
    )


def test_only_events_both_versions_answered_count_and_the_newest_label_wins() -> None:
    tally = ShadowTally("digits", serving=1, candidate=2)
    tally.add(example("a", "3", (1, "3"), (2, "3")))
    tally.add(example("b", "3", (1, "8"), (2, "3")))
    tally.add(example("c", "3", (1, "3"), None))  # no shadow answer: not evidence
    tally.add(example("d", "3", (1, "3"), (5, "3")))  # another candidate's
    tally.add(example("b", "8", (1, "8"), (2, "3")))  # a correction: serving right, candidate wrong
    evidence = tally.evidence()
    assert (evidence.live_labels, evidence.serving_correct, evidence.candidate_correct) == (2, 2, 1)
    assert evidence.as_dict()["candidate_live_accuracy"] == 0.5


@pytest.mark.security
def test_only_trusted_labels_are_evidence_for_promotion() -> None:
    """Labels from the open feedback topic, however many and however they favour the candidate, are not counted:
    only the trusted topic's labels decide a promotion."""
    tally = ShadowTally("digits", serving=1, candidate=2)
    for n in range(500):  # an attacker's flood on the open topic: the candidate always right, serving wrong
        tally.add(example(f"open-{n}", "3", (1, "8"), (2, "3"), trusted=False))
    assert tally.evidence().live_labels == 0
    assert decide(tally.evidence(), min_labels=200).action == "wait"
    tally.add(example("t", "3", (1, "3"), (2, "8")))
    assert (tally.evidence().live_labels, tally.evidence().serving_correct) == (1, 1)


def test_the_verdict_waits_for_enough_labels_then_prefers_the_serving_version_on_a_loss() -> None:
    assert decide(ShadowEvidence(1, 2, 199, 10, 190), min_labels=200).action == "wait"
    assert decide(ShadowEvidence(1, 2, 200, 10, 190), min_labels=200).action == "promote"
    assert decide(ShadowEvidence(1, 2, 200, 150, 150), min_labels=200).action == "promote", "a tie promotes"
    lost = decide(ShadowEvidence(1, 2, 200, 190, 180), min_labels=200)
    assert lost.action == "reject" and "less accurate live" in lost.reason


def test_a_candidate_short_of_labels_past_its_time_in_shadow_is_given_up() -> None:
    short = ShadowEvidence(1, 2, 20, 10, 19)
    assert decide(short, 200, in_shadow_s=3600, max_shadow_s=86400).action == "wait"
    given_up = decide(short, 200, in_shadow_s=90000, max_shadow_s=86400)
    assert given_up.action == "reject" and "only 20 of 200 live labels" in given_up.reason
