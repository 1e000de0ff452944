"""Publishing and rolling back against a fake Triton control plane that serves what the rendered config lists,
computing with each version's own ONNX file (the integration tests do the same against the real server)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

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


def publisher(tmp_path: Path, **faults: set[int]) -> tuple[Publisher, ModelRepository, FakeControlPlane]:
    repo = ModelRepository(tmp_path / "models", "digits")
    triton = FakeControlPlane(repo, **faults)
    return Publisher(repo, triton, ServingOptions(keep_versions=10)), repo, triton


def publish_twice(pub: Publisher, artifact: tuple[Path, ModelCard]) -> None:
    """v1 then v2: v2 serves, v1 is retired (there is something to roll back to)."""
    assert [pub.publish(*artifact), pub.publish(*artifact)] == [1, 2]


def served_versions(repo: ModelRepository) -> list[int]:
    text = (repo.model_dir / "config.pbtxt").read_text()
    return [int(v) for v in re.search(r"versions: \[ ([\d, ]+) \]", text).group(1).split(",")]  # type: ignore[union-attr]


def test_publishing_serves_the_new_version_and_retires_the_old(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    assert pub.publish(folder, card) == 1
    assert pub.publish(folder, card) == 2
    assert repo.read_registry().serving == [2] and served_versions(repo) == [2] and triton.loaded == [2]
    assert repo.versions() == [1, 2], "a retired version stays on disk for rollback"
    assert repo.card(2).version == 2 and repo.card(2).artifact_sha256 == card.artifact_sha256
    assert [e["event"] for e in repo.read_registry().history] == ["published", "published"]


@pytest.mark.parametrize("fault", ["broken", "unloadable", "not_ready"])
def test_a_version_that_fails_is_set_aside_and_the_old_one_keeps_serving(
    artifact: tuple[Path, ModelCard], tmp_path: Path, fault: str
) -> None:
    pub, repo, triton = publisher(tmp_path, **{fault: {2}})
    folder, card = artifact
    pub.publish(folder, card)
    with pytest.raises(PublishError, match="version 2 of digits was not put in service"):
        pub.publish(folder, card)
    registry = repo.read_registry()
    assert registry.serving == [1] and served_versions(repo) == [1] and triton.loaded == [1]
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
    assert repo.read_registry().serving == []


def test_rollback_serves_the_version_before(artifact: tuple[Path, ModelCard], tmp_path: Path) -> None:
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    for _ in range(3):
        pub.publish(folder, card)
    assert pub.rollback() == 2
    assert repo.read_registry().serving == [2] and served_versions(repo) == [2] and triton.loaded == [2]
    assert pub.rollback(to=1) == 1
    with pytest.raises(RepositoryError, match="already serving"):
        pub.rollback(to=1)
    with pytest.raises(RepositoryError, match="no version 9"):
        pub.rollback(to=9)
    assert repo.read_registry().serving == [1]


def test_a_rollback_whose_target_fails_keeps_the_current_version(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    publish_twice(pub, artifact)
    triton.broken = {1}
    with pytest.raises(PublishError, match="rollback to version 1 failed, 2 still serves"):
        pub.rollback(to=1)
    assert repo.read_registry().serving == [2] and triton.loaded == [2]
    assert np.all(np.isfinite(triton.infer("digits", np.zeros((1, 1, 28, 28), np.float32), 2)[0]))


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
def test_any_failure_after_the_config_puts_the_serving_version_back_even_with_triton_down(
    artifact: tuple[Path, ModelCard], tmp_path: Path, error: BaseException
) -> None:
    """The load raises whatever it raises, and so does the reload that restores: the config on disk still goes
    back to the serving version (a Triton that restarts serves what it lists), and the registry says so."""
    folder, card = artifact
    repo = ModelRepository(tmp_path / "models", "digits")
    good = Publisher(repo, FakeControlPlane(repo), ServingOptions())
    good.publish(folder, card)
    failing = 1 if isinstance(error, KeyboardInterrupt) else 2  # the new version's load, then the restoring reload
    flaky = FlakyControlPlane(repo, error, failing_loads=failing)
    events: list[str] = []
    with pytest.raises((PublishError, KeyboardInterrupt)):
        Publisher(repo, flaky, ServingOptions()).publish(folder, card, on_event=events.append)
    assert served_versions(repo) == [1] and repo.read_registry().serving == [1]
    assert repo.read_registry().history[-1]["event"] == "publish_failed"
    assert failing == 1 or any("did not reload" in e for e in events), events
    assert isinstance(error, Exception) or flaky.loaded == [1], "after an interrupt Triton reloads the old version"


def test_a_publisher_that_died_after_writing_the_config_is_reconciled_at_the_next_lock(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    """The config lists an unverified version (its publisher died before recording anything); the next
    publisher first puts back what the registry says serves, then goes on."""
    pub, repo, triton = publisher(tmp_path)
    folder, card = artifact
    pub.publish(folder, card)
    repo.write_config(pub._config_for(card, [1, 7]))  # what a publisher killed after write_config leaves
    events: list[str] = []
    assert pub.publish(folder, card, on_event=events.append) == 2
    assert any("a publisher died mid-way" in e for e in events), events
    assert served_versions(repo) == [2] and triton.loaded == [2]
    history = [e["event"] for e in repo.read_registry().history]
    assert history == ["published", "published"]


def test_a_candidate_whose_parent_no_longer_serves_is_discarded(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    """Trained from v1 while an operator rolled forward to v2 (or back): publishing it would silently undo that."""
    pub, repo, triton = publisher(tmp_path)
    folder = artifact[0]
    publish_twice(pub, artifact)
    stale = ModelCard.read(folder)
    stale.parent = 1
    with pytest.raises(StaleParent, match=re.escape("trained from version 1, but [2] serves now")):
        pub.publish(folder, stale)
    assert repo.read_registry().serving == [2] and repo.versions() == [1, 2] and triton.loaded == [2]
    fresh = ModelCard.read(folder)
    fresh.parent = 2
    assert pub.publish(folder, fresh) == 3


def test_a_rollback_reconciles_first_and_a_trainer_check_does_too(
    artifact: tuple[Path, ModelCard], tmp_path: Path
) -> None:
    pub, repo, triton = publisher(tmp_path)
    card = artifact[1]
    publish_twice(pub, artifact)
    repo.write_config(pub._config_for(card, [9]))  # left by a dead publisher
    events: list[str] = []
    pub.reconcile(on_event=events.append)  # what the trainer's loop does at every check
    assert served_versions(repo) == [2] and triton.loaded == [2] and any("died mid-way" in e for e in events)
    repo.write_config(pub._config_for(card, [9]))
    assert pub.rollback(on_event=events.append) == 1
    assert served_versions(repo) == [1] and repo.read_registry().serving == [1]
