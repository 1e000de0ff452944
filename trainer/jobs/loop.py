"""``inferloop trainer``: every interval, decide on the candidate in shadow (the promoter) or, when none is in
shadow, check the triggers and retrain when one fires; report each check's outcome."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from prometheus_client import CollectorRegistry, start_http_server

from inferloop.errors import InferloopError
from inferloop.metrics import TrainerMetrics
from inferloop.settings import Settings
from trainer.card import ModelCard
from trainer.errors import CandidateRejected, NotEnoughData
from trainer.jobs.context import EventFn, TrainerJobs
from trainer.jobs.promoter import Promoter, Verdict
from trainer.jobs.retrain import retrain
from trainer.jobs.triggers import Triggers, due

log = logging.getLogger(__name__)


class RunOutcome(StrEnum):
    """What one check of the trainer loop did (the ``outcome`` label of ``inferloop_trainer_runs_total``)."""

    PUBLISHED = "published"  # a candidate verified and put in shadow (or promoted, with shadow scoring off)
    PROMOTED = "promoted"  # the candidate in shadow won on live labels and serves
    SHADOW = "shadow"  # a candidate is in shadow, waiting for live labels
    REJECTED = "rejected"  # the gate refused the candidate, or it lost in shadow
    SKIPPED = "skipped"  # no trigger fired, or too few labels
    FAILED = "failed"  # Triton or Kafka unreachable, or a bug: the loop goes on


@dataclass(frozen=True)
class CheckResult:
    outcome: RunOutcome
    detail: str

    def __str__(self) -> str:
        separator = " " if self.outcome in (RunOutcome.PUBLISHED, RunOutcome.PROMOTED) else ": "
        return f"{self.outcome}{separator}{self.detail}"


def _export_serving(metrics: TrainerMetrics, card: ModelCard, pending: int | None) -> None:
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
) -> list[CheckResult]:
    """Every ``interval_s``: while a candidate is in shadow, let the promoter decide on it (no retraining
    meanwhile); otherwise check the triggers and retrain when one fires. Returns what each check did.

    A rejected candidate, a missing Triton or Kafka, or nothing to do ends one check, never the loop. After a
    rejection the same examples are not tried again: the next run waits for new ones.
    """
    promoter = Promoter(jobs.settings, jobs.publisher, jobs.on_event)
    results: list[CheckResult] = []
    model = jobs.settings.model.name
    last_run = time.monotonic()
    new_at_last_attempt = 0
    while not stop.is_set() and (max_runs is None or len(results) < max_runs):
        pending = 0
        try:
            jobs.publisher.reconcile(jobs.on_event)  # a publisher that died mid-way left the config unverified
            verdict = promoter.check()
            decision = (
                None if verdict is not None else due(jobs, triggers, time.monotonic() - last_run, new_at_last_attempt)
            )
            pending = decision.pending if decision is not None else 0
            if metrics is not None:
                _export_serving(metrics, jobs.serving_card(), pending if decision is not None else None)
                metrics.shadow_labels.labels(model).set(verdict.evidence.live_labels if verdict is not None else 0)
            if verdict is not None:
                result = CheckResult(_VERDICT_OUTCOMES[verdict.action], _verdict_detail(verdict))
                if verdict.action == "reject":  # not retrained on the same examples: the next run waits for new ones
                    new_at_last_attempt = len(jobs.new_labels()[0])
            elif decision is None or not decision.fires:
                result = CheckResult(RunOutcome.SKIPPED, decision.seen if decision is not None else "")
            else:
                jobs.on_event(f"retraining: {decision.reason}")
                last_run = time.monotonic()
                outcome = retrain(jobs, decision.min_labels)
                new_at_last_attempt = 0
                result = CheckResult(RunOutcome.PUBLISHED, f"v{outcome.version} ({outcome.status})")
                if metrics is not None:
                    metrics.training_seconds.labels(model).set(outcome.card.training_seconds)
                    _export_serving(metrics, outcome.card, None)
        except NotEnoughData as exc:
            result = CheckResult(RunOutcome.SKIPPED, str(exc))
        except CandidateRejected as exc:
            new_at_last_attempt = pending  # the examples it was trained on; it waits for newer ones
            result = CheckResult(RunOutcome.REJECTED, str(exc))
        except InferloopError as exc:
            result = CheckResult(RunOutcome.FAILED, str(exc))
        except Exception as exc:  # Kafka unreachable, a bug: this check failed, the loop goes on
            log.exception("trainer check failed")
            result = CheckResult(RunOutcome.FAILED, f"{type(exc).__name__}: {exc}")
        results.append(result)
        if metrics is not None:
            metrics.runs.labels(model, result.outcome.value).inc()
        jobs.on_event(str(result))
        if max_runs is not None and len(results) >= max_runs:
            break
        stop.wait(interval_s)
    return results


_VERDICT_OUTCOMES = {"wait": RunOutcome.SHADOW, "promote": RunOutcome.PROMOTED, "reject": RunOutcome.REJECTED}


def _verdict_detail(verdict: Verdict) -> str:
    if verdict.action == "promote":
        return f"v{verdict.evidence.candidate}: {verdict.reason}"
    return verdict.reason


def run_trainer(
    settings: Settings,
    interval_s: float,
    min_new_labels: int | None = None,
    max_runs: int | None = None,
    on_event: EventFn = log.info,
) -> list[CheckResult]:
    """The trainer loop as ``inferloop trainer`` runs it: metrics on ``trainer.metrics_port`` (0: none), until
    SIGTERM/SIGINT or ``max_runs`` checks."""
    triggers = Triggers.from_settings(settings, min_new_labels)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = None
    if settings.trainer.metrics_port:
        metrics = TrainerMetrics(CollectorRegistry())
        start_http_server(settings.trainer.metrics_port, registry=metrics.registry)
    on_event(
        f"trainer: checking every {interval_s:g} s; retraining on {triggers.describe()} "
        f"(metrics on :{settings.trainer.metrics_port})"
    )
    jobs = TrainerJobs.from_settings(settings, on_event=on_event)
    return run_trainer_loop(jobs, interval_s, triggers, stop, max_runs=max_runs, metrics=metrics)
