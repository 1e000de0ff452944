"""One model's folder in the Triton model repository, and inferloop's records beside its versions.

Layout (``<repo>/<model>/``)::

    config.pbtxt            rendered from code; lists exactly the versions Triton loads
    1/ 2/ ...               version folders: model.onnx, model.py, weights.pt, model_card.json
    _inferloop/             not numeric, so Triton ignores it
        registry.json       which versions are loaded, verified, promoted and in shadow, the last number
                            given, history, rejected candidates
        publish.lock        held by the one publisher at work
        staging/            versions being written (renamed into place when complete)
        candidates/         artifacts the trainer produced, before the gate
        rejected/<id>/      model cards of rejected candidates and of versions that failed to load

Writes are atomic: a file is written beside its target, fsynced and renamed; a version folder is written
under ``staging/``, fsynced and renamed to its number, so Triton never sees a half-written version.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inferloop.triton.model_config import NAME_PATTERN, ModelConfig
from trainer.card import CARD_FILE, ModelCard, utc_now
from trainer.errors import LockBusy, RepositoryError

STATE_DIR = "_inferloop"
CONFIG_FILE = "config.pbtxt"


@dataclass(frozen=True)
class Rejection:
    """A candidate the gate refused, or a version that failed to load or to answer its smoke test."""

    candidate_id: str
    version: int | None  # None: refused before it was given a number
    at: str
    reasons: list[str]
    metrics: dict[str, Any]
    parent: int | None

    @classmethod
    def of(cls, card: ModelCard, reasons: list[str], version: int | None = None) -> Rejection:
        return cls(card.candidate_id, version, card.created_at, list(reasons), asdict(card.metrics), card.parent)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Rejection:
        """As recorded in ``registry.json``, tolerating entries an older inferloop wrote with fewer fields."""
        return cls(
            candidate_id=str(raw.get("candidate_id", "")),
            version=raw.get("version"),
            at=str(raw.get("at", "")),
            reasons=list(raw.get("reasons", [])),
            metrics=dict(raw.get("metrics", {})),
            parent=raw.get("parent"),
        )


@dataclass
class Registry:
    """inferloop's record of one model: what Triton loads (``loaded``: the versions the config lists), which of
    those passed the smoke test on every replica (``verified``), which one is announced to serve every prediction
    (``promoted``) and which is scored in shadow (``shadow``); what was given a number, what was refused."""

    loaded: list[int] = field(default_factory=list)
    verified: list[int] = field(default_factory=list)
    promoted: int | None = None
    shadow: int | None = None
    last_version: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # version -> {"source", "accuracy"}: its trusted-holdout accuracy, recorded when it was promoted, so that the
    # best version ever served is remembered after its folder is pruned
    trusted: dict[str, dict[str, Any]] = field(default_factory=dict)

    def event(self, kind: str, **details: Any) -> None:
        self.history.append({"at": utc_now(), "event": kind, **details})

    def promoted_before(self) -> list[int]:
        """Versions promoted before the current one, the most recent first (rollback targets)."""
        seen: list[int] = []
        for e in reversed(self.history):
            if e["event"] in ("promoted", "rollback", "published") and e.get("version") != self.promoted:
                v = e.get("version")
                if isinstance(v, int) and v not in seen:
                    seen.append(v)
        return seen

    @staticmethod
    def from_dict(raw: dict[str, Any]) -> Registry:
        """As recorded, tolerating a registry an older inferloop wrote (``serving``: what it loaded and served;
        every version it ever served passed its smoke test then, so it counts as verified)."""
        raw = dict(raw)
        old_serving = raw.pop("serving", None)
        if old_serving is not None and "loaded" not in raw:
            served = {
                e["version"]
                for e in raw.get("history", [])
                if e.get("event") in ("published", "rollback") and isinstance(e.get("version"), int)
            }
            raw["loaded"] = list(old_serving)
            raw["verified"] = sorted(served | set(old_serving))
            raw["promoted"] = max(old_serving) if old_serving else None
        raw["rejected"] = [Rejection.from_dict(r) for r in raw.get("rejected", [])]
        return Registry(**raw)


def fsync_path(path: Path) -> None:
    """Flush a file or a folder entry to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see either the old or the new content."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fsync_path(path.parent)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))


class ModelRepository:
    """The folder of one model inside a Triton model repository."""

    def __init__(self, root: Path, model_name: str) -> None:
        if not NAME_PATTERN.fullmatch(model_name):
            raise RepositoryError(f"invalid model name {model_name!r}: letters, digits, '_', '.', '-' only")
        self.root, self.name = root, model_name
        self.model_dir = root / model_name
        if self.model_dir.resolve().parent != root.resolve():
            raise RepositoryError(f"model {model_name!r} would live outside the repository {root}")
        self.state_dir = self.model_dir / STATE_DIR
        self.staging_dir = self.state_dir / "staging"
        self.candidates_dir = self.state_dir / "candidates"
        self.rejected_dir = self.state_dir / "rejected"
        self.registry_path = self.state_dir / "registry.json"

    # -- records ------------------------------------------------------------------------------------------------

    def ensure(self) -> None:
        try:
            for folder in (self.staging_dir, self.candidates_dir, self.rejected_dir):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RepositoryError(f"cannot create {self.state_dir}: {exc.strerror}") from exc

    def read_registry(self) -> Registry:
        try:
            return Registry.from_dict(json.loads(self.registry_path.read_text()))
        except FileNotFoundError:
            return Registry()
        except (json.JSONDecodeError, TypeError, AttributeError) as exc:
            raise RepositoryError(f"{self.registry_path} is damaged: {exc}") from exc

    def write_registry(self, registry: Registry) -> None:
        self.ensure()
        write_atomic(self.registry_path, json.dumps(asdict(registry), indent=2) + "\n")

    def write_config(self, config: ModelConfig) -> None:
        if config.name != self.name:
            raise RepositoryError(f"config for {config.name!r} written into {self.name!r}")
        self.model_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.model_dir / CONFIG_FILE, config.to_pbtxt())

    @contextlib.contextmanager
    def lock(self, timeout_s: float = 600.0) -> Iterator[None]:
        """Exclusive right to publish (another publisher waits); released even if this process dies."""
        self.ensure()
        with (self.state_dir / "publish.lock").open("a") as handle:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockBusy(
                            f"another publisher has held {self.name}'s lock for over {timeout_s:g} s"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- versions -----------------------------------------------------------------------------------------------

    def versions(self) -> list[int]:
        """Complete version folders on disk (with a model card), ascending."""
        if not self.model_dir.exists():
            return []
        return sorted(int(p.name) for p in self.model_dir.iterdir() if p.name.isdigit() and (p / CARD_FILE).exists())

    def version_dir(self, version: int) -> Path:
        return self.model_dir / str(version)

    def card(self, version: int) -> ModelCard:
        folder = self.version_dir(version)
        if not (folder / CARD_FILE).exists():
            raise RepositoryError(f"{self.name} has no version {version} (looked in {folder})")
        return ModelCard.read(folder)

    def clean_staging(self) -> list[str]:
        """Remove what a publisher that died left half-written (call with the lock held)."""
        leftovers = sorted(p.name for p in self.staging_dir.iterdir()) if self.staging_dir.exists() else []
        for name in leftovers:
            shutil.rmtree(self.staging_dir / name, ignore_errors=True)
        return leftovers

    def stage(self, artifact_dir: Path, card: ModelCard) -> Path:
        """Copy an artifact under ``staging/`` with its final card, everything flushed to disk."""
        self.ensure()
        staged = self.staging_dir / f"v{card.version}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(artifact_dir, staged, ignore=shutil.ignore_patterns("__pycache__", CARD_FILE))
            card.write(staged)
            _fsync_tree(staged)
        except OSError as exc:
            shutil.rmtree(staged, ignore_errors=True)
            raise RepositoryError(f"cannot write version {card.version} of {self.name}: {exc}") from exc
        return staged

    def commit(self, staged: Path, version: int) -> Path:
        """Rename a staged folder to its version number: the moment it appears to Triton, complete."""
        target = self.version_dir(version)
        if target.exists():
            raise RepositoryError(f"{target} already exists; version numbers are never reused")
        staged.rename(target)
        fsync_path(self.model_dir)
        return target

    def quarantine(self, version: int, card: ModelCard, reason: str) -> Path:
        """Move a version that failed out of Triton's sight, keeping it for inspection."""
        destination = self.rejected_dir / f"v{version}-{card.candidate_id}"
        self.version_dir(version).rename(destination)
        fsync_path(self.model_dir)
        (destination / "reason.txt").write_text(reason + "\n")
        return destination

    def record_rejected(self, card: ModelCard, reasons: list[str]) -> Path:
        """Keep a rejected candidate's card (not its weights) under ``rejected/``."""
        self.ensure()
        folder = self.rejected_dir / card.candidate_id
        folder.mkdir(parents=True, exist_ok=True)
        card.write(folder)
        (folder / "reason.txt").write_text("\n".join(reasons) + "\n")
        return folder

    def prune(self, keep: int, protected: list[int]) -> list[int]:
        """Delete the oldest version folders beyond ``keep``, never one in ``protected``."""
        versions = self.versions()
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in protected]
        for v in doomed:
            shutil.rmtree(self.version_dir(v))
        return doomed

    def catalog(self) -> list[dict[str, Any]]:
        """Every version on disk and every rejected candidate, oldest first, with its status: ``serving`` (the
        promoted version), ``shadow``, ``candidate`` (verified, never promoted), ``retired`` or ``rejected``."""
        registry = self.read_registry()
        ever_promoted = {registry.promoted, *registry.promoted_before()}
        rows: list[dict[str, Any]] = []
        for version in self.versions():
            card = self.card(version)
            if version == registry.promoted:
                status = "serving"
            elif version == registry.shadow:
                status = "shadow"
            elif version in ever_promoted:
                status = "retired"
            elif version in registry.verified:
                status = "candidate"
            else:
                status = "unverified"
            rows.append(
                {
                    "version": version,
                    "status": status,
                    "loaded": version in registry.loaded,
                    "shadow_evidence": card.shadow_evidence,
                    "created_at": card.created_at,
                    "parent": card.parent,
                    "candidate_id": card.candidate_id,
                    "metrics": asdict(card.metrics),
                    "examples": {
                        "base": len(card.lineage.base_examples),
                        "new": len(card.lineage.new_examples),
                        "replay": len(card.lineage.replay_examples),
                    },
                }
            )
        for entry in registry.rejected:
            rows.append(
                {
                    "version": entry.version,
                    "status": "rejected",
                    "loaded": False,
                    "created_at": entry.at,
                    "parent": entry.parent,
                    "candidate_id": entry.candidate_id,
                    "metrics": entry.metrics,
                    "reasons": entry.reasons,
                }
            )
        return sorted(rows, key=lambda r: str(r["created_at"]))
