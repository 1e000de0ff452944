"""The model lifecycle against the real Triton and Kafka: bootstrap, retrain, gates, verification beside the serving
version under load, promotion and rollback as announcements, failures, a publisher killed at each step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from inferloop.images.preprocess import InputSpec
from inferloop.kafka.promotions import PromotionLog
from inferloop.triton.control import TritonControl
from infra.local.kafka_broker import KafkaBroker
from infra.local.settings import LocalSettings
from infra.local.triton_server import TritonServer
from tests.helpers import inferloop, stack_env
from tests.integration.conftest import announced, drifted_digits, holdout_batch
from trainer.card import ModelCard
from trainer.data import digits_images, load_digits_dataset, split_holdout, write_image_folder
from trainer.errors import CandidateRejected, NotEnoughData, PublishError, StaleParent
from trainer.jobs import TrainerJobs, Triggers, retrain, run_trainer_loop
from trainer.jobs.context import publisher as publisher_of
from trainer.repository import ModelRepository

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass(frozen=True)
class Request:
    client: int
    started: int
    answered: int
    asked: int | None
    version: int


@dataclass
class LoadGenerator:
    """Clients that send inference requests in a loop until stopped, recording every outcome. Like the workers,
    they name the version the promotions topic announces (``follow``: polled in a thread of its own)."""

    url: str
    model: str
    x: np.ndarray
    follow: LocalSettings
    clients: int = 4
    versions: list[int] = field(default_factory=list)  # answering versions, in the order the answers came
    requests: list[Request] = field(default_factory=list)  # the same answers, with when and as what they were asked
    failures: list[str] = field(default_factory=list)
    pinned: int | None = None
    _ticket: int = 0  # one clock for starts and answers, so "asked after that answer came" can be said
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _watch(self) -> None:
        log = PromotionLog(self.follow)
        while not self._stop.is_set():
            latest = log.latest(self.model)
            self.pinned = latest.serving if latest is not None else None
            self._stop.wait(0.2)

    def _client(self, client: int) -> None:
        try:
            control = TritonControl(self.url)
        except Exception as exc:  # a client that never started counts as a failure, not as silence
            with self._lock:
                self.failures.append(repr(exc))
            return
        while not self._stop.is_set():
            if self.pinned is None:
                self._stop.wait(0.05)
                continue
            with self._lock:
                started, asked = self._ticket, self.pinned
                self._ticket += 1
            try:
                _, version = control.infer(self.model, self.x, version=asked)
                with self._lock:
                    self.versions.append(version)
                    self.requests.append(Request(client, started, self._ticket, asked, version))
                    self._ticket += 1
            except Exception as exc:  # every failure counts; the test asserts there are none
                with self._lock:
                    self.failures.append(repr(exc))
        control.close()

    def wait_until(self, condition: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"no {what} within {timeout_s:g} s; failures: {self.failures[-3:]}"
            threading.Event().wait(0.05)

    def clients_answered_by(self, version: int) -> int:
        with self._lock:
            return len({r.client for r in self.requests if r.version == version})

    def __enter__(self) -> LoadGenerator:
        self._threads = [threading.Thread(target=self._watch, daemon=True)]
        self._threads += [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def test_bootstrap_serves_v1_with_correct_predictions(
    bootstrapped: dict[str, str], triton_server: TritonServer
) -> None:
    models = json.loads(inferloop(bootstrapped, "models", "--json").stdout)
    assert [(m["version"], m["status"]) for m in models] == [(1, "serving")]
    assert models[0]["metrics"]["holdout_accuracy"] >= 0.97
    assert models[0]["created_at"]

    # Correct predictions on held-out images, over gRPC, from the real server.
    _, holdout = split_holdout(load_digits_dataset(InputSpec()), 0.2)
    control = TritonControl(triton_server.grpc_url)
    probabilities, version = control.infer("digits", holdout.x[:64])
    assert version == 1
    second, _ = control.infer("digits", holdout.x[64:128])
    predicted = np.concatenate([probabilities, second]).argmax(axis=1)
    assert np.mean(predicted == holdout.y[:128]) >= 0.97
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    # The model card names exactly which examples trained it, and they are disjoint from the holdout.
    card = ModelCard.read(triton_server.model_repository / "digits" / "1")
    assert card.version == 1 and card.parent is None
    assert card.lineage.base_dataset == "sklearn-digits"
    assert len(card.lineage.base_examples) + len(holdout) == 1797
    assert not set(card.lineage.base_examples) & set(holdout.ids)
    assert card.input_spec == InputSpec(channels=1, height=28, width=28)
    assert card.classes == [str(d) for d in range(10)]
    assert card.artifact_sha256 and card.code_version

    # The served config was rendered from code and carries the input contract and labels.
    config = control.config("digits")
    assert json.loads(config["parameters"]["labels"]["string_value"]) == card.classes
    assert config["version_policy"] == {"specific": {"versions": ["1"]}}


def test_bootstrap_refuses_to_overwrite(bootstrapped: dict[str, str]) -> None:
    again = inferloop(bootstrapped, "train", "--bootstrap")
    assert again.returncode == 1
    assert "already has versions" in again.stderr


@pytest.mark.faults
def test_a_new_version_is_verified_beside_the_serving_one_and_serves_only_once_promoted(
    fresh_model: LocalSettings, triton_server: TritonServer
) -> None:
    """v2 trained and published while 4 clients (following the promotions topic, as workers do) keep inferring:
    it is loaded beside v1 and verified, in shadow, and no request fails or reaches it; once promoted, answers
    move from v1 to v2, never back, still with no failed request."""
    images, labels = drifted_digits(240)
    write_image_folder(fresh_model.feedback_dir, images, labels, prefix="inv")
    jobs = TrainerJobs.from_settings(fresh_model)
    name = fresh_model.model.name
    with LoadGenerator(triton_server.grpc_url, name, holdout_batch(8), fresh_model) as load:
        outcome = retrain(jobs)
        assert outcome.version == 2 and outcome.status == "in shadow"
        assert announced(fresh_model) == (1, 2)
        in_shadow = len(load.versions)
        load.wait_until(lambda: len(load.versions) >= in_shadow + 50, "50 more answers in shadow")
        assert set(load.versions) == {1}, "a version in shadow answered a client"
        jobs.publisher.promote(2, reason="test")
        promoted = len(load.versions)
        load.wait_until(
            lambda: load.clients_answered_by(2) == load.clients and len(load.versions) >= promoted + 50,
            "every client answered by v2, and 50 answers since the promotion",
        )
    assert load.failures == []
    assert all(r.version == r.asked for r in load.requests), "a request was answered by a version it did not name"
    for client in range(load.clients):  # each client moves from v1 to v2 once, as a worker does
        mine = [r.version for r in load.requests if r.client == client]
        assert mine == sorted(mine), f"client {client} went back to v1: {mine}"
    # Requests asked before the promotion can still be answering when another client's v2 answer comes;
    # every request asked after that answer is v2's.
    first_v2 = min(r.answered for r in load.requests if r.version == 2)
    later = [r.version for r in load.requests if r.started > first_v2]
    assert later and set(later) == {2}, "after v2 answered, a request was answered by v1"
    assert Counter(load.versions)[1] > 0 and announced(fresh_model) == (2, None)

    # v2 learnt the drift, kept the old skill, passed the trusted gate, and its card says exactly what trained it.
    card = outcome.card
    assert card.parent == 1 and card.version == 2
    assert card.metrics.feedback_accuracy is not None and card.serving_metrics is not None
    assert card.metrics.feedback_accuracy >= card.serving_metrics.feedback_accuracy + 0.2
    assert card.metrics.holdout_accuracy >= 0.95
    assert card.trusted_gate is not None and card.trusted_gate["accepted"] and card.trusted_gate["best_version"] == 1
    new_ids = set(card.lineage.new_examples)
    assert new_ids and all(i.startswith("file:") for i in new_ids)
    assert card.lineage.replay_examples and all(i.startswith("sklearn-digits:") for i in card.lineage.replay_examples)
    repo = ModelRepository(triton_server.model_repository, name)
    assert {r["version"]: (r["status"], r["loaded"]) for r in repo.catalog()} == {
        1: ("retired", True),  # kept loaded: a rollback is an announcement
        2: ("serving", True),
    }

    # Nothing new since v2: the next run has nothing to train on.
    with pytest.raises(NotEnoughData):
        retrain(jobs)


def test_worse_candidate_is_rejected_and_v1_keeps_serving(
    fresh_model: LocalSettings, triton_server: TritonServer
) -> None:
    images, labels = digits_images()
    shuffled = list(np.random.default_rng(1).permutation([str(int(v)) for v in labels[:400]]))
    write_image_folder(fresh_model.feedback_dir, images[:400], shuffled, prefix="noise")
    settings = fresh_model.model_copy(
        update={"trainer": fresh_model.trainer.model_copy(update={"replay_ratio": 0.0, "finetune_learning_rate": 5e-3})}
    )
    jobs = TrainerJobs.from_settings(settings)
    with pytest.raises(CandidateRejected) as info:
        retrain(jobs)
    assert any("fixed holdout" in r for r in info.value.reasons)
    assert any("best version ever served (v1" in r for r in info.value.reasons)
    _, version = TritonControl(triton_server.grpc_url).infer(settings.model.name, holdout_batch(4))
    assert version == 1
    catalog = ModelRepository(triton_server.model_repository, settings.model.name).catalog()
    assert [(r["version"], r["status"]) for r in catalog] == [(1, "serving"), (None, "rejected")]
    assert catalog[1]["metrics"]["holdout_accuracy"] < 0.9
    assert (jobs.repo.rejected_dir / info.value.candidate_id / "model_card.json").exists()


def _unloadable(folder: Path) -> str:
    (folder / "model.onnx").write_bytes(b"this is not an onnx model")
    return "was not verified"


def _lying(folder: Path) -> str:
    """It loads, but its python backend reverses the classes: only the smoke test's comparison catches it."""
    served = (folder / "model.py").read_text()
    assert "probabilities[start : start + size]" in served
    (folder / "model.py").write_text(
        served.replace("probabilities[start : start + size]", "probabilities[start : start + size][:, ::-1]")
    )
    return "answers differently from its artifact"


@pytest.mark.faults
@pytest.mark.parametrize("breaks", [_unloadable, _lying], ids=["fails-to-load", "fails-its-smoke-test"])
def test_a_broken_version_never_serves_and_no_request_fails(
    fresh_model: LocalSettings, triton_server: TritonServer, tmp_path: Path, breaks: Callable[[Path], str]
) -> None:
    """Version 2 is broken (its ONNX file does not load; or it loads and answers differently from its artifact)
    while clients following the promotions topic keep inferring: it is refused, unloaded and recorded as
    rejected, and version 1, never unloaded, answered every request; its number is never reused."""
    name = fresh_model.model.name
    control = TritonControl(triton_server.grpc_url)
    publisher = publisher_of(fresh_model, control)
    repo = publisher.repo
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(repo.version_dir(1)), str(broken)], check=True)
    why = breaks(broken)
    load = LoadGenerator(triton_server.grpc_url, name, holdout_batch(4), fresh_model, clients=2)
    with load, pytest.raises(PublishError, match=why):
        publisher.publish(broken, repo.card(1))
    assert load.failures == [] and set(load.versions) == {1} and len(load.versions) > 0
    registry = repo.read_registry()
    assert (registry.promoted, registry.shadow, registry.loaded) == (1, None, [1]) and announced(fresh_model) == (
        1,
        None,
    )
    assert repo.versions() == [1] and registry.rejected[-1].version == 2
    assert [v.version for v in control.index(name) if v.state == "READY"] == [1], "the broken version is unloaded"
    assert "versions: [ 1 ]" in (repo.model_dir / "config.pbtxt").read_text()
    assert publisher.publish(repo.version_dir(1), repo.card(1)) == 3, "a number once given is never reused"
    assert [r["status"] for r in repo.catalog() if r["version"] == 2] == ["rejected"]


@pytest.mark.faults
def test_a_rollback_during_retraining_wins(fresh_model: LocalSettings, triton_server: TritonServer) -> None:
    """v2 serves; a retraining from v2 starts; during its first epoch an operator rolls back to v1: the candidate
    is discarded when it comes to publish (its parent no longer serves), and v1 keeps serving."""
    control = TritonControl(triton_server.grpc_url)
    publisher = publisher_of(fresh_model, control)
    repo = publisher.repo
    publisher.publish(repo.version_dir(1), repo.card(1))
    publisher.promote(2)
    images, labels = drifted_digits(60, seed=7)
    write_image_folder(fresh_model.feedback_dir, images, labels, prefix="inv")
    rolled_back: list[int] = []

    def operator_rolls_back(epoch: int, epochs: int, loss: float) -> None:
        if not rolled_back:  # another process in real life; a publisher of its own here
            rolled_back.append(publisher_of(fresh_model, TritonControl(triton_server.grpc_url)).rollback())

    lenient = fresh_model.trainer.model_copy(update={"tolerance": 0.1, "best_tolerance": 0.1})  # the gates pass
    jobs = TrainerJobs(fresh_model.model_copy(update={"trainer": lenient}), control, on_epoch=operator_rolls_back)
    with pytest.raises(StaleParent, match="trained from version 2, but version 1 serves now"):
        retrain(jobs, min_new_labels=20)
    assert rolled_back == [1] and announced(fresh_model) == (1, None)
    assert repo.versions() == [1, 2] and repo.read_registry().promoted == 1, "the stale candidate was published"


def test_promote_and_rollback_from_the_cli_are_announcements_of_verified_versions(
    fresh_model: LocalSettings, triton_server: TritonServer
) -> None:
    name = fresh_model.model.name
    control = TritonControl(triton_server.grpc_url)
    publisher = publisher_of(fresh_model, control)
    assert publisher.publish(publisher.repo.version_dir(1), publisher.repo.card(1)) == 2
    assert announced(fresh_model) == (1, 2)

    env = {**os.environ, **fresh_model.to_env(), "COLUMNS": "200"}
    statuses = {r["version"]: r["status"] for r in json.loads(inferloop(env, "models", "--json").stdout)}
    assert statuses == {1: "serving", 2: "shadow"}
    promoted = inferloop(env, "promote", "2")
    assert promoted.returncode == 0, promoted.stderr
    assert announced(fresh_model) == (2, None) and control.infer(name, holdout_batch(2), version=2)[1] == 2

    loads = [v.version for v in control.index(name) if v.state == "READY"]
    result = inferloop(env, "rollback")
    assert result.returncode == 0, result.stderr
    assert announced(fresh_model) == (1, None)
    assert [v.version for v in control.index(name) if v.state == "READY"] == loads, "no version loaded or unloaded"
    statuses = {r["version"]: r["status"] for r in json.loads(inferloop(env, "models", "--json").stdout)}
    assert statuses == {1: "serving", 2: "retired"}

    forward = inferloop(env, "rollback", "--to", "2")
    assert forward.returncode == 0, forward.stderr
    assert announced(fresh_model) == (2, None)
    missing = inferloop(env, "rollback", "--to", "9")
    assert missing.returncode == 1 and "never verified" in missing.stderr
    unverified = inferloop(env, "promote", "9")
    assert unverified.returncode == 1 and "never verified" in unverified.stderr
    assert announced(fresh_model) == (2, None)


@pytest.mark.faults
def test_publisher_killed_between_write_and_rename_leaves_the_repository_serving(
    fresh_model: LocalSettings, triton_server: TritonServer
) -> None:
    """A publisher (the trainer) SIGKILLed mid-publish, between writing a version and renaming it into place: v1
    keeps serving, the repository stays consistent, the next publish cleans up and succeeds."""
    name = fresh_model.model.name
    repo = ModelRepository(triton_server.model_repository, name)
    # A real publisher process: takes the lock, writes the version under staging, and dies before the rename.
    script = f"""
import os, signal
from pathlib import Path
from trainer.repository import ModelRepository
repo = ModelRepository(Path({str(triton_server.model_repository)!r}), {name!r})
with repo.lock():
    card = repo.card(1)
    card.version = 2
    repo.stage(repo.version_dir(1), card)
    os.kill(os.getpid(), signal.SIGKILL)
"""
    died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert died.returncode == -signal.SIGKILL
    assert list(repo.staging_dir.iterdir()), "the half-written version should still be there"
    assert repo.versions() == [1]
    control = TritonControl(triton_server.grpc_url)
    control.load(name)  # even a reload now sees only complete versions
    assert control.infer(name, holdout_batch(2))[1] == 1

    # The lock died with its holder; the next publisher cleans up and publishes.
    events: list[str] = []
    version = publisher_of(fresh_model, control).publish(repo.version_dir(1), repo.card(1), on_event=events.append)
    assert version == 2
    assert any("half-written" in e for e in events)
    assert not list(repo.staging_dir.iterdir())
    assert control.infer(name, holdout_batch(2), version=2)[1] == 2 and announced(fresh_model) == (1, 2)


# (the call a real publisher process makes, the progress event right after the step it is killed at, what then
# serves and is in shadow once the next lock holder reconciled: "new" is the version that call created)
KILL_STEPS = [
    ("publish", "wrote version", (1, None)),  # renamed into place
    ("publish", "lists versions", (1, None)),  # the config written
    ("publish", "Triton loaded", (1, None)),
    ("publish", "loaded and verified", (1, None)),  # smoke-tested, nothing recorded
    ("publish", "recorded: ", (1, "new")),  # shadow recorded, not announced: the decision stands
    ("end_shadow", "recorded: ", (1, None)),  # the candidate in shadow rejected, not announced
    ("promote", "recorded: ", ("new", None)),  # a promotion recorded, not announced
    ("rollback", "recorded: ", (1, None)),
    ("promote", "announced version", ("new", None)),  # announced, the rest (unloading) not done
]


@pytest.mark.faults
def test_a_publisher_killed_at_each_step_leaves_a_consistent_repository_and_serving_version(
    fresh_model: LocalSettings, triton_server: TritonServer
) -> None:
    """A publisher SIGKILLed right after each step of a publish (the version renamed into place, the config
    written, Triton loaded, the smoke test passed, the shadow recorded), of a rejection in shadow, a promotion
    and a rollback (recorded, not yet announced; or announced, not yet tidied): once the next lock holder (the
    trainer's next check) reconciles, the registry and the topic agree on what it decided, the config lists
    exactly the registry's loaded versions, all of them verified, and the announced version answers."""
    name = fresh_model.model.name
    repo = ModelRepository(triton_server.model_repository, name)
    control = TritonControl(triton_server.grpc_url)
    publisher = publisher_of(fresh_model, control)
    for action, marker, expected in KILL_STEPS:
        registry = repo.read_registry()
        if action == "publish":
            call = "publisher.publish(repo.version_dir(1), repo.card(1), on_event=die_after)"
        elif action == "end_shadow":
            call = f"publisher.end_shadow({registry.shadow}, ['killed test'], {{}}, on_event=die_after)"
        elif action == "promote":
            if registry.shadow is None and marker == "recorded: ":
                publisher.publish(repo.version_dir(1), repo.card(1))  # a candidate in shadow to promote
            target = repo.read_registry().shadow or max(repo.read_registry().verified)
            call = f"publisher.promote({target}, on_event=die_after)"
        else:
            call = "publisher.rollback(on_event=die_after)"
        created = max(repo.read_registry().last_version, 1)
        script = f"""
import os, signal
from inferloop.triton.control import TritonControl
from infra.local.settings import LocalSettings
from trainer.jobs.context import publisher as publisher_of

def die_after(message: str) -> None:
    if {marker!r} in message:
        os.kill(os.getpid(), signal.SIGKILL)

settings = LocalSettings.model_validate_json({fresh_model.model_dump_json()!r})
publisher = publisher_of(settings, TritonControl({triton_server.grpc_url!r}))
repo = publisher.repo
{call}
"""
        died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
        step = f"{action} killed after {marker!r}"
        assert died.returncode == -signal.SIGKILL, f"{step}: the publisher did not die there: {died.stderr[-2000:]}"
        new = repo.read_registry().last_version if action == "publish" else (target if action == "promote" else None)
        want = tuple(new if v == "new" else v for v in expected)
        events: list[str] = []
        publisher.reconcile(on_event=events.append)
        registry = repo.read_registry()
        assert (registry.promoted, registry.shadow) == announced(fresh_model) == want, (step, events)
        config = (repo.model_dir / "config.pbtxt").read_text()
        assert f"versions: [ {', '.join(map(str, registry.loaded))} ]" in config, (step, config)
        assert set(registry.loaded) <= set(registry.verified) and registry.promoted in registry.loaded, step
        served = registry.promoted
        assert control.infer(name, holdout_batch(2), version=served)[1] == served, step
        assert created <= registry.last_version, "a version number was reused"
    assert not list(repo.staging_dir.iterdir())


def test_concurrent_publishers_get_distinct_versions(fresh_model: LocalSettings, triton_server: TritonServer) -> None:
    repo = ModelRepository(triton_server.model_repository, fresh_model.model.name)
    results: list[int] = []
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            publisher = publisher_of(fresh_model, TritonControl(triton_server.grpc_url))
            results.append(publisher.publish(repo.version_dir(1), repo.card(1)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(results) == [2, 3]
    assert repo.versions() == [1, 2, 3]
    registry = repo.read_registry()
    assert (registry.promoted, registry.shadow) == announced(fresh_model) == (1, 3), "the newer candidate replaced 2"
    assert registry.loaded == [1, 3], "the candidate it replaced is unloaded"


def test_trainer_loop_retrains_when_enough_labels_arrive(
    fresh_model: LocalSettings, triton_server: TritonServer
) -> None:
    jobs = TrainerJobs.from_settings(fresh_model)
    stop = threading.Event()
    checks = run_trainer_loop(jobs, 0.01, Triggers(min_new_labels=20), stop=stop, max_runs=1)
    assert [str(check) for check in checks] == ["skipped: 0 new labels (count trigger at 20)"]
    images, labels = drifted_digits(60, seed=3)
    write_image_folder(fresh_model.feedback_dir, images, labels, prefix="inv")
    env = {
        **os.environ,
        **fresh_model.to_env(),
        "INFERLOOP_TRAINER__TOLERANCE": "0.05",
        "INFERLOOP_TRAINER__BEST_TOLERANCE": "0.05",
    }
    result = inferloop(env, "trainer", "--every", "1s", "--min-new-labels", "20", "--max-runs", "2")
    assert result.returncode == 0, result.stderr
    assert "published v2 (in shadow)" in result.stderr
    assert "shadow: 0/200 live labels in shadow" in result.stderr, "with a candidate in shadow, no retraining"
    assert announced(fresh_model) == (1, 2)


def test_bootstrap_from_an_image_folder(
    triton_server: TritonServer, kafka_broker: KafkaBroker, base_settings: LocalSettings, tmp_path: Path
) -> None:
    images, labels = digits_images()
    keep = [i for i, v in enumerate(labels) if v in (0, 1, 7)][:240]
    names = {0: "zero", 1: "one", 7: "seven"}
    write_image_folder(tmp_path / "data", images[keep], [names[int(labels[i])] for i in keep])
    env = stack_env(
        tmp_path / "home",
        base_settings.cache_dir,
        triton_server,
        kafka_broker,
        INFERLOOP_MODEL__NAME="folder-model",
        INFERLOOP_TRAINER__BOOTSTRAP_EPOCHS="8",
    )
    result = inferloop(env, "train", "--bootstrap", "--dataset", str(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    card = ModelCard.read(triton_server.model_repository / "folder-model" / "1")
    assert card.classes == ["one", "seven", "zero"]
    assert card.lineage.base_dataset == str((tmp_path / "data").resolve())
    assert all(i.startswith("file:") for i in card.lineage.base_examples)
    control = TritonControl(triton_server.grpc_url)
    config = control.config("folder-model")
    assert json.loads(config["parameters"]["labels"]["string_value"]) == card.classes
    probabilities, _ = control.infer("folder-model", holdout_batch(4))
    assert probabilities.shape == (4, 3)
    control.unload("folder-model")
