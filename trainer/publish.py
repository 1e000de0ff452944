"""Publishing a version into the repository and getting Triton to serve it, with no dropped requests.

Publish: take the lock; clear what a dead publisher left; give the next number; write the version under
staging and rename it into place; render the config to serve it; ask Triton to load; wait until that version
is ready; check it with a smoke inference against the artifact's own outputs; then record it as serving,
retire the versions beyond ``serving_versions`` (unloaded, kept on disk) and delete those beyond
``keep_versions``. If anything fails from the config on (a refusal, an unreachable or slow Triton, an
interruption), the config goes back to what it was, the version is moved aside, and whatever served before
keeps serving. A publisher killed after writing the config leaves it listing an unverified version: every
publish and rollback first reconciles the config with the registry, under the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from inferloop.triton.control import ControlPlane
from inferloop.triton.model_config import ModelConfig, specific_versions
from trainer.card import ModelCard
from trainer.errors import LockBusy, PublishError, RepositoryError, StaleParent
from trainer.export import ONNX_FILE, triton_config
from trainer.onnx_inference import onnx_proba
from trainer.repository import CONFIG_FILE, ModelRepository, Registry, Rejection

log = logging.getLogger(__name__)
SMOKE_ATOL = 1e-4

EventFn = Callable[[str], None]


@dataclass(frozen=True)
class ServingOptions:
    """How Triton serves the model and how many versions are kept."""

    max_batch_size: int = 64
    instance_count: int = 1
    max_queue_delay_us: int = 2000
    serving_versions: int = 1
    keep_versions: int = 10
    load_timeout_s: float = 120.0


class Publisher:
    """Puts versions of one model into service on one Triton server."""

    def __init__(self, repo: ModelRepository, triton: ControlPlane, options: ServingOptions) -> None:
        self.repo, self.triton, self.options = repo, triton, options

    def _config_for(self, card: ModelCard, versions: list[int]) -> ModelConfig:
        o = self.options
        return triton_config(
            replace(
                card.signature(o.max_batch_size), model=self.repo.name
            ),  # the repository's name, whatever the card says
            card.input_spec,
            versions,
            instance_count=o.instance_count,
            max_queue_delay_us=o.max_queue_delay_us,
        )

    def _smoke(self, version: int, folder: Path, card: ModelCard) -> None:
        """The served version answers, and answers what its artifact computes."""
        spec = card.input_spec
        x = np.random.default_rng(version).random((4, *spec.shape), dtype=np.float32)
        try:
            expected = onnx_proba(folder / ONNX_FILE, x)
        except Exception as exc:  # onnxruntime raises its own types for unreadable models
            raise PublishError(f"the artifact of version {version} cannot be run: {exc}") from exc
        got, served = self.triton.infer(self.repo.name, x, version=version)
        if served != version:
            raise PublishError(f"smoke inference asked for version {version}, got {served}")
        if got.shape != expected.shape or not np.allclose(got, expected, atol=SMOKE_ATOL):
            raise PublishError(f"version {version} answers differently from its artifact")

    def _serve(self, versions: list[int], card: ModelCard, on_event: EventFn) -> None:
        self.repo.write_config(self._config_for(card, versions))
        on_event(f"the config of {self.repo.name} lists versions {versions}")
        self.triton.load(self.repo.name, timeout_s=self.options.load_timeout_s)
        on_event(f"Triton loaded {self.repo.name} {versions}")

    def _put_back(self, versions: list[int], on_event: EventFn) -> None:
        """The config back to serving ``versions`` (none: no config), then a reload if Triton takes one: the
        config on disk is what Triton serves after any restart, so it is right even when Triton is not."""
        config = self.repo.model_dir / CONFIG_FILE
        if versions:
            self.repo.write_config(self._config_for(self.repo.card(max(versions)), versions))
        else:
            config.unlink(missing_ok=True)
        try:
            if versions:
                self.triton.load(self.repo.name, timeout_s=self.options.load_timeout_s)
            else:
                self.triton.unload(self.repo.name)
        except Exception as exc:  # unreachable, or slow: it serves the config's versions once it reloads
            on_event(f"Triton did not reload {self.repo.name} ({exc}); its config lists {versions or 'nothing'}")

    def reconcile(self, on_event: EventFn = log.info, lock_timeout_s: float = 1.0) -> None:
        """Put back what the registry says serves if a dead publisher left the config otherwise (the trainer's
        loop calls this at every check); a publisher at work holds the lock and will do it itself."""
        try:
            with self.repo.lock(timeout_s=lock_timeout_s):
                self._reconcile(self.repo.read_registry(), on_event)
        except LockBusy:
            return

    def _reconcile(self, registry: Registry, on_event: EventFn) -> None:
        """At every lock acquisition: a publisher that died after writing the config (before recording what it
        did) left a config that lists unverified versions; put back what the registry says serves."""
        if not registry.history:
            return  # never published here: nothing to reconcile with
        config = self.repo.model_dir / CONFIG_FILE
        listed = specific_versions(config.read_text()) if config.exists() else ()
        if listed != tuple(sorted(registry.serving)):
            on_event(
                f"the config of {self.repo.name} lists {list(listed or [])} but {registry.serving or 'nothing'} "
                "serves by the registry (a publisher died mid-way): putting the registry's back"
            )
            self._put_back(registry.serving, on_event)

    def publish(self, artifact_dir: Path, card: ModelCard, on_event: EventFn = log.info) -> int:
        """Publish the artifact as the next version and make it serve; returns its number."""
        self.triton.require_live()
        with self.repo.lock():
            leftovers = self.repo.clean_staging()
            if leftovers:
                on_event(f"removed half-written versions left by a publisher that died: {', '.join(leftovers)}")
            registry = self.repo.read_registry()
            self._reconcile(registry, on_event)
            if card.parent is not None and registry.serving and card.parent not in registry.serving:
                raise StaleParent(
                    f"candidate {card.candidate_id} was trained from version {card.parent}, but "
                    f"{registry.serving} serves now (a rollback or another publish during its training): "
                    "discarded; the next run trains from what serves"
                )
            version = max(registry.last_version, *self.repo.versions(), 0) + 1
            card.version = version
            staged = self.repo.stage(artifact_dir, card)
            registry.last_version = version
            self.repo.write_registry(registry)  # the number is taken even if what follows fails
            folder = self.repo.commit(staged, version)
            on_event(f"wrote version {version} to {folder}")

            before = list(registry.serving)
            after = sorted({*before, version})[-self.options.serving_versions :]
            try:
                self._serve(after, card, on_event)
                self.triton.wait_ready(self.repo.name, version, self.options.load_timeout_s)
                self._smoke(version, folder, card)
            except BaseException as exc:  # refused, unreachable, too slow, interrupted: whatever it was
                self._restore(registry, before, version, card, f"{type(exc).__name__}: {exc}", on_event)
                if not isinstance(exc, Exception):
                    raise
                raise PublishError(f"version {version} of {self.repo.name} was not put in service: {exc}") from exc
            on_event(f"version {version} is serving")

            registry.serving = after
            registry.event("published", version=version, serving=after, retired=sorted(set(before) - set(after)))
            self.repo.write_registry(registry)
            deleted = self.repo.prune(self.options.keep_versions, protected=after)
            if deleted:
                on_event(f"deleted old versions beyond the {self.options.keep_versions} kept: {deleted}")
            return version

    def _restore(
        self, registry: Registry, before: list[int], version: int, card: ModelCard, reason: str, on_event: EventFn
    ) -> None:
        on_event(f"version {version} failed ({reason}); restoring {before or 'no version'}")
        try:
            self.repo.quarantine(version, card, reason)
            registry.rejected.append(Rejection.of(card, [reason], version))
            registry.event("publish_failed", version=version, reason=reason)
            self.repo.write_registry(registry)
        finally:  # whatever the records did, the config goes back
            self._put_back(before, on_event)

    def rollback(self, to: int | None = None, on_event: EventFn = log.info) -> int:
        """Serve an earlier version again (the one that served before the current, unless ``to`` says)."""
        self.triton.require_live()
        with self.repo.lock():
            registry = self.repo.read_registry()
            self._reconcile(registry, on_event)
            if not registry.serving:
                raise RepositoryError(f"{self.repo.name} has no serving version to roll back from")
            current = max(registry.serving)
            target = to if to is not None else self._previous(registry, current)
            if target == current:
                raise RepositoryError(f"version {target} is already serving")
            card = self.repo.card(target)  # raises if it is not on disk
            try:
                self._serve([target], card, on_event)
                self.triton.wait_ready(self.repo.name, target, self.options.load_timeout_s)
                self._smoke(target, self.repo.version_dir(target), card)
            except BaseException as exc:  # whatever it was, what served goes back
                self._put_back(registry.serving, on_event)
                if not isinstance(exc, Exception):
                    raise
                raise PublishError(f"rollback to version {target} failed, {current} still serves: {exc}") from exc
            registry.event("rollback", version=target, previous=registry.serving)
            registry.serving = [target]
            self.repo.write_registry(registry)
            on_event(f"version {target} is serving again (was {current})")
            return target

    def _previous(self, registry: Registry, current: int) -> int:
        """The newest version on disk, older than ``current``, that served before."""
        served = {
            v
            for e in registry.history
            if e["event"] in ("published", "rollback")
            for v in [e["version"], *e.get("serving", [])]
        }
        older = [v for v in self.repo.versions() if v < current and v in served]
        if not older:
            raise RepositoryError(f"no earlier version of {self.repo.name} on disk to roll back to")
        return max(older)
