"""``inferloop demo``: the whole loop on the local stack and the embedded digits, in a few minutes.

1. Start the local stack if it is not running; serve a model trained from scratch (bootstrap one if there is
   none; if the serving version was fine-tuned by an earlier demo, serve its from-scratch ancestor again).
2. Start a worker, a joiner and a trainer loop (an online-accuracy trigger) on topics of this run's own.
3. Stream clean digits, then drifted ones (inverted); send feedback for part of the predictions, as users
   would, but only for images outside the holdout split, so that accuracy measured on holdout images is fair.
4. Watch: online accuracy drops with the drift, the trainer fine-tunes on the logged feedback and publishes a
   new version, which Triton loads beside the serving one; verified on every replica, it goes into shadow: the
   worker scores live events with it too (on the shadow-predictions topic), the joiner joins the feedback to
   both answers, and once enough live labels show it at least as accurate, the trainer promotes it; the worker
   follows the announcement and accuracy on drifted images recovers.
5. Write ``report.json`` (with the promotions and their evidence, and the count of predictions made by a
   version that had not been promoted: 0) and ``accuracy.png``; stop what the demo started (unless
   ``keep_running``).
"""

from __future__ import annotations

import bisect
import contextlib
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from cli.demo_report import DemoOptions, DemoReport, LiveState, Observation, accuracy, percentile, write_chart
from inferloop.errors import InferloopError
from inferloop.kafka.options import kafka_options
from inferloop.metrics import scrape
from infra.local.process import free_ports, start, stop_pid
from infra.local.settings import LocalSettings
from infra.local.stack import LocalStack
from infra.local.worker import JoinerProcess, TrainerProcess, WorkerProcess

DRIFT = "inverted digits (255 - pixel)"


class Demo:
    def __init__(self, settings: LocalSettings, options: DemoOptions, on_event: Callable[[str], None]) -> None:
        tag = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
        self.tag, self.options, self.on_event = tag, options, on_event
        self.settings = settings.with_topic_prefix(f"demo-{tag}")
        self.state = LiveState()
        self.observations: list[Observation] = []
        self.truth: dict[str, tuple[str, str, bool, bool]] = {}  # event id -> (label, phase, holdout, feedback?)
        self.published: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.pids: list[int] = []
        self.drift_started_s = 0.0
        self.joiner_port = 0

    # -- the environment of the demo's processes -------------------------------------------------------------

    def env(self) -> dict[str, str]:
        t, o = self.settings.trainer, self.options
        trainer = t.model_copy(
            update={
                "feedback_source": "log",
                "min_online_accuracy": o.min_online_accuracy,
                "min_labels_per_run": o.min_labels_per_run,
                # the count trigger stays out of the way: the clean phase alone brings hundreds of labels
                "min_new_labels": 100_000,
                # measured offline on one thread: 20 epochs over the new examples and 1.5 times as many replayed
                # take ~8 s and recover ~0.94 of the inverted holdout from 140 drifted labels, keeping ~0.995 of
                # the clean one (the trusted gate allows 0.01 below the best version ever served)
                "finetune_epochs": min(t.finetune_epochs, 20),
                "replay_ratio": min(t.replay_ratio, 1.5),
                "promotion_min_labels": o.promotion_min_labels,
            }
        )
        return self.settings.model_copy(update={"trainer": trainer}).to_env()

    # -- set-up ----------------------------------------------------------------------------------------------

    def _ensure_stack(self) -> bool:
        """Start the local stack unless it runs; True if this demo started it."""
        stack = LocalStack(self.settings)
        if all(c.running and c.ready for c in stack.status()):
            self.on_event("local stack already running")
            return False
        self.on_event("starting the local stack (Kafka, Triton)")
        stack.up(on_event=self.on_event)
        return True

    def _ensure_baseline(self) -> int:
        """A version trained from scratch serves; returns it."""
        from trainer.jobs import TrainerJobs, bootstrap

        jobs = TrainerJobs.from_settings(self.settings, on_event=self.on_event)
        repo = jobs.repo
        registry = repo.read_registry()
        if registry.promoted is None:
            self.on_event(f"no {repo.name} model serves: training version 1 from scratch on the embedded digits")
            return bootstrap(jobs, again=bool(repo.versions())).version
        serving = registry.promoted
        if repo.card(serving).parent is None:
            return serving
        scratch = [v for v in repo.versions() if repo.card(v).parent is None]
        if scratch:
            self.on_event(f"v{serving} was fine-tuned before; serving v{scratch[-1]} (trained from scratch) again")
            return jobs.publisher.rollback(scratch[-1], on_event=self.on_event)
        self.on_event("no version trained from scratch is on disk: training one")
        return bootstrap(jobs, again=True).version

    def _start_processes(self) -> None:
        from inferloop.kafka.topics import ensure_topics

        ensure_topics(self.settings)
        logs = self.options.report_dir / "logs"
        env = self.env()
        worker_port, self.joiner_port, trainer_port = free_ports(3)
        env["INFERLOOP_TRAINER__METRICS_PORT"] = str(trainer_port)
        for service in (
            WorkerProcess(env, worker_port, logs / "worker.log"),
            JoinerProcess(env, self.joiner_port, logs / "joiner.log"),
            TrainerProcess(env, logs / "trainer.log", every="2s"),
        ):
            self.on_event(f"starting the {service.name}")
            self.pids.append(start(service).pid)

    # -- the threads -----------------------------------------------------------------------------------------

    def _produce(self) -> None:
        """Stream digits at the configured rate: clean first, then drifted."""
        from inferloop.kafka.producers import ImageProducer
        from trainer.data import DIGITS_DATASET, digits_images, in_holdout, png_bytes

        images, labels = digits_images()
        rng = random.Random(7)  # noqa: S311 - a reproducible stream, not a secret
        order = list(range(len(images)))
        pngs: dict[tuple[int, bool], bytes] = {}

        def png(i: int, drifted: bool) -> bytes:
            if (i, drifted) not in pngs:
                pngs[(i, drifted)] = png_bytes(255 - images[i] if drifted else images[i])
            return pngs[(i, drifted)]

        holdout = self.settings.trainer.holdout_fraction
        with ImageProducer(self.settings, source="demo") as producer:
            began, n = time.monotonic(), 0
            while not self.stop.is_set():
                if n % len(order) == 0:
                    rng.shuffle(order)
                i = order[n % len(order)]
                elapsed = time.monotonic() - began
                phase = "clean" if elapsed < self.options.clean_s else "drift"
                if phase == "drift" and self.state.phase != "drift":
                    self.drift_started_s = time.time() - self.state.started
                    self.state.phase = "drift"
                    self.on_event(f"drift begins: {DRIFT}")
                in_hold = in_holdout(f"{DIGITS_DATASET}:{i}", holdout)
                wants_feedback = not in_hold and rng.random() < self.options.feedback_fraction
                event_id = uuid.uuid4().hex
                with self.lock:
                    self.truth[event_id] = (str(int(labels[i])), phase, in_hold, wants_feedback)
                producer.publish_bytes(png(i, phase == "drift"), "image/png", event_id=event_id)
                n += 1
                self.state.sent = n
                if n % 20 == 0:
                    producer.flush()
                delay = began + n / self.options.rate_per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def _consume(self) -> None:
        """Follow the predictions: record each against the truth; send feedback where a user would."""
        from kafka import KafkaConsumer, TopicPartition

        from inferloop.errors import EventDecodeError
        from inferloop.events import decode_prediction
        from inferloop.kafka.producers import FeedbackProducer

        topic = self.settings.streams.predictions_topic
        consumer = KafkaConsumer(**kafka_options(self.settings.kafka), enable_auto_commit=False)
        # Assigned, not subscribed: a group subscription made right after the topic was created can see no
        # partitions and wait for the next metadata refresh (minutes) before it reads anything.
        deadline = time.monotonic() + 30
        while not (partitions := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise InferloopError(f"topic {topic} has no partitions after 30 s")
            consumer.poll(timeout_ms=200)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        try:
            # the demo's user labels as an operator would: on the trusted topic, whose labels decide promotions
            with FeedbackProducer(self.settings, source="demo-user", trusted=True) as feedback:
                while not self.stop.is_set():
                    for records in consumer.poll(timeout_ms=200).values():
                        for record in records:
                            try:
                                p = decode_prediction(record.value)
                            except EventDecodeError:
                                continue
                            with self.lock:
                                truth = self.truth.get(p.event_id)
                            if truth is None:
                                continue
                            label, phase, in_hold, wants_feedback = truth
                            self._observe(p.model_version, p.label == label, p, phase, in_hold)
                            if wants_feedback:
                                feedback.send(p.event_id, label)
                                self.state.feedback += 1
                    feedback.flush()
        finally:
            consumer.close()

    def _observe(self, version: int, correct: bool, p: Any, phase: str, in_hold: bool) -> None:
        t = p.predicted_at_ms / 1000 - self.state.started
        with self.lock:
            self.observations.append(
                Observation(
                    round(t, 3),
                    phase,
                    version,
                    correct,
                    p.predicted_at_ms - p.produced_at_ms,
                    in_hold,
                    p.predicted_at_ms,
                )
            )
            if version != self.state.serving:
                if version > self.state.serving and self.state.serving:
                    self.published.append({"version": version, "at_s": round(t, 1)})
                    self.on_event(f"predictions now come from v{version}")
                self.state.serving = max(version, self.state.serving)

    def _follow_promotions(self) -> None:
        """The promotions topic, as the live view shows it: which version is announced, which is in shadow."""
        from inferloop.kafka.promotions import PromotionLog

        log = PromotionLog(self.settings)
        while not self.stop.wait(1.0):
            with contextlib.suppress(InferloopError):
                latest = log.latest(self.settings.model.name)
                if latest is not None:
                    self.state.announced, self.state.shadow = latest.serving, latest.shadow

    def _promotion_records(self) -> list[Any]:
        """Every announcement of the demo's model, oldest first."""
        from inferloop.events import decode_promotion
        from inferloop.kafka.readers import read_topic

        found = []
        for record in read_topic(self.settings, self.settings.model.promotions_topic, idle_timeout_s=5.0):
            if record.key == self.settings.model.name.encode() and record.value is not None:
                with contextlib.suppress(InferloopError):
                    found.append(decode_promotion(record.value))
        return found

    def _verified_versions(self) -> set[int]:
        from trainer.repository import ModelRepository

        return set(ModelRepository(self.settings.model_repository, self.settings.model.name).read_registry().verified)

    def _joiner_accuracy(self) -> dict[str, float] | None:
        url = f"http://127.0.0.1:{self.joiner_port}/metrics"
        try:
            return {labels["version"]: value for labels, value in scrape(url, "inferloop_online_accuracy", 2.0)}
        except OSError:
            return None

    def _trainer_status(self) -> str:
        path = self.options.report_dir / "logs" / "trainer.log"
        with contextlib.suppress(OSError):
            lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
            meaningful = [line for line in lines if "====" not in line]
            if meaningful:
                return meaningful[-1][-110:]
        return ""

    # -- the run ---------------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Figures for the live view: the last 5 s of predictions and the last 200 for accuracy."""
        now = time.time() - self.state.started
        with self.lock:
            recent = [o for o in self.observations[-2000:] if o.t_s >= now - 5]
            last = self.observations[-200:]
        return {
            "elapsed_s": now,
            "phase": self.state.phase,
            "sent": self.state.sent,
            "predicted": len(self.observations),
            "throughput": len(recent) / 5.0,
            "p50": percentile([o.latency_ms for o in recent], 50),
            "p99": percentile([o.latency_ms for o in recent], 99),
            "serving": self.state.serving,
            "announced": self.state.announced,
            "shadow": self.state.shadow,
            "accuracy": accuracy(last),
            "feedback": self.state.feedback,
            "online": self.state.joiner_accuracy,
            "trainer": self.state.trainer,
        }

    def _done(self, baseline: int) -> tuple[bool, str]:
        if self.state.phase != "drift":
            return False, ""
        drift_for = time.time() - self.state.started - self.drift_started_s
        if drift_for > self.options.max_drift_s:
            return True, f"stopped after {self.options.max_drift_s:g} s of drift"
        newest = self.state.serving
        if newest <= baseline or not self.published:
            return False, ""
        since = time.time() - self.state.started - self.published[-1]["at_s"]
        with self.lock:
            measured = [o for o in self.observations if o.version == newest and o.phase == "drift" and o.holdout]
        if since >= self.options.settle_s and len(measured) >= 60:
            return True, f"v{newest} served drifted images for {since:.0f} s"
        return False, ""

    def run(self, view: Callable[[dict[str, Any]], None] | None = None) -> DemoReport:
        began = time.monotonic()
        started_stack = False
        threads: list[threading.Thread] = []
        notes: list[str] = []
        try:
            started_stack = self._ensure_stack()
            baseline = self._ensure_baseline()
            self.on_event(f"v{baseline} of {self.settings.model.name} serves; topics: demo-{self.tag}.*")
            self._start_processes()
            self.state.started = time.time()
            self.state.phase = "clean"
            self.state.serving = baseline
            threads = [
                threading.Thread(target=self._consume, name="demo-consume", daemon=True),
                threading.Thread(target=self._produce, name="demo-produce", daemon=True),
                threading.Thread(target=self._follow_promotions, name="demo-promotions", daemon=True),
            ]
            for thread in threads:
                thread.start()
            history: deque[float] = deque(maxlen=4)
            while True:
                time.sleep(0.5)
                self.state.trainer = self._trainer_status()
                history.append(time.monotonic())
                if len(history) == 4:
                    self.state.joiner_accuracy = self._joiner_accuracy()
                    history.clear()
                if view is not None:
                    view(self.snapshot())
                done, why = self._done(baseline)
                if done:
                    notes.append(why)
                    self.on_event(why)
                    break
                if not all(t.is_alive() for t in threads):
                    raise InferloopError("a demo thread stopped unexpectedly (see the logs in the report folder)")
                if not self.observations and time.time() - self.state.started > 60:
                    raise InferloopError(
                        f"no prediction arrived in 60 s (sent {self.state.sent}); see "
                        f"{self.options.report_dir / 'logs' / 'worker.log'}"
                    )
            return self._report(baseline, time.monotonic() - began, notes)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(timeout=10)
            self._clean_up(started_stack)

    def _report(self, baseline: int, duration_s: float, notes: list[str]) -> DemoReport:
        from inferloop.kafka.readers import end_offsets

        with self.lock:
            obs = list(self.observations)
        final = max((o.version for o in obs), default=baseline)
        drift_holdout = [o for o in obs if o.phase == "drift" and o.holdout]
        logged = end_offsets(self.settings, self.settings.feedback.training_log_topic)
        elapsed = max((o.t_s for o in obs), default=1.0) - min((o.t_s for o in obs), default=0.0)
        announcements = self._promotion_records()
        started_ms = self.state.started * 1000
        promotions = [
            {
                "version": p.serving,
                "shadow_live_labels": p.evidence.get("shadow_live_labels"),
                "candidate_live_accuracy": p.evidence.get("candidate_live_accuracy"),
                "serving_live_accuracy": p.evidence.get("serving_live_accuracy"),
                "promoted_at_s": round(p.announced_at_ms / 1000 - self.state.started, 1),
            }
            for p in announcements
            if p.action == "promote" and p.announced_at_ms >= started_ms
        ]
        shadows: list[dict[str, Any]] = []
        for p in announcements:
            at_s = round(p.announced_at_ms / 1000 - self.state.started, 1)
            if shadows and shadows[-1].get("until_s") is None and p.shadow != shadows[-1]["version"]:
                shadows[-1]["until_s"] = at_s
            if (
                p.shadow is not None
                and p.announced_at_ms >= started_ms
                and (not shadows or shadows[-1]["version"] != p.shadow)
            ):
                shadows.append({"version": p.shadow, "at_s": at_s, "until_s": None})
        report = DemoReport(
            duration_s=round(duration_s, 1),
            final_serving_version=final,
            baseline_version=baseline,
            accuracy_before_drift=accuracy([o for o in obs if o.phase == "clean" and o.version == baseline]),
            accuracy_after_drift=accuracy([o for o in drift_holdout if o.version == baseline]),
            accuracy_recovered=accuracy([o for o in drift_holdout if o.version == final])
            if final != baseline
            else None,
            drift=DRIFT,
            drift_started_s=round(self.drift_started_s, 1),
            versions_published=self.published,
            events_sent=self.state.sent,
            predictions=len(obs),
            feedback_sent=self.state.feedback,
            examples_logged=sum(logged.values()) if logged else None,
            throughput_per_s=round(len(obs) / max(elapsed, 1e-3), 1),
            latency_p50_ms=percentile([o.latency_ms for o in obs], 50),
            latency_p99_ms=percentile([o.latency_ms for o in obs], 99),
            promotions=promotions,
            predictions_from_unverified=unverified_predictions(obs, announcements, self._verified_versions()),
            online_accuracy=self._joiner_accuracy() or {},
            topics={"prefix": f"demo-{self.tag}"},
            model=self.settings.model.name,
            notes=notes,
        )
        report.write(self.options.report_dir)
        write_chart(obs, self.drift_started_s, self.published, self.options.report_dir / "accuracy.png", shadows)
        return report

    def _clean_up(self, started_stack: bool) -> None:
        if self.options.keep_running:
            self.on_event(
                "--keep-running: worker, joiner, trainer and stack stay up (`inferloop down` stops the stack)"
            )
            return
        for pid in reversed(self.pids):
            stop_pid(pid, timeout_s=20)
        self._delete_topics()
        if started_stack:
            LocalStack(self.settings).down(on_event=self.on_event)

    def _delete_topics(self) -> None:
        from kafka.admin import KafkaAdminClient

        with contextlib.suppress(Exception):
            admin = KafkaAdminClient(**kafka_options(self.settings.kafka), client_id="inferloop-demo")
            try:
                mine = [t for t in admin.list_topics() if t.startswith(f"demo-{self.tag}")]
                if mine:
                    admin.delete_topics(mine)
            finally:
                admin.close()


FOLLOW_GRACE_MS = 5000  # a worker follows an announcement within a poll; its batch in flight may finish first


def unverified_predictions(observations: list[Observation], announcements: list[Any], verified: set[int]) -> int:
    """Predictions made by a version that was not the announced one at the time (allowing the version announced
    before it for ``FOLLOW_GRACE_MS`` after a change), or that the registry does not record as verified."""
    timeline = sorted((p.announced_at_ms, p.serving) for p in announcements)
    times = [t for t, _ in timeline]
    count = 0
    for o in observations:
        i = bisect.bisect_right(times, o.predicted_at_ms) - 1
        allowed = {timeline[i][1]} if i >= 0 else set()
        if i >= 1 and o.predicted_at_ms - times[i] <= FOLLOW_GRACE_MS:
            allowed.add(timeline[i - 1][1])
        count += o.version not in allowed or o.version not in verified
    return count
