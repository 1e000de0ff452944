from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from inferloop.images.preprocess import InputSpec
from trainer.card import Lineage, Metrics, ModelCard
from trainer.errors import RepositoryError
from trainer.repository import ModelRepository, Rejection


def _card(version: int | None = None) -> ModelCard:
    return ModelCard(
        model_name="m",
        candidate_id=f"c{version}",
        created_at=f"2026-01-0{version or 1}T00:00:00+00:00",
        parent=None,
        classes=["a", "b"],
        input_spec=InputSpec(1, 8, 8),
        lineage=Lineage(base_dataset="x"),
        metrics=Metrics(holdout_accuracy=0.9, holdout_examples=10),
        fit={},
        training_seconds=0.1,
        version=version,
    )


def _artifact(tmp_path: Path, name: str = "artifact") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "model.py").write_text("# model")
    return folder


def test_stage_and_commit_make_a_complete_version(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo", "m")
    staged = repo.stage(_artifact(tmp_path), _card(1))
    assert repo.versions() == []  # staged versions are invisible
    assert staged.parent == repo.staging_dir
    repo.commit(staged, 1)
    assert repo.versions() == [1]
    assert repo.card(1).version == 1
    with pytest.raises(RepositoryError, match="never reused"):
        repo.commit(repo.stage(_artifact(tmp_path, "again"), _card(1)), 1)


def test_clean_staging_removes_leftovers(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo", "m")
    repo.stage(_artifact(tmp_path), _card(2))
    assert len(repo.clean_staging()) == 1
    assert list(repo.staging_dir.iterdir()) == []


def test_rejections_written_with_fewer_fields_are_still_read(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo", "m")
    repo.ensure()
    partial = {"candidate_id": "c9", "version": None, "at": "2026-01-09T00:00:00+00:00", "reasons": ["worse"]}
    repo.registry_path.write_text(json.dumps({"serving": [], "last_version": 0, "rejected": [partial]}))
    assert [(r["candidate_id"], r["status"], r["metrics"]) for r in repo.catalog()] == [("c9", "rejected", {})]


def test_registry_round_trip_and_damage_is_reported(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo", "m")
    registry = repo.read_registry()
    registry.loaded, registry.verified, registry.promoted, registry.shadow, registry.last_version = (
        [3, 4],
        [3, 4],
        3,
        4,
        4,
    )
    registry.event("promoted", version=3)
    repo.write_registry(registry)
    again = repo.read_registry()
    assert again == registry and again.history[0]["event"] == "promoted"
    repo.registry_path.write_text("{not json")
    with pytest.raises(RepositoryError, match="damaged"):
        repo.read_registry()


def test_a_registry_an_older_inferloop_wrote_reads_as_verified_and_promoted(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo", "m")
    repo.ensure()
    history = [{"at": "", "event": e, "version": v} for e, v in (("published", 1), ("published", 2), ("rollback", 1))]
    history += [{"at": "", "event": "publish_failed", "version": 3}]
    old = {"serving": [1], "last_version": 3, "history": history}
    repo.registry_path.write_text(json.dumps(old))
    registry = repo.read_registry()
    assert (registry.loaded, registry.verified, registry.promoted, registry.shadow) == ([1], [1, 2], 1, None)
    assert registry.promoted_before() == [2], "what it served before can be rolled back to"


def test_catalog_lists_serving_shadow_retired_and_rejected(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo", "m")
    for v in (1, 2, 3):
        repo.commit(repo.stage(_artifact(tmp_path, f"a{v}"), _card(v)), v)
    registry = repo.read_registry()
    registry.loaded, registry.verified, registry.promoted, registry.shadow = [2, 3], [1, 2, 3], 2, 3
    registry.event("promoted", version=1)
    registry.event("promoted", version=2)
    registry.rejected.append(Rejection("c9", None, "2026-01-09T00:00:00+00:00", ["worse"], {}, parent=2))
    repo.write_registry(registry)
    assert repo.read_registry().rejected == registry.rejected, "rejections are read back as written"
    rows = repo.catalog()
    assert [(r["version"], r["status"], r["loaded"]) for r in rows] == [
        (1, "retired", False),
        (2, "serving", True),
        (3, "shadow", True),
        (None, "rejected", False),
    ]
    assert rows[0]["metrics"]["holdout_accuracy"] == 0.9
    json.dumps(rows)


def test_prune_keeps_the_newest_and_the_protected(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo", "m")
    for v in range(1, 6):
        repo.commit(repo.stage(_artifact(tmp_path, f"a{v}"), _card(v)), v)
    assert repo.prune(keep=2, protected=[1]) == [2, 3]
    assert repo.versions() == [1, 4, 5]


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ""])
def test_model_names_cannot_leave_the_repository(tmp_path: Path, name: str) -> None:
    with pytest.raises(RepositoryError):
        ModelRepository(tmp_path, name)


def test_lock_serialises_publishers(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo", "m")
    order: list[str] = []

    def hold() -> None:
        with repo.lock():
            order.append("first in")
            time.sleep(0.3)
            order.append("first out")

    thread = threading.Thread(target=hold)
    thread.start()
    time.sleep(0.1)
    with repo.lock():
        order.append("second in")
    thread.join()
    assert order == ["first in", "first out", "second in"]
    # A second handle in the same process conflicts like another process would.
    other = ModelRepository(tmp_path / "repo", "m")
    with repo.lock(), pytest.raises(RepositoryError, match="another publisher"), other.lock(timeout_s=0.2):
        pass


def test_a_model_folder_that_is_a_symlink_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "models", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "digits").symlink_to(elsewhere)
    with pytest.raises(RepositoryError, match="outside the repository"):
        ModelRepository(root, "digits")
