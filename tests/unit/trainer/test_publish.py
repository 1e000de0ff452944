"""Publishing, promoting and rolling back against a fake Triton control plane that loads what the rendered config
lists, computing with each version's own ONNX file, and an in-memory promotions topic (the integration tests do
the same against the real servers)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from inferloop.events import Promotion
from inferloop.kafka.errors import BrokerUnavailable
from inferloop.triton.control import NAMES, Answer, FloatArray, TensorNames, VersionState
from inferloop.triton.errors import ModelLoadFailed, TritonRequestFailed, TritonUnavailable
from trainer.card import ModelCard
from trainer.errors import PublishError, RepositoryError, StaleParent
from trainer.onnx_inference import onnx_proba
from trainer.publish import Publisher, ServingOptions
from trainer.repository import ModelRepository


class FakeControlPlane:
    """Loads exactly the versions ``config.pbtxt`` lists; ``broken`` versions answer wrongly, ``unloadable`` fail."""

    url = "fake:8001"

    def __init__(
        self,
        repo: ModelRepository,
        broken: set[int] = frozenset(),  # type: ignore[assignment]
        unloadable: set[int] = frozenset(),  # type: ignore[assignment]
        not_ready: set[int] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        self.repo, self.broken, self.unloadable, self.not_ready = repo, broken, unloadable, not_ready
        self.loaded: list[int] = []
        self.loads = 0

    def close(self) -> None: ...
    def server_live(self) -> bool:
        return True

    def require_live(self) -> None: ...

    def load(self, model: str, timeout_s: float = 120.0) -> None:
        text = (self.repo.model_dir / "config.pbtxt").read_text()
        listed = [int(v) for v in re.search(r"versions: \[ ([\d, ]+) \]", text).group(1).split(",")]  # type: ignore[union-attr]
        self.loads += 1
        if set(listed) & self.unloadable:
            raise ModelLoadFailed(model, "load", f"version {max(listed)} is at UNAVAILABLE state")
        self.loaded = listed

    def unload(self, model: str) -> None:
        self.loaded = []

    def is_ready(self, model: str, version: int | None = None) -> bool:
        return version in self.loaded

    def wait_ready(self, model: str, version: int, timeout_s: float) -> None:
        if version not in self.loaded:
            raise ModelLoadFailed(model, "load", f"version {version} not ready")

    def index(self, model: str) -> list[VersionState]:
        return [VersionState(v, "READY", "") for v in self.loaded]

    def config(self, model: str) -> dict[str, object]:
        return {}

    def infer(self, model: str, x: FloatArray, version: int | None = None, names: TensorNames = NAMES) -> Answer:
        if version not in self.loaded:
            raise TritonRequestFailed(model, "inference", f"version {version} is not served")
        if version in self.not_ready:  # what Triton answers while a version is not (or no longer) ready
            raise TritonUnavailable(self.url, 1.0, f"version {version} is not ready")
        out = onnx_proba(self.repo.version_dir(version) / "model.onnx", x)
        return (out[:, ::-1].copy() if version in self.broken else out), version


@pytest.fixture
def artifact(trained: tuple[Path, object, object], tmp_path: Path) -> tuple[Path, ModelCard]:
    folder, _, _ = trained
    return folder, ModelCard.read(folder)


class FakePromotions:
    """The promotions topic in memory; ``refuse`` makes the next announcements fail like an unreachable broker."""

    def __init__(self) -> None:
        self.records: list[Promotion] = []
        self.refuse = 0

    def latest(self, model: str) -> Promotion | None:
        mine = [p for p in self.records if p.model_name == model]
        return mine[-1] if mine else None

    def announce(self, promotion: Promotion) -> None:
        if self.refuse:
            self.refuse -= 1
            raise BrokerUnavailable("fake:9092", "refused")
        self.records.append(promotion)

    def state(self) -> tuple[int, int | None] | None:
        last = self.latest("digits")
        return None if last is None else (last.serving, last.shadow)


def publisher(
    tmp_path: Path, promotions: FakePromotions | None = None, **faults: set[int]
) -> tuple[Publisher, ModelRepository, FakeControlPlane]:
    repo = ModelRepository(tmp_path / "models", "digits")
    triton = FakeControlPlane(repo, **faults)
    options = ServingOptions(keep_versions=10, retire_grace_s=0)
    return Publisher(repo, triton, options, promotions or FakePromotions()), repo, triton


def loaded_versions(repo: ModelRepository) -> list[int]:
    text = (repo.model_dir / "config.pbtxt").read_text()
    return [int(v) for v in re.search(r"versions: \[ ([\d, ]+) \]", text).group(1).split(",")]  # type: ignore[union-attr]


def announced(pub: Publisher) -> tuple[int, int | None] | None:
    return pub.promotions.state()  # type: ignore[attr-defined, no-any-return]


def v1_serving_v2_in_shadow(pub: Publisher, artifact: tuple[Path, ModelCard]) -> None:
    assert [pub.publish(*artifact), pub.publish(*artifact)] == [1, 2]
    assert announced(pub) == (1, 2)


def test_a_first_version_is_promoted_once_verified_and_the_next_goes_into_shadow_beside_it(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    assert pub.publish(folder, card) == 1
    assert announced(pub) == (1, None) and repo.read_registry().promoted == 1
    assert pub.publish(folder, card) == 2
    registry = repo.read_registry()
    assert (registry.promoted, registry.shadow, registry.loaded, registry.verified) == (1, 2, [1, 2], [1, 2])
    assert announced(pub) == (1, 2), "verified and in shadow: scored beside version 1, serving nothing"
    assert loaded_versions(repo) == [1, 2] and triton.loaded == [1, 2], "the serving version was never unloaded"
    assert repo.card(2).version == 2 and repo.card(2).artifact_sha256 == card.artifact_sha256
    assert [e["event"] for e in registry.history] == ["verified", "promoted", "verified", "shadow"]
    assert [r["status"] for r in repo.catalog()] == ["serving", "shadow"]


def test_promotions_keep_the_previous_version_loaded_and_unload_older_ones(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    card.trusted_gate = {"candidate_accuracy": 0.96, "source": "the dataset's fixed holdout"}
    for expected in (1, 2, 3):
        assert pub.publish(folder, card) == expected
        if expected > 1:
            pub.promote(expected, evidence={"shadow_live_labels": 200}, reason="test")
    registry = repo.read_registry()
    assert registry.promoted == 3 and registry.shadow is None and registry.loaded == [2, 3] and triton.loaded == [2, 3]
    assert announced(pub) == (3, None)
    assert repo.card(3).shadow_evidence == {"shadow_live_labels": 200}
    assert registry.trusted["3"] == {"source": "the dataset's fixed holdout", "accuracy": 0.96}, "kept past pruning"
    assert {r["version"]: r["status"] for r in repo.catalog()} == {1: "retired", 2: "retired", 3: "serving"}


@pytest.mark.parametrize("fault", ["broken", "unloadable", "not_ready"])
def test_a_version_that_fails_is_set_aside_and_the_old_one_never_stops_serving(
    artifact: tuple[Path, ModelCard], tmp_path: Path, fault: str
) -> None:
    pub, repo, triton = publisher(tmp_path, **{fault: {2}})
    folder, card = artifact
    pub.publish(folder, card)
    with pytest.raises(PublishError, match="version 2 of digits was not verified"):
        pub.publish(folder, card)
    registry = repo.read_registry()
    assert registry.promoted == 1 and registry.loaded == [1] and loaded_versions(repo) == [1] and triton.loaded == [1]
    assert announced(pub) == (1, None) and len(pub.promotions.records) == 1  # type: ignore[attr-defined]
    assert repo.versions() == [1] and [p.name.split("-")[0] for p in repo.rejected_dir.iterdir()] == ["v2"]
    assert registry.rejected[-1].version == 2 and registry.rejected[-1].candidate_id == card.candidate_id
    assert registry.history[-1]["event"] == "publish_failed"
    triton.broken, triton.unloadable, triton.not_ready = set(), set(), set()
    assert pub.publish(folder, card) == 3, "a number once given is never reused"


def test_the_config_names_the_repository_model_whatever_the_card_says(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, _ = publisher(tmp_path)
    folder, card = artifact
    card.model_name = "copied-from-elsewhere"
    assert pub.publish(folder, card) == 1
    assert 'name: "digits"' in (repo.model_dir / "config.pbtxt").read_text()


def test_a_first_version_that_fails_leaves_nothing_served(artifact: tuple[Path, ModelCard], tmp_path: Path) -> None:
    pub, repo, triton = publisher(tmp_path, broken={1})
    folder, card = artifact
    with pytest.raises(PublishError):
        pub.publish(folder, card)
    assert not (repo.model_dir / "config.pbtxt").exists() and triton.loaded == []
    assert repo.read_registry().loaded == [] and announced(pub) is None


def test_a_rollback_is_an_announcement_when_the_version_is_still_loaded(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    for v in (1, 2, 3):
        pub.publish(folder, card)
        if v > 1:
            pub.promote(v)
    loads = triton.loads
    assert pub.rollback() == 2
    assert triton.loads == loads, "version 2 was still loaded: no reload"
    assert announced(pub) == (2, None) and repo.read_registry().promoted == 2
    assert pub.rollback(to=1) == 1, "version 1 was unloaded: loaded again and verified again first"
    assert triton.loads > loads and 1 in triton.loaded
    with pytest.raises(RepositoryError, match="already serving"):
        pub.rollback(to=1)
    with pytest.raises(RepositoryError, match="never verified"):
        pub.rollback(to=9)
    assert repo.read_registry().promoted == 1 and announced(pub) == (1, None)


def test_a_rollback_whose_target_fails_keeps_the_current_version(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    for v in (1, 2, 3):
        pub.publish(folder, card)
        if v > 1:
            pub.promote(v)
    triton.broken = {1}
    with pytest.raises(PublishError, match="version 1 could not be loaded and verified again"):
        pub.rollback(to=1)
    assert repo.read_registry().promoted == 3 and triton.loaded == [2, 3] and announced(pub) == (3, None)
    assert np.all(np.isfinite(triton.infer("digits", np.zeros((1, 1, 28, 28), np.float32), 3)[0]))


def test_a_rollback_drops_the_candidate_in_shadow(artifact: tuple[Path, ModelCard], tmp_path: Path) -> None:
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    v1_serving_v2_in_shadow(pub, artifact)
    pub.promote(2)
    pub.publish(folder, card)  # 3, in shadow, trained from 2
    assert announced(pub) == (2, 3)
    assert pub.rollback() == 1
    registry = repo.read_registry()
    assert announced(pub) == (1, None) and registry.shadow is None and 3 not in triton.loaded
    with pytest.raises(StaleParent, match="no longer in shadow"):
        pub.promote(3, expect_shadow=True)


def test_only_verified_versions_can_be_promoted(artifact: tuple[Path, ModelCard], tmp_path: Path) -> None:
    """A version folder put in the repository by hand never passed the smoke test: it is refused."""
    pub, repo, _ = publisher(tmp_path)
    folder, card = artifact
    pub.publish(folder, card)
    shutil.copytree(repo.version_dir(1), repo.version_dir(5))
    with pytest.raises(RepositoryError, match="version 5 of digits was never verified"):
        pub.promote(5)
    assert announced(pub) == (1, None)


def test_a_candidate_that_loses_in_shadow_is_rejected_and_unloaded(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    v1_serving_v2_in_shadow(pub, artifact)
    pub.end_shadow(2, ["less accurate live"], {"candidate_live_accuracy": 0.5, "serving_live_accuracy": 0.9})
    registry = repo.read_registry()
    assert announced(pub) == (1, None) and registry.shadow is None and triton.loaded == [1]
    assert registry.rejected[-1].version == 2 and repo.versions() == [1]
    with pytest.raises(RepositoryError, match="never verified"):
        pub.promote(2)


class FlakyControlPlane(FakeControlPlane):
    """A fake whose next ``failing_loads`` loads raise ``error`` (an unreachable Triton, a client timeout, a bug)."""

    def __init__(self, repo: ModelRepository, error: BaseException, failing_loads: int) -> None:
        super().__init__(repo)
        self.error, self.failing_loads = error, failing_loads

    def load(self, model: str, timeout_s: float = 120.0) -> None:
        if self.failing_loads:
            self.failing_loads -= 1
            raise self.error
        super().load(model, timeout_s)


@pytest.mark.parametrize(
    "error",
    [TritonUnavailable("fake:8001", 120.0, "deadline exceeded"), RuntimeError("a bug"), KeyboardInterrupt()],
    ids=["unavailable", "unexpected", "interrupted"],
)
def test_any_failure_after_the_config_puts_the_loaded_versions_back_even_with_triton_down(
    artifact: tuple[Path, ModelCard], tmp_path: Path, error: BaseException
) -> None:
    """The load raises whatever it raises, and so does the reload that restores: the config on disk still goes
    back to the loaded versions (a Triton that restarts loads what it lists), and the registry says so."""
    folder, card = artifact
    repo = ModelRepository(tmp_path / "models", "digits")
    promotions = FakePromotions()
    Publisher(repo, FakeControlPlane(repo), ServingOptions(), promotions).publish(folder, card)
    failing = 1 if isinstance(error, KeyboardInterrupt) else 2  # the new version's load, then the restoring reload
    flaky = FlakyControlPlane(repo, error, failing_loads=failing)
    events: list[str] = []
    with pytest.raises((PublishError, KeyboardInterrupt)):
        Publisher(repo, flaky, ServingOptions(), promotions).publish(folder, card, on_event=events.append)
    assert loaded_versions(repo) == [1] and repo.read_registry().loaded == [1] and promotions.state() == (1, None)
    assert repo.read_registry().history[-1]["event"] == "publish_failed"
    assert failing == 1 or any("did not reload" in e for e in events), events
    assert isinstance(error, Exception) or flaky.loaded == [1], "after an interrupt Triton reloads the old version"


def test_a_publisher_that_died_after_writing_the_config_is_reconciled_at_the_next_lock(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    """The config lists an unverified version (its publisher died before recording anything); the next
    publisher first puts back what the registry says is loaded, then goes on."""
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    pub.publish(folder, card)
    repo.write_config(pub._config_for(card, [1, 7]))  # what a publisher killed after write_config leaves
    events: list[str] = []
    assert pub.publish(folder, card, on_event=events.append) == 2
    assert any("a publisher died mid-way" in e for e in events), events
    assert loaded_versions(repo) == [1, 2] and triton.loaded == [1, 2]


def test_the_registry_is_the_authority_and_the_topic_hears_it_again_when_it_says_otherwise(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    promotions = FakePromotions()
    pub, repo, _ = publisher(tmp_path, promotions)
    folder, card = artifact
    pub.publish(folder, card)
    pub.publish(folder, card)  # 2 in shadow
    events: list[str] = []
    for stale in (Promotion("digits", 2, None, "promote"), Promotion("digits", 7, None, "promote")):
        promotions.records.append(stale)  # written by hand, by another repository, or an old record
        pub.reconcile(on_event=events.append)
        assert promotions.state() == (1, 2) and promotions.records[-1].action == "reconcile"
        assert (repo.read_registry().promoted, repo.read_registry().shadow) == (1, 2)
    # a publisher that died after recording a decision but before announcing it: the next lock holder announces it
    registry = repo.read_registry()
    registry.promoted, registry.shadow = 2, None
    registry.event("promoted", version=2, previous=1)
    repo.write_registry(registry)
    pub.reconcile(on_event=events.append)
    assert promotions.state() == (2, None)
    assert repo.read_registry().promoted_before() == [1]


def test_an_announcement_the_broker_refuses_changes_nothing(artifact: tuple[Path, ModelCard], tmp_path: Path) -> None:
    promotions = FakePromotions()
    pub, repo, triton = publisher(tmp_path, promotions)
    folder, card = artifact
    v1_serving_v2_in_shadow(pub, artifact)
    before = repo.read_registry()
    promotions.refuse = 1
    with pytest.raises(BrokerUnavailable):
        pub.promote(2)
    assert repo.read_registry() == before and promotions.state() == (1, 2) and triton.loaded == [1, 2]
    promotions.refuse = 1
    with pytest.raises(PublishError, match="verified but was not announced"):
        pub.publish(folder, card)  # 3: verified, loaded beside, never announced
    registry = repo.read_registry()
    assert (registry.promoted, registry.shadow) == (1, 2) and promotions.state() == (1, 2) and 3 in registry.verified
    assert pub.promote(3) == 3 and promotions.state() == (3, None), "once the broker answers it can be promoted"


def test_a_first_publish_that_died_before_its_promotion_does_not_block_the_next(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    """Killed after verifying version 1 but before announcing it: nothing serves; the next publish (a bootstrap
    run again) promotes its own version, and the orphan is not kept loaded."""
    promotions = FakePromotions()
    pub, repo, triton = publisher(tmp_path, promotions)
    folder, card = artifact
    promotions.refuse = 1  # stands for the kill: the registry keeps v1 verified and loaded, nothing promoted
    with pytest.raises(PublishError):
        pub.publish(folder, card)
    assert repo.read_registry().promoted is None and promotions.state() is None
    assert pub.publish(folder, card) == 2
    registry = repo.read_registry()
    assert (registry.promoted, registry.shadow) == (2, None) == promotions.state()
    assert triton.loaded == [2] and registry.loaded == [2], "the orphan is unloaded"


def test_a_candidate_whose_parent_no_longer_serves_is_discarded(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    """Trained from v1 while an operator promoted v2 (or rolled back): publishing it would silently undo that."""
    pub, repo, triton = publisher(tmp_path)
    folder = artifact[0]
    v1_serving_v2_in_shadow(pub, artifact)
    pub.promote(2)
    stale = ModelCard.read(folder)
    stale.parent = 1
    with pytest.raises(StaleParent, match=re.escape("trained from version 1, but version 2 serves now")):
        pub.publish(folder, stale)
    assert repo.read_registry().promoted == 2 and repo.versions() == [1, 2] and triton.loaded == [1, 2]
    fresh = ModelCard.read(folder)
    fresh.parent = 2
    assert pub.publish(folder, fresh) == 3


def test_a_rollback_reconciles_first_and_a_trainer_check_does_too(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    card = artifact[1]
    v1_serving_v2_in_shadow(pub, artifact)
    pub.promote(2)
    repo.write_config(pub._config_for(card, [9]))  # left by a dead publisher
    events: list[str] = []
    pub.reconcile(on_event=events.append)  # what the trainer's loop does at every check
    assert loaded_versions(repo) == [1, 2] and triton.loaded == [1, 2] and any("died mid-way" in e for e in events)
    repo.write_config(pub._config_for(card, [9]))
    assert pub.rollback(on_event=events.append) == 1
    assert loaded_versions(repo) == [1, 2] and repo.read_registry().promoted == 1


def test_a_candidate_with_other_classes_is_refused_while_versions_sharing_the_config_are_loaded(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    pub.publish(folder, card)
    other = ModelCard.read(folder)
    other.classes = [f"c{i}" for i in range(len(card.classes))]
    with pytest.raises(PublishError, match="Triton's config is shared by the loaded versions"):
        pub.publish(folder, other)
    assert repo.versions() == [1] and triton.loaded == [1]


def test_a_config_rendered_for_other_serving_options_is_rendered_again(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    """A helm upgrade from the python backend to the stock image's native one (or to GPUs, or TensorRT) keeps the
    versions: the next reconcile rewrites the config for the new settings and reloads it; unchanged settings
    leave it alone."""
    from dataclasses import replace

    from inferloop.triton.model_config import KIND_GPU, TensorRT

    pub, repo, triton = publisher(tmp_path)
    v1_serving_v2_in_shadow(pub, artifact)
    config = repo.model_dir / "config.pbtxt"
    before, loads = config.read_text(), triton.loads
    assert 'backend: "python"' in before

    events: list[str] = []
    pub.reconcile(on_event=events.append)
    assert config.read_text() == before and triton.loads == loads and not events  # nothing changed, nothing done

    native = replace(pub.options, native=True, instance_kind=KIND_GPU, tensorrt=TensorRT("FP16"))
    upgraded = Publisher(repo, triton, native, pub.promotions)
    upgraded.reconcile(on_event=events.append)
    after = config.read_text()
    assert 'platform: "onnxruntime_onnx"' in after and "KIND_GPU" in after and '"FP16"' in after
    assert 'backend: "python"' not in after
    assert loaded_versions(repo) == [1, 2] and triton.loads == loads + 1  # same versions, reloaded
    assert any("other serving options" in e for e in events) and any("verified again" in e for e in events)
    assert announced(upgraded) == (1, 2)  # serving never moved
    upgraded.reconcile(on_event=events.append)
    assert triton.loads == loads + 1  # verified and recorded: not again


def test_versions_that_fail_verification_with_new_serving_options_fail_the_check_until_they_pass(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    """On the new numerical path a loaded version answers otherwise than its artifact: the check raises (the
    trainer's alerts fire, nothing is announced), and the next check verifies again rather than trusting the
    config it already wrote."""
    from dataclasses import replace

    pub, repo, triton = publisher(tmp_path)
    v1_serving_v2_in_shadow(pub, artifact)
    triton.broken = {2}  # what a wrong engine would answer
    upgraded = Publisher(repo, triton, replace(pub.options, max_queue_delay_us=500), pub.promotions)
    for _ in range(2):
        loads = triton.loads
        with pytest.raises(PublishError, match="version 2 answers differently"):
            upgraded.reconcile(on_event=lambda _: None)
        assert triton.loads == loads + 1
    triton.broken = set()
    upgraded.reconcile(on_event=lambda _: None)
    assert "max_queue_delay_microseconds: 500" in (repo.model_dir / "config.pbtxt").read_text()
    loads = triton.loads
    upgraded.reconcile(on_event=lambda _: None)
    assert triton.loads == loads


def test_a_missing_card_does_not_block_the_reconcile(artifact: tuple[Path, ModelCard], tmp_path: Path) -> None:
    """Another loaded version's card stands in (the versions of a model share classes and input); with none at
    all the options are left as they are, and rollbacks and checks still run."""
    pub, repo, _ = publisher(tmp_path)
    v1_serving_v2_in_shadow(pub, artifact)
    (repo.version_dir(2) / "model_card.json").unlink()
    events: list[str] = []
    pub.reconcile(on_event=events.append)
    assert any("version 2 of digits has no readable card" in e for e in events)
    (repo.version_dir(1) / "model_card.json").unlink()
    pub.reconcile(on_event=events.append)  # no card at all: nothing to render with, nothing raised
