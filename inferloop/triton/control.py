"""Triton's control plane: load, unload, readiness, the repository index, a checked inference for smoke tests.

Synchronous, for the trainer and the CLI. :class:`ControlPlane` is what the publisher needs; one server
(:class:`TritonControl`) and every replica behind a headless Service (:class:`TritonFleet`) both implement it.
Library errors become inferloop's own through :func:`inferloop.triton.errors.translate`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from inferloop.settings import Settings
from inferloop.triton.errors import (
    ModelLoadFailed,
    TritonRequestFailed,
    TritonUnavailable,
    client_errors,
    translate,
)
from inferloop.triton.model_config import KIND_CPU, answer_tolerance
from inferloop.triton.options import grpc_options, model_answer_tolerance
from inferloop.triton.signature import INPUT_NAME, OUTPUT_NAME

FloatArray = NDArray[np.float32]
Answer = tuple[FloatArray, int]  # the outputs and the version that computed them
TensorNames = tuple[str, str]  # (input, output)
NAMES: TensorNames = (INPUT_NAME, OUTPUT_NAME)
CPU_TOLERANCE = answer_tolerance(KIND_CPU, None)  # replicas on CPUs (the local stack)


@dataclass(frozen=True)
class VersionState:
    """One entry of Triton's repository index."""

    version: int
    state: str
    reason: str


class ControlPlane(Protocol):
    """What the trainer's publisher and the CLI need of Triton: one server or a fleet."""

    url: str

    def close(self) -> None: ...
    def server_live(self) -> bool: ...
    def require_live(self) -> None: ...
    def load(self, model: str, timeout_s: float = 120.0) -> None: ...
    def unload(self, model: str) -> None: ...
    def is_ready(self, model: str, version: int | None = None) -> bool: ...
    def wait_ready(self, model: str, version: int, timeout_s: float) -> None: ...
    def index(self, model: str) -> list[VersionState]: ...
    def config(self, model: str) -> dict[str, Any]: ...
    def infer(self, model: str, x: FloatArray, version: int | None = None, names: TensorNames = NAMES) -> Answer: ...


class TritonControl:
    """Synchronous control-plane client of one Triton server (gRPC)."""

    def __init__(self, url: str, timeout_s: float = 10.0, options: Mapping[str, Any] | None = None) -> None:
        """``options``: TLS and channel arguments (:func:`inferloop.triton.options.grpc_options`)."""
        import tritonclient.grpc as grpcclient

        self.url, self.timeout_s = url, timeout_s
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(url, **(options or {}))

    def close(self) -> None:
        self._client.close()

    def _call(self, model: str, action: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except client_errors() as exc:
            raise translate(exc, self.url, self.timeout_s, model, action) from exc

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

    def infer(self, model: str, x: FloatArray, version: int | None = None, names: TensorNames = NAMES) -> Answer:
        """Run ``x`` through ``model`` (a given version, or the newest served); returns outputs and the version."""
        input_name, output_name = names
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

    def __init__(self, members: list[TritonControl], atol: float = CPU_TOLERANCE) -> None:
        if not members:
            raise TritonUnavailable("(no replica)", 0.0, "the Triton service resolved to no address")
        self.members = members
        # how far a replica's answer may be from the artifact's (answer_tolerance: the backend and precision); two
        # replicas may each be that far, on opposite sides
        self.atol = atol
        self.url = ",".join(m.url for m in members)

    @staticmethod
    def resolve(
        host: str,
        port: int,
        timeout_s: float = 10.0,
        options: Mapping[str, Any] | None = None,
        atol: float = CPU_TOLERANCE,
    ) -> TritonFleet:
        import socket

        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TritonUnavailable(f"{host}:{port}", timeout_s, f"cannot resolve {host}: {exc}") from exc
        addresses = sorted({str(info[4][0]) for info in infos})
        return TritonFleet(
            [TritonControl(f"[{a}]:{port}" if ":" in a else f"{a}:{port}", timeout_s, options) for a in addresses],
            atol,
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

    def infer(self, model: str, x: FloatArray, version: int | None = None, names: TensorNames = NAMES) -> Answer:
        """Inference on every replica (a smoke test must pass everywhere); the first replica's answer."""
        results = [m.infer(model, x, version, names) for m in self.members]
        for member, (outputs, served) in zip(self.members, results, strict=True):
            if served != results[0][1] or not np.allclose(outputs, results[0][0], atol=2 * self.atol, rtol=0):
                raise TritonRequestFailed(model, "inference", f"replica {member.url} answers differently")
        return results[0]


def triton_control(settings: Settings) -> ControlPlane:
    """The control client the settings ask for: one server, or every replica behind the host's DNS name."""
    t = settings.triton
    if t.fan_out:
        return TritonFleet.resolve(
            t.host, t.grpc_port, options=grpc_options(t), atol=model_answer_tolerance(settings.model)
        )
    return TritonControl(t.grpc_url, options=grpc_options(t))
