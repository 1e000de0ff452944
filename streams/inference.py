"""Talking to Triton: the one module that calls ``tritonclient``.

:class:`TritonControl` is the control plane (load, unload, readiness, repository index, a checked inference
for smoke tests), synchronous, for the trainer and the CLI. Library errors become inferloop's own: a server
that cannot be reached is :class:`TritonUnavailable` (retryable); a model that will not load is
:class:`ModelLoadFailed`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from streams.errors import InferloopError, RetryableError

if TYPE_CHECKING:
    from streams.settings import Settings


class TritonUnavailable(RetryableError):
    """Triton cannot be reached or is not ready."""

    def __init__(self, url: str, timeout_s: float, detail: str = "") -> None:
        self.url, self.timeout_s = url, timeout_s
        hint = "; is it running? (`inferloop up` starts one locally)"
        super().__init__(
            f"Triton at {url} did not answer within {timeout_s:g} s{hint}" + (f": {detail}" if detail else "")
        )


class TritonRequestFailed(InferloopError):
    """Triton answered with an error."""

    def __init__(self, model: str, action: str, detail: str) -> None:
        self.model, self.action, self.detail = model, action, detail
        super().__init__(f"{action} of model {model!r} failed: {detail}")


class ModelLoadFailed(TritonRequestFailed):
    """Triton could not load a model (or one of its versions)."""


@dataclass(frozen=True)
class VersionState:
    """One entry of Triton's repository index."""

    version: int
    state: str
    reason: str


class TritonControl:
    """Synchronous control-plane client of one Triton server (gRPC)."""

    def __init__(self, url: str, timeout_s: float = 10.0, options: Mapping[str, Any] | None = None) -> None:
        """``options``: TLS and channel arguments (:meth:`TritonSettings.grpc_client_options`)."""
        import tritonclient.grpc as grpcclient

        self.url, self.timeout_s = url, timeout_s
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(url, **(options or {}))

    def close(self) -> None:
        self._client.close()

    def _call(self, model: str, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return fn(*args, **kwargs)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            if "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status:
                raise TritonUnavailable(self.url, self.timeout_s, exc.message() or str(exc)) from exc
            error = ModelLoadFailed if action == "load" else TritonRequestFailed
            raise error(model, action, exc.message() or str(exc)) from exc

    def server_live(self) -> bool:
        try:
            return bool(self._call("", "liveness", self._client.is_server_live, client_timeout=self.timeout_s))
        except (TritonUnavailable, TritonRequestFailed):
            return False

    def require_live(self) -> None:
        """Raise :class:`TritonUnavailable` unless the server answers.

        Liveness, not readiness: with strict readiness Triton reports itself not ready while an old version
        unloads after a swap (a second or two), though every loaded version serves throughout.
        """
        if not self.server_live():
            raise TritonUnavailable(self.url, self.timeout_s)

    def load(self, model: str, timeout_s: float = 120.0) -> None:
        """Load (or reload) ``model`` from the repository; returns when Triton has finished loading it."""
        self._call(model, "load", self._client.load_model, model, client_timeout=timeout_s)

    def unload(self, model: str) -> None:
        self._call(model, "unload", self._client.unload_model, model, client_timeout=self.timeout_s)

    def is_ready(self, model: str, version: int | None = None) -> bool:
        try:
            return bool(
                self._call(
                    model,
                    "readiness",
                    self._client.is_model_ready,
                    model,
                    str(version) if version else "",
                    client_timeout=self.timeout_s,
                )
            )
        except TritonRequestFailed:
            return False

    def wait_ready(self, model: str, version: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.is_ready(model, version):
            if time.monotonic() > deadline:
                raise ModelLoadFailed(model, "load", f"version {version} not ready after {timeout_s:g} s")
            time.sleep(0.2)

    def index(self, model: str) -> list[VersionState]:
        """Triton's view of ``model``'s versions (loaded, unloaded, failed, with reasons)."""
        raw = self._call(model, "index", self._client.get_model_repository_index, client_timeout=self.timeout_s)
        return [
            VersionState(int(m.version), m.state, m.reason)
            for m in raw.models
            if m.name == model and m.version.isdigit()
        ]

    def config(self, model: str) -> dict[str, Any]:
        raw = self._call(
            model, "config", self._client.get_model_config, model, as_json=True, client_timeout=self.timeout_s
        )
        return dict(raw["config"])

    def infer(
        self,
        model: str,
        x: NDArray[np.float32],
        version: int | None = None,
        input_name: str = "image",
        output_name: str = "probabilities",
    ) -> tuple[NDArray[np.float32], int]:
        """Run ``x`` through ``model`` (a given version, or the newest served); returns outputs and the version."""
        inp = self._grpc.InferInput(input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        result = self._call(
            model,
            "inference",
            self._client.infer,
            model,
            [inp],
            model_version=str(version) if version else "",
            outputs=[self._grpc.InferRequestedOutput(output_name)],
            client_timeout=self.timeout_s,
        )
        return result.as_numpy(output_name), int(result.get_response().model_version)


class TritonFleet:
    """Every replica of a Triton deployment behind one DNS name (a headless Service), controlled together.

    With explicit model control each replica loads versions only when told: the publisher loads, waits for
    and unloads each version on every replica, so that all of them serve the same versions. Replicas that start
    later load the repository's configured versions at start (``--load-model=*``).
    """

    def __init__(self, members: list[TritonControl]) -> None:
        if not members:
            raise TritonUnavailable("(no replica)", 0.0, "the Triton service resolved to no address")
        self.members = members
        self.url = ",".join(m.url for m in members)

    @staticmethod
    def resolve(host: str, port: int, timeout_s: float = 10.0, options: Mapping[str, Any] | None = None) -> TritonFleet:
        import socket

        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TritonUnavailable(f"{host}:{port}", timeout_s, f"cannot resolve {host}: {exc}") from exc
        addresses = sorted({str(info[4][0]) for info in infos})
        return TritonFleet(
            [TritonControl(f"[{a}]:{port}" if ":" in a else f"{a}:{port}", timeout_s, options) for a in addresses]
        )

    def close(self) -> None:
        for m in self.members:
            m.close()

    def server_live(self) -> bool:
        return all(m.server_live() for m in self.members)

    def require_live(self) -> None:
        for m in self.members:
            m.require_live()

    def load(self, model: str, timeout_s: float = 120.0) -> None:
        for m in self.members:
            m.load(model, timeout_s)

    def unload(self, model: str) -> None:
        for m in self.members:
            m.unload(model)

    def is_ready(self, model: str, version: int | None = None) -> bool:
        return all(m.is_ready(model, version) for m in self.members)

    def wait_ready(self, model: str, version: int, timeout_s: float) -> None:
        for m in self.members:
            m.wait_ready(model, version, timeout_s)

    def index(self, model: str) -> list[VersionState]:
        return self.members[0].index(model)

    def config(self, model: str) -> dict[str, Any]:
        return self.members[0].config(model)

    def infer(
        self,
        model: str,
        x: NDArray[np.float32],
        version: int | None = None,
        input_name: str = "image",
        output_name: str = "probabilities",
    ) -> tuple[NDArray[np.float32], int]:
        """Inference on every replica (a smoke test must pass everywhere); the first replica's answer."""
        results = [m.infer(model, x, version, input_name, output_name) for m in self.members]
        for member, (outputs, served) in zip(self.members, results, strict=True):
            if served != results[0][1] or not np.allclose(outputs, results[0][0], atol=1e-5):
                raise TritonRequestFailed(model, "inference", f"replica {member.url} answers differently")
        return results[0]


def triton_control(settings: Settings) -> TritonControl | TritonFleet:
    """The control client the settings ask for: one server, or every replica behind the host's DNS name."""
    t = settings.triton
    if t.fan_out:
        return TritonFleet.resolve(t.host, t.grpc_port, options=t.grpc_client_options())
    return TritonControl(t.grpc_url, options=t.grpc_client_options())


def triton_inference(settings: Settings) -> TritonInference:
    """The worker's data-plane client of the served model, with the settings' address, timeout and TLS."""
    return TritonInference(
        settings.triton.grpc_url,
        settings.model.name,
        timeout_s=settings.streams.triton_timeout_s,
        options=settings.triton.grpc_client_options(),
    )


@dataclass(frozen=True)
class ModelContract:
    """What a served model expects and answers, read from Triton (never assumed by the worker)."""

    model: str
    input_name: str
    output_name: str
    input_shape: tuple[int, ...]
    labels: tuple[str, ...]
    max_batch_size: int

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelContract:
        params = config.get("parameters", {})
        inputs, outputs = config["input"], config["output"]
        labels_raw = params.get("labels", {}).get("string_value")
        width = int(outputs[0]["dims"][-1])
        labels = tuple(json.loads(labels_raw)) if labels_raw else tuple(str(i) for i in range(width))
        return cls(
            model=config["name"],
            input_name=inputs[0]["name"],
            output_name=outputs[0]["name"],
            input_shape=tuple(int(d) for d in inputs[0]["dims"]),
            labels=labels,
            max_batch_size=max(1, int(config.get("max_batch_size", 1))),
        )


class TritonInference:
    """Asynchronous data-plane client (gRPC) for the worker: one model, batched float32 inputs."""

    def __init__(self, url: str, model: str, timeout_s: float = 10.0, options: Mapping[str, Any] | None = None) -> None:
        import tritonclient.grpc.aio as aioclient

        self.url, self.model, self.timeout_s = url, model, timeout_s
        self._aio = aioclient
        self._client = aioclient.InferenceServerClient(url, **(options or {}))

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, action: str, coro: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return await coro
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            detail = exc.message() or str(exc)
            if any(s in status for s in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")) or (
                "not ready" in detail or "unavailable" in detail.lower()
            ):
                raise TritonUnavailable(self.url, self.timeout_s, detail) from exc
            raise TritonRequestFailed(self.model, action, detail) from exc
        except (OSError, TimeoutError) as exc:
            raise TritonUnavailable(self.url, self.timeout_s, str(exc)) from exc

    async def contract(self) -> ModelContract:
        raw = await self._call(
            "config", self._client.get_model_config(self.model, as_json=True, client_timeout=self.timeout_s)
        )
        return ModelContract.from_config(raw["config"])

    async def infer(self, contract: ModelContract, x: NDArray[np.float32]) -> tuple[NDArray[np.float32], int]:
        """Class scores for ``x`` and the version that computed them."""
        inp = self._aio.InferInput(contract.input_name, list(x.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        result = await self._call(
            "inference",
            self._client.infer(
                self.model,
                [inp],
                outputs=[self._aio.InferRequestedOutput(contract.output_name)],
                client_timeout=self.timeout_s,
            ),
        )
        return result.as_numpy(contract.output_name), int(result.get_response().model_version)
