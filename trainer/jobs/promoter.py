"""The promoter: decides, on live labels, whether the candidate in shadow replaces the serving version.

While a candidate is in shadow the worker scores it on the same events as the serving version (the
shadow-predictions topic) and the joiner writes both answers into each labelled example. The promoter reads the training
log from where it left off and counts, over the events that both versions answered and that got a label from the
trusted feedback topic (the open topic's labels are not evidence), how often each was right. Once
``trainer.promotion_min_labels`` such labels exist it decides: the candidate is promoted when it is at least as
accurate as the serving version on those events, otherwise it leaves shadow as rejected; either way the evidence
goes into its model card, the promotion record and the registry. Feedback decides only between two versions that
already passed the trusted-holdout gate.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inferloop.events import LabelledExample
from inferloop.kafka.readers import end_offsets, iter_training_log
from inferloop.settings import Settings
from trainer.jobs.context import EventFn
from trainer.publish import Publisher
from trainer.repository import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowEvidence:
    """The serving version and the candidate on the same labelled live events."""

    serving: int
    candidate: int
    live_labels: int
    serving_correct: int
    candidate_correct: int

    @property
    def serving_accuracy(self) -> float | None:
        return round(self.serving_correct / self.live_labels, 6) if self.live_labels else None

    @property
    def candidate_accuracy(self) -> float | None:
        return round(self.candidate_correct / self.live_labels, 6) if self.live_labels else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "serving_version": self.serving,
            "candidate_version": self.candidate,
            "shadow_live_labels": self.live_labels,
            "serving_live_accuracy": self.serving_accuracy,
            "candidate_live_accuracy": self.candidate_accuracy,
        }


@dataclass
class ShadowTally:
    """Labelled examples of one (serving, candidate) pair, the newest label of each event winning."""

    model: str
    serving: int
    candidate: int
    outcomes: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # event id -> (serving, candidate) right

    def add(self, example: LabelledExample) -> None:
        if not example.feedback_trusted:
            return  # evidence only from the trusted feedback topic: the open topic's labels are anyone's
        if (
            example.model_name == self.model
            and example.model_version == self.serving
            and example.shadow_version == self.candidate
        ):
            self.outcomes[example.event_id] = (example.correct, bool(example.shadow_correct))
        else:
            self.outcomes.pop(example.event_id, None)  # relabelled by another version's prediction: not this pair's

    def evidence(self) -> ShadowEvidence:
        return ShadowEvidence(
            self.serving,
            self.candidate,
            len(self.outcomes),
            sum(s for s, _ in self.outcomes.values()),
            sum(c for _, c in self.outcomes.values()),
        )


@dataclass(frozen=True)
class Verdict:
    action: str  # "wait", "promote", "reject"
    evidence: ShadowEvidence
    reason: str


def decide(
    evidence: ShadowEvidence, min_labels: int, in_shadow_s: float = 0.0, max_shadow_s: float = float("inf")
) -> Verdict:
    """Wait for ``min_labels``, then promote a candidate at least as accurate as the serving version on them;
    a candidate that did not get them within ``max_shadow_s`` is given up (rejected), so retraining resumes."""
    if evidence.live_labels < min_labels:
        if in_shadow_s > max_shadow_s:
            return Verdict(
                "reject",
                evidence,
                f"only {evidence.live_labels} of {min_labels} live labels in {in_shadow_s:.0f} s in shadow "
                f"(trainer.shadow_max_s {max_shadow_s:g})",
            )
        return Verdict("wait", evidence, f"{evidence.live_labels}/{min_labels} live labels in shadow")
    cand, serv = evidence.candidate_accuracy or 0.0, evidence.serving_accuracy or 0.0
    summary = (
        f"on {evidence.live_labels} live labels the candidate v{evidence.candidate} is right {cand:.3f}, "
        f"the serving v{evidence.serving} {serv:.3f}"
    )
    if cand >= serv:
        return Verdict("promote", evidence, summary)
    return Verdict("reject", evidence, f"{summary}: less accurate live")


class Promoter:
    """Follows the training log for the candidate in shadow and acts on its verdict (one check at a time)."""

    def __init__(self, settings: Settings, publisher: Publisher, on_event: EventFn = log.info) -> None:
        self.settings, self.publisher, self.on_event = settings, publisher, on_event
        self.min_labels = settings.trainer.promotion_min_labels
        self.max_shadow_s = settings.trainer.shadow_max_s
        self._tally: ShadowTally | None = None
        self._cursor: dict[int, int] = {}

    def check(self) -> Verdict | None:
        """None when no candidate is in shadow; otherwise the verdict, acted on (promoted or rejected)."""
        registry = self.publisher.repo.read_registry()
        if registry.shadow is None or registry.promoted is None:
            self._tally = None
            return None
        pair = (registry.promoted, registry.shadow)
        if self._tally is None or (self._tally.serving, self._tally.candidate) != pair:
            self._tally, self._cursor = ShadowTally(self.publisher.repo.name, *pair), {}
        self._read_new()
        verdict = decide(
            self._tally.evidence(), self.min_labels, _in_shadow_s(registry, registry.shadow), self.max_shadow_s
        )
        evidence = verdict.evidence.as_dict()
        if verdict.action == "promote":
            self.publisher.promote(
                verdict.evidence.candidate,
                evidence,
                reason=verdict.reason,
                on_event=self.on_event,
                expect_shadow=True,
                expect_serving=verdict.evidence.serving,
            )
        elif verdict.action == "reject":
            self.publisher.end_shadow(verdict.evidence.candidate, [verdict.reason], evidence, on_event=self.on_event)
        return verdict

    def _read_new(self) -> None:
        assert self._tally is not None
        topic = self.settings.feedback.training_log_topic
        until = end_offsets(self.settings, topic)
        if not any(end > self._cursor.get(p, 0) for p, end in until.items()):
            return
        for record, example in iter_training_log(self.settings, start=self._cursor, until=until):
            self._tally.add(example)
            self._cursor[record.partition] = record.offset + 1
        self._cursor.update({p: max(self._cursor.get(p, 0), end) for p, end in until.items()})


def _in_shadow_s(registry: Registry, version: int) -> float:
    """Seconds since ``version`` went into shadow (by the registry's history; 0 when it does not say)."""
    for e in reversed(registry.history):
        if e.get("event") == "shadow" and e.get("version") == version:
            with contextlib.suppress(ValueError, TypeError):
                return (datetime.now(UTC) - datetime.fromisoformat(e["at"])).total_seconds()
    return 0.0
