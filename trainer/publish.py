"""Publishing a version beside the serving one, verifying it, and announcing which version serves.

Triton loads versions; the promotions topic (:mod:`inferloop.kafka.promotions`) says which one every worker
asks for by number. So nothing a publish does reaches traffic until it is announced, and only verified versions
are announced:

* **publish**: take the lock; reconcile; clear what a dead publisher left; give the next number; write the
  version under staging and rename it into place; render the config to load it *beside* the loaded versions;
  ask Triton (every replica) to load; wait until it is ready; smoke-test it with pinned requests on every
  replica against the artifact's own outputs; record it as verified. Then announce it in shadow (scored on live
  traffic, promoted later by the promoter, ``trainer.promotion_min_labels``), or promote it at once when
  shadow scoring is off or nothing serves yet. If anything fails from the config on (a refusal, an unreachable
  or slow Triton, an interruption), the config goes back to what it was, the version is moved aside and
  recorded as rejected, and the serving version never stopped serving: it was never unloaded.
* **promote** / **rollback**: announce a verified version (loading and smoke-testing it first if it is not
  loaded): instant for the versions kept loaded (``trainer.serving_versions``), no reload.
* every decision is recorded in the registry first and announced second (a failed announcement puts the
  registry back); the registry is the authority: every lock holder reconciles first, the config with the
  registry's loaded versions and the topic with the registry's state (announced again when the topic says
  otherwise: a publisher died in between, or someone wrote to the topic).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from inferloop.errors import InferloopError
from inferloop.events import Promotion, decode_promotion, encode_promotion
from inferloop.images.preprocess import InputSpec
from inferloop.triton.control import ControlPlane
from inferloop.triton.model_config import KIND_CPU, ModelConfig, TensorRT, answer_tolerance, specific_versions
from inferloop.triton.signature import ModelSignature
from trainer.card import CARD_FILE, ModelCard
from trainer.errors import LockBusy, PublishError, RepositoryError, StaleParent
from trainer.export import ONNX_FILE, triton_config
from trainer.onnx_inference import onnx_proba
from trainer.repository import CONFIG_FILE, ModelRepository, Registry, Rejection, write_atomic

log = logging.getLogger(__name__)

EventFn = Callable[[str], None]


@dataclass(frozen=True)
class ServingOptions:
    """How Triton serves the model and how many versions are kept."""

    max_batch_size: int = 64
    instance_count: int = 1
    max_queue_delay_us: int = 100
    serving_versions: int = 2  # verified versions kept loaded: the promoted one and those before it
    keep_versions: int = 10
    load_timeout_s: float = 120.0
    shadow: bool = True  # a new version goes into shadow when one serves already; False: promoted once verified
    retire_grace_s: float = 2.0  # after announcing another version, before unloading the one that served
    native: bool = False  # Triton's onnxruntime backend (platform onnxruntime_onnx) instead of the python one
    instance_kind: str = KIND_CPU
    tensorrt: TensorRT | None = None

    def model_config(self, signature: ModelSignature, spec: InputSpec, versions: list[int]) -> ModelConfig:
        """The Triton config that serves ``versions`` of a model with ``signature`` the way these options say."""
        return triton_config(
            signature,
            spec,
            versions,
            instance_count=self.instance_count,
            max_queue_delay_us=self.max_queue_delay_us,
            native=self.native,
            instance_kind=self.instance_kind,
            tensorrt=self.tensorrt,
        )

    @property
    def answer_tolerance(self) -> float:
        """How far a served answer may be from the artifact's (see :func:`answer_tolerance`)."""
        return answer_tolerance(self.instance_kind, self.tensorrt)


class Promotions(Protocol):
    """Where promotions are announced (:class:`inferloop.kafka.promotions.PromotionLog`)."""

    def latest(self, model: str) -> Promotion | None: ...
    def announce(self, promotion: Promotion) -> None: ...


class Publisher:
    """Puts versions of one model into service on one Triton server (or every replica) and announces them."""

    def __init__(
        self, repo: ModelRepository, triton: ControlPlane, options: ServingOptions, promotions: Promotions
    ) -> None:
        self.repo, self.triton, self.options, self.promotions = repo, triton, options, promotions

    def _config_for(self, card: ModelCard, versions: list[int]) -> ModelConfig:
        # the repository's name, whatever the card says
        signature = replace(card.signature(self.options.max_batch_size), model=self.repo.name)
        return self.options.model_config(signature, card.input_spec, versions)

    def _smoke(self, version: int, folder: Path, card: ModelCard) -> None:
        """The version answers pinned requests (on every replica), and answers what its artifact computes."""
        spec = card.input_spec
        x = np.random.default_rng(version).random((4, *spec.shape), dtype=np.float32)
        try:
            expected = onnx_proba(folder / ONNX_FILE, x)
        except Exception as exc:  # onnxruntime raises its own types for unreadable models
            raise PublishError(f"the artifact of version {version} cannot be run: {exc}") from exc
        got, served = self.triton.infer(self.repo.name, x, version=version)
        if served != version:
            raise PublishError(f"smoke inference asked for version {version}, got {served}")
        atol = self.options.answer_tolerance
        if got.shape != expected.shape or not np.allclose(got, expected, atol=atol, rtol=0):
            worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
            raise PublishError(
                f"version {version} answers differently from its artifact (by {worst:.2e}; tolerance {atol:.0e})"
            )

    def _serve(self, versions: list[int], card: ModelCard, on_event: EventFn) -> None:
        self.repo.write_config(self._config_for(card, versions))
        on_event(f"the config of {self.repo.name} lists versions {versions}")
        self.triton.load(self.repo.name, timeout_s=self.options.load_timeout_s)
        on_event(f"Triton loaded {self.repo.name} {versions}")

    def _load_beside(self, loaded: list[int], version: int, folder: Path, card: ModelCard, on_event: EventFn) -> None:
        """Load ``version`` beside the ``loaded`` ones, wait until it is ready and smoke-test it on every replica;
        raises whatever failed (the caller puts the loaded versions back)."""
        self._serve(sorted({*loaded, version}), card, on_event)
        self.triton.wait_ready(self.repo.name, version, self.options.load_timeout_s)
        self._smoke(version, folder, card)
        self._record_verified_options(card)  # the loaded ones were verified with these options (reconcile ran first)

    # -- serving options: what the loaded versions were verified with ---------------------------------------------

    def _options_of(self, card: ModelCard) -> str:
        """These options' config without its versions: what the loaded versions must have been verified with."""
        return replace(self._config_for(card, [1]), versions=()).to_pbtxt()

    @property
    def _verified_options_file(self) -> Path:
        return self.repo.state_dir / "verified-options.pbtxt"

    def _record_verified_options(self, card: ModelCard) -> None:
        write_atomic(self._verified_options_file, self._options_of(card))

    def _verified_options(self) -> str | None:
        try:
            return self._verified_options_file.read_text()
        except OSError:
            return None  # never recorded (a repository from before these records): verified once again

    def _card_of_any(self, versions: list[int], on_event: EventFn) -> ModelCard | None:
        """A card of one of ``versions`` (the versions of one model share its classes and input)."""
        for version in sorted(versions, reverse=True):
            try:
                return self.repo.card(version)
            except RepositoryError as exc:
                on_event(f"version {version} of {self.repo.name} has no readable card ({exc})")
        return None

    def _reverify(self, versions: list[int], card: ModelCard, on_event: EventFn) -> None:
        """The config of ``versions`` rendered with these options, loaded, and every version made ready and
        smoke-tested on every replica again (another backend, device or precision computes otherwise); recorded
        only once all passed, so a failure is tried again at the next check. Raises what failed: the check fails
        loudly (the trainer's alerts), and nothing is announced meanwhile."""
        self._serve(versions, card, on_event)
        for version in versions:
            self.triton.wait_ready(self.repo.name, version, self.options.load_timeout_s)
            self._smoke(version, self.repo.version_dir(version), self.repo.card(version))
        self._record_verified_options(card)
        on_event(f"versions {versions} of {self.repo.name} verified again with these serving options")

    def _put_back(self, versions: list[int], on_event: EventFn) -> None:
        """The config back to loading ``versions`` (none: no config), then a reload if Triton takes one: the
        config on disk is what Triton loads after any restart, so it is right even when Triton is not."""
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
        except Exception as exc:  # unreachable, or slow: it loads the config's versions once it reloads
            on_event(f"Triton did not reload {self.repo.name} ({exc}); its config lists {versions or 'nothing'}")

    # -- reconciling ------------------------------------------------------------------------------------------

    def reconcile(self, on_event: EventFn = log.info, lock_timeout_s: float = 1.0) -> None:
        """Mend what a dead publisher left (the trainer's loop calls this at every check); a publisher at work
        holds the lock and will do it itself."""
        try:
            with self.repo.lock(timeout_s=lock_timeout_s):
                self._reconcile(self.repo.read_registry(), on_event)
        except LockBusy:
            return

    def _reconcile(self, registry: Registry, on_event: EventFn) -> None:
        """At every lock acquisition: the config back to the registry's loaded versions (a publisher that died
        after writing it left unverified ones there) rendered with these options (the settings may have changed
        since it was written), and the registry and the topic in agreement."""
        if not registry.history:
            return  # never published here: nothing to reconcile with
        config = self.repo.model_dir / CONFIG_FILE
        listed = specific_versions(config.read_text()) if config.exists() else ()
        if listed != tuple(sorted(registry.loaded)):
            on_event(
                f"the config of {self.repo.name} lists {list(listed or [])} but the registry loads "
                f"{registry.loaded or 'nothing'} (a publisher died mid-way): putting the registry's back"
            )
            self._put_back(registry.loaded, on_event)
        elif registry.loaded and (card := self._card_of_any(registry.loaded, on_event)) is not None:
            # same versions, other serving options: the backend, the device, TensorRT or batching changed (a helm
            # upgrade from the python backend to the stock image's native one, say). Triton would keep loading
            # the old config after any restart (a python-backend config crash-loops the stock image), and the
            # versions were verified on another numerical path: render, reload and verify them again
            wanted = self._config_for(card, registry.loaded).to_pbtxt()
            if config.read_text() != wanted or self._verified_options() != self._options_of(card):
                on_event(
                    f"the loaded versions of {self.repo.name} were verified with other serving options than these "
                    "settings' (backend, device, TensorRT, batching), or that was never recorded: verifying again"
                )
                self._reverify(registry.loaded, card, on_event)
        if registry.promoted is None:
            return
        self._reconcile_topic(registry, on_event)
        self._retire_unneeded(registry, on_event)  # a verified version a dead publisher never announced

    def _reconcile_topic(self, registry: Registry, on_event: EventFn) -> None:
        """The registry is the authority: a topic that says otherwise (a publisher died between recording a
        decision and announcing it, a record written by hand or by another repository) hears it again."""
        if registry.promoted is None:
            return
        announced = self.promotions.latest(self.repo.name)
        state = (registry.promoted, registry.shadow)
        if announced is not None and (announced.serving, announced.shadow) == state:
            return
        said = "nothing" if announced is None else f"version {announced.serving} serves, {announced.shadow} in shadow"
        on_event(
            f"the promotions topic says {said}; the registry says version {registry.promoted} serves, "
            f"{registry.shadow} in shadow: announcing the registry's state again"
        )
        if not self._announceable(registry, registry.promoted, registry.shadow):
            raise RepositoryError(f"the registry of {self.repo.name} names unverified or unloaded versions {state}")
        self.promotions.announce(
            Promotion(self.repo.name, registry.promoted, registry.shadow, "reconcile", "the registry's state")
        )

    @staticmethod
    def _announceable(registry: Registry, serving: int, shadow: int | None) -> bool:
        ok = {v for v in registry.verified if v in registry.loaded}
        return serving in ok and (shadow is None or shadow in ok)

    # -- publishing -------------------------------------------------------------------------------------------

    def publish(
        self, artifact_dir: Path, card: ModelCard, on_event: EventFn = log.info, shadow: bool | None = None
    ) -> int:
        """Publish the artifact as the next version, verify it beside the serving one, then announce it in
        shadow (or promote it: nothing serves yet, or ``shadow`` is False, by default when shadow scoring is
        off); returns its number."""
        self.triton.require_live()
        with self.repo.lock():
            leftovers = self.repo.clean_staging()
            if leftovers:
                on_event(f"removed half-written versions left by a publisher that died: {', '.join(leftovers)}")
            registry = self.repo.read_registry()
            self._reconcile(registry, on_event)
            if card.parent is not None and registry.promoted is not None and card.parent != registry.promoted:
                raise StaleParent(
                    f"candidate {card.candidate_id} was trained from version {card.parent}, but version "
                    f"{registry.promoted} serves now (a rollback or a promotion during its training): "
                    "discarded; the next run trains from what serves"
                )
            for loaded in registry.loaded:  # one config (labels, input) serves every loaded version
                other = self.repo.card(loaded)
                if (other.classes, other.input_spec) != (card.classes, card.input_spec):
                    raise PublishError(
                        f"candidate {card.candidate_id} has classes {card.classes} and input {card.input_spec}, loaded "
                        f"version {loaded} {other.classes} and {other.input_spec}: Triton's config is shared by the "
                        "loaded versions; publish it as a model of another name"
                    )
            version = max(registry.last_version, *self.repo.versions(), 0) + 1
            card.version = version
            staged = self.repo.stage(artifact_dir, card)
            registry.last_version = version
            self.repo.write_registry(registry)  # the number is taken even if what follows fails
            folder = self.repo.commit(staged, version)
            on_event(f"wrote version {version} to {folder}")

            before = list(registry.loaded)
            try:
                self._load_beside(before, version, folder, card, on_event)
            except BaseException as exc:  # refused, unreachable, too slow, interrupted: whatever it was
                self._restore(registry, before, version, card, f"{type(exc).__name__}: {exc}", on_event)
                if not isinstance(exc, Exception):
                    raise
                raise PublishError(f"version {version} of {self.repo.name} was not verified: {exc}") from exc
            registry.loaded = sorted({*before, version})
            registry.verified = sorted({*registry.verified, version})
            registry.event("verified", version=version)
            self.repo.write_registry(registry)
            on_event(f"version {version} is loaded and verified on every replica (no traffic yet)")

            try:
                self._announce_new(registry, version, shadow, on_event)
            except InferloopError as exc:  # the broker: the version stays verified and loaded, serving nothing
                raise PublishError(
                    f"version {version} of {self.repo.name} is verified but was not announced ({exc}); nothing "
                    f"changed for traffic: `inferloop promote {version}` once Kafka answers"
                ) from exc
            deleted = self.repo.prune(self.options.keep_versions, protected=registry.loaded)
            if deleted:
                on_event(f"deleted old versions beyond the {self.options.keep_versions} kept: {deleted}")
            return version

    def _announce_new(self, registry: Registry, version: int, shadow: bool | None, on_event: EventFn) -> None:
        """A verified new version: promoted when nothing serves yet or shadow scoring is off, else in shadow."""
        if registry.promoted is None or not (self.options.shadow if shadow is None else shadow):
            self._announce_promotion(registry, version, "promote", "verified", {}, on_event)
        else:
            before, superseded = copy.deepcopy(registry), registry.shadow
            registry.shadow = version
            registry.event("shadow", version=version, serving=registry.promoted, superseded=superseded)
            self._record_and_announce(before, registry, "shadow", "verified, scored in shadow", {}, on_event)
            on_event(f"version {version} is in shadow beside version {registry.promoted}")
            if superseded is not None:
                self._retire_unneeded(registry, on_event)

    def _restore(
        self, registry: Registry, before: list[int], version: int, card: ModelCard, reason: str, on_event: EventFn
    ) -> None:
        on_event(f"version {version} failed ({reason}); loading {before or 'no version'} again")
        try:
            self.repo.quarantine(version, card, reason)
            registry.rejected.append(Rejection.of(card, [reason], version))
            registry.event("publish_failed", version=version, reason=reason)
            self.repo.write_registry(registry)
        finally:  # whatever the records did, the config goes back
            self._put_back(before, on_event)

    # -- announcing -------------------------------------------------------------------------------------------

    def _record_and_announce(
        self,
        before: Registry,
        after: Registry,
        action: str,
        reason: str,
        evidence: dict[str, Any],
        on_event: EventFn,
    ) -> None:
        """A decision: recorded in the registry first, then announced. If the announcement fails the registry goes
        back (nothing changed, the caller's error says why); a publisher killed in between leaves a decision the
        next lock holder announces (the registry is the authority, :meth:`_reconcile_topic`)."""
        assert after.promoted is not None
        if not self._announceable(after, after.promoted, after.shadow):
            raise RepositoryError(
                f"refusing to announce unverified or unloaded versions ({after.promoted}, {after.shadow})"
            )
        promotion = Promotion(self.repo.name, after.promoted, after.shadow, action, reason, dict(evidence))
        decode_promotion(encode_promotion(promotion))  # what every worker would refuse is not announced
        self.repo.write_registry(after)
        on_event(f"recorded: version {after.promoted} serves, {after.shadow} in shadow ({action}); announcing")
        try:
            self.promotions.announce(promotion)
        except BaseException:
            with contextlib.suppress(Exception):  # the announcement's own error is the one to raise
                self.repo.write_registry(before)
            raise
        on_event(f"announced version {after.promoted} ({action})")

    def _announce_promotion(
        self,
        registry: Registry,
        version: int,
        action: str,
        reason: str,
        evidence: dict[str, Any],
        on_event: EventFn,
    ) -> None:
        """Record and announce ``version`` as serving, then unload what is no longer kept loaded. Any other
        candidate in shadow leaves shadow: it was trained from a version that no longer serves."""
        before = copy.deepcopy(registry)
        previous, dropped = registry.promoted, registry.shadow
        registry.promoted, registry.shadow = version, None
        gate = self.repo.card(version).trusted_gate
        if gate and "candidate_accuracy" in gate:
            registry.trusted[str(version)] = {"source": gate.get("source"), "accuracy": gate["candidate_accuracy"]}
        registry.event("promoted" if action == "promote" else action, version=version, previous=previous, **evidence)
        if dropped not in (None, version):
            registry.event("shadow_ended", version=dropped, reasons=[f"version {version} serves instead ({action})"])
        self._record_and_announce(before, registry, action, reason, evidence, on_event)
        if dropped not in (None, version):
            on_event(f"version {dropped} leaves shadow: version {version} serves instead ({action})")
        on_event(f"version {version} serves (was {previous or 'nothing'}): {reason}")
        self._retire_unneeded(registry, on_event, grace=previous is not None)

    def _retire_unneeded(self, registry: Registry, on_event: EventFn, grace: bool = False) -> None:
        """Unload the loaded versions beyond the promoted one, the candidate in shadow and the
        ``serving_versions - 1`` promoted most recently before (kept loaded for instant rollbacks)."""
        assert registry.promoted is not None
        keep = {registry.promoted, *registry.promoted_before()[: self.options.serving_versions - 1]}
        if registry.shadow is not None:
            keep.add(registry.shadow)
        keep &= set(registry.loaded)
        retired = sorted(set(registry.loaded) - keep)
        if not retired:
            return
        if grace:  # workers follow the announcement within a poll: let their requests to the old version finish
            time.sleep(self.options.retire_grace_s)
        registry.loaded = sorted(keep)
        self.repo.write_registry(registry)
        self._put_back(registry.loaded, on_event)
        registry.event("retired", versions=retired)
        self.repo.write_registry(registry)
        on_event(f"unloaded versions {retired} (kept loaded: {registry.loaded})")

    def _load_verified(self, registry: Registry, version: int, on_event: EventFn) -> None:
        """Load a verified version that is not loaded (beside the others) and smoke-test it again."""
        if version in registry.loaded:
            return
        card = self.repo.card(version)  # raises if it is not on disk
        try:
            self._load_beside(registry.loaded, version, self.repo.version_dir(version), card, on_event)
        except BaseException as exc:  # whatever it was, the loaded versions stay as they were
            self._put_back(registry.loaded, on_event)
            if not isinstance(exc, Exception):
                raise
            raise PublishError(f"version {version} could not be loaded and verified again: {exc}") from exc
        registry.loaded = sorted({*registry.loaded, version})
        self.repo.write_registry(registry)

    def _verified(self, registry: Registry, version: int) -> None:
        if version not in registry.verified or version not in self.repo.versions():
            raise RepositoryError(
                f"version {version} of {self.repo.name} was never verified (or is gone): only versions that passed "
                f"the smoke test can serve; verified: {registry.verified}"
            )

    def promote(
        self,
        version: int,
        evidence: dict[str, Any] | None = None,
        reason: str = "operator",
        on_event: EventFn = log.info,
        expect_shadow: bool = False,
        expect_serving: int | None = None,
    ) -> int:
        """Announce a verified ``version`` as serving (loading and checking it first if it is not loaded).
        ``expect_shadow``, ``expect_serving``: only if it is still the candidate in shadow beside that serving
        version (the promoter's evidence compares exactly those two)."""
        self.triton.require_live()
        with self.repo.lock():
            registry = self.repo.read_registry()
            self._reconcile(registry, on_event)
            if expect_shadow and registry.shadow != version:
                raise StaleParent(f"version {version} is no longer in shadow (now: {registry.shadow}); not promoted")
            if expect_serving is not None and registry.promoted != expect_serving:
                raise StaleParent(
                    f"the evidence compares version {version} with {expect_serving}, but {registry.promoted} serves now"
                )
            self._verified(registry, version)
            if version == registry.promoted:
                raise RepositoryError(f"version {version} already serves")
            self._load_verified(registry, version, on_event)
            if evidence:
                card = self.repo.card(version)
                card.shadow_evidence = dict(evidence)
                write_atomic(self.repo.version_dir(version) / CARD_FILE, card.to_json() + "\n")
            self._announce_promotion(registry, version, "promote", reason, dict(evidence or {}), on_event)
            return version

    def end_shadow(
        self, version: int, reasons: list[str], evidence: dict[str, Any], on_event: EventFn = log.info
    ) -> None:
        """The candidate in shadow lost (or is given up): recorded as rejected with the evidence, announced out
        of shadow, unloaded and moved aside."""
        with self.repo.lock():
            registry = self.repo.read_registry()
            self._reconcile(registry, on_event)
            if registry.shadow != version or registry.promoted is None:
                raise StaleParent(f"version {version} is no longer in shadow (now: {registry.shadow})")
            before = copy.deepcopy(registry)
            card = self.repo.card(version)
            card.shadow_evidence = dict(evidence)
            registry.shadow = None
            registry.verified = [v for v in registry.verified if v != version]
            registry.loaded = [v for v in registry.loaded if v != version]
            registry.rejected.append(Rejection.of(card, reasons, version))
            registry.event("shadow_ended", version=version, reasons=reasons, **evidence)
            self._record_and_announce(before, registry, "shadow_ended", "; ".join(reasons), evidence, on_event)
            self._put_back(registry.loaded, on_event)
            card.write(self.repo.version_dir(version))
            self.repo.quarantine(version, card, "; ".join(reasons))
            on_event(f"version {version} left shadow, rejected: {'; '.join(reasons)}")

    def rollback(self, to: int | None = None, on_event: EventFn = log.info) -> int:
        """Serve an earlier verified version again (the one promoted before the current, unless ``to`` says):
        an announcement, instant when it is still loaded. A candidate in shadow is dropped from shadow."""
        self.triton.require_live()
        with self.repo.lock():
            registry = self.repo.read_registry()
            self._reconcile(registry, on_event)
            if registry.promoted is None:
                raise RepositoryError(f"{self.repo.name} has no serving version to roll back from")
            current = registry.promoted
            target = to if to is not None else self._previous(registry)
            if target == current:
                raise RepositoryError(f"version {target} is already serving")
            self._verified(registry, target)
            self._load_verified(registry, target, on_event)
            self._announce_promotion(registry, target, "rollback", f"rolled back from {current}", {}, on_event)
            return target

    def _previous(self, registry: Registry) -> int:
        """The version promoted most recently before the current one, still verified and on disk."""
        on_disk = set(self.repo.versions())
        for v in registry.promoted_before():
            if v in on_disk and v in registry.verified:
                return v
        raise RepositoryError(f"no earlier version of {self.repo.name} on disk to roll back to")
