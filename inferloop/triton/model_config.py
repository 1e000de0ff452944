"""Triton model configuration as a typed object, rendered to ``config.pbtxt``.

Nobody edits ``config.pbtxt`` by hand: code builds a :class:`ModelConfig` and :meth:`ModelConfig.to_pbtxt`
writes the protobuf text format Triton reads (``ModelConfig`` in Triton's ``model_config.proto``; the tests parse
every rendering with that protobuf). A model runs either in a ``backend`` (the python backend: a ``model.py``
wrapper) or on a ``platform`` (``onnxruntime_onnx``: Triton's native onnxruntime backend reading ``model.onnx``),
on CPUs or GPUs, optionally through TensorRT.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # fullmatch: `$` would allow a trailing newline


class DataType(StrEnum):
    """Triton tensor data types (the subset inferloop uses)."""

    BOOL = "TYPE_BOOL"
    UINT8 = "TYPE_UINT8"
    INT32 = "TYPE_INT32"
    INT64 = "TYPE_INT64"
    FP16 = "TYPE_FP16"
    FP32 = "TYPE_FP32"
    STRING = "TYPE_STRING"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, data type and shape without the batch dimension (-1 for variable)."""

    name: str
    data_type: DataType
    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(f"invalid tensor name {self.name!r}")
        if not self.dims or any(d == 0 or d < -1 for d in self.dims):
            raise ValueError(f"tensor {self.name}: dims must be positive or -1, got {self.dims}")


@dataclass(frozen=True)
class DynamicBatching:
    """Server-side batching: Triton waits up to ``max_queue_delay_us`` to fill a batch."""

    max_queue_delay_us: int = 100
    preferred_batch_sizes: tuple[int, ...] = ()


PYTHON_BACKEND = "python"
ONNX_PLATFORM = "onnxruntime_onnx"
KIND_CPU = "KIND_CPU"
KIND_GPU = "KIND_GPU"


@dataclass(frozen=True)
class TensorRT:
    """Triton's TensorRT execution accelerator for the onnxruntime backend on GPUs: onnxruntime hands the graph
    (or the parts TensorRT supports) to TensorRT, which builds an engine when the model loads."""

    precision: str = "FP32"  # or "FP16"
    max_workspace_bytes: int = 1 << 30
    # TensorRT's timing cache (kernel timings: faster engine builds), kept across reloads and container restarts (an
    # emptyDir in the chart). Not its engine cache: onnxruntime names a cached engine after the graph, not the
    # weights, so every retrained version (the same graph) would load the first version's engine.
    timing_cache_path: str = "/tmp/inferloop-tensorrt-timing"  # noqa: S108 - a path in Triton's container

    def __post_init__(self) -> None:
        if self.precision not in ("FP32", "FP16") or self.max_workspace_bytes < 1:
            raise ValueError(f"TensorRT precision is FP32 or FP16 (got {self.precision!r}), workspace positive")


def answer_tolerance(instance_kind: str, tensorrt: TensorRT | None) -> float:
    """How far a served answer (class probabilities, in [0, 1]) may be from what the version's ``model.onnx``
    answers with onnxruntime on a CPU, element by element: the smoke test's and the replica comparison's bound.

    The same graph on CPU kernels (python backend or native) differs by rounding only (1e-4); on GPUs cuDNN reorders
    sums and uses TF32 for convolutions on Ampere and later (3e-3; TF32 emulated on the digits versions: 6e-4);
    TensorRT fuses layers too (5e-3); in FP16 it keeps about three significant digits (2e-2). A broken version
    (wrong weights, rolled outputs) differs by far more than these. Two replicas may each be this far from the CPU,
    on opposite sides: they are compared within twice the bound.
    """
    if tensorrt is not None:
        return 2e-2 if tensorrt.precision == "FP16" else 5e-3
    return 3e-3 if instance_kind == KIND_GPU else 1e-4


@dataclass(frozen=True)
class ModelConfig:
    """What Triton needs to serve one model."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    backend: str = PYTHON_BACKEND  # ignored when ``platform`` is set
    platform: str = ""  # e.g. ONNX_PLATFORM: Triton's own backend for that format, no wrapper
    max_batch_size: int = 64
    dynamic_batching: DynamicBatching | None = field(default_factory=DynamicBatching)
    instance_count: int = 1
    instance_kind: str = KIND_CPU
    tensorrt: TensorRT | None = None
    warmup_batch_sizes: tuple[int, ...] = ()  # zero-filled requests each instance runs at load, before it is ready
    versions_served: int = 1
    versions: tuple[int, ...] = ()  # when given, serve exactly these versions (a 'specific' policy)
    parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"invalid model name {self.name!r}: letters, digits, '_', '.', '-' only, not starting with a dot"
            )
        if not self.inputs or not self.outputs:
            raise ValueError("a model needs at least one input and one output")
        if self.max_batch_size < 0 or self.instance_count < 1 or self.versions_served < 1:
            raise ValueError("max_batch_size >= 0, instance_count >= 1 and versions_served >= 1 are required")
        if any(v < 1 for v in self.versions):
            raise ValueError(f"versions are positive integers, got {self.versions}")
        if self.instance_kind not in (KIND_CPU, KIND_GPU):
            raise ValueError(f"instance_kind is {KIND_CPU} or {KIND_GPU}, got {self.instance_kind!r}")
        if self.platform not in ("", ONNX_PLATFORM):
            raise ValueError(f"unsupported platform {self.platform!r} (only {ONNX_PLATFORM})")
        if self.instance_kind == KIND_GPU and not self.platform:
            raise ValueError("GPU instances need a native platform (onnxruntime_onnx), not the python backend")
        if self.tensorrt is not None and self.instance_kind != KIND_GPU:
            raise ValueError("the TensorRT accelerator runs on GPU instances only")
        if any(not 1 <= b <= max(self.max_batch_size, 1) for b in self.warmup_batch_sizes):
            raise ValueError(f"warmup batch sizes must be within 1..max_batch_size, got {self.warmup_batch_sizes}")

    def _version_policy(self) -> str:
        if self.versions:
            listed = ", ".join(str(v) for v in sorted(set(self.versions)))
            return f"version_policy: {{ specific: {{ versions: [ {listed} ] }} }}"
        return f"version_policy: {{ latest: {{ num_versions: {self.versions_served} }} }}"

    def to_pbtxt(self) -> str:
        """The protobuf text form Triton reads from ``<repository>/<name>/config.pbtxt``."""
        lines = [
            "# Rendered by inferloop (inferloop.triton.model_config); do not edit by hand.",
            f"name: {_quote(self.name)}",
            f"platform: {_quote(self.platform)}" if self.platform else f"backend: {_quote(self.backend)}",
            f"max_batch_size: {self.max_batch_size}",
            "input [",
            ",\n".join(_tensor(t) for t in self.inputs),
            "]",
            "output [",
            ",\n".join(_tensor(t) for t in self.outputs),
            "]",
            f"instance_group [ {{ kind: {self.instance_kind} count: {self.instance_count} }} ]",
            self._version_policy(),
        ]
        if self.dynamic_batching is not None:
            db = self.dynamic_batching
            preferred = (
                f" preferred_batch_size: [ {', '.join(map(str, db.preferred_batch_sizes))} ]"
                if db.preferred_batch_sizes
                else ""
            )
            lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {db.max_queue_delay_us}{preferred} }}")
        if self.tensorrt is not None:
            lines += self._tensorrt_lines(self.tensorrt)
        if self.warmup_batch_sizes:
            lines += ["model_warmup [", ",\n".join(self._warmup(b) for b in self.warmup_batch_sizes), "]"]
        for key, value in sorted(self.parameters.items()):
            lines.append(f"parameters {{ key: {_quote(key)} value: {{ string_value: {_quote(value)} }} }}")
        return "\n".join(lines) + "\n"

    def _profile(self, batch: int) -> str:
        """A TensorRT optimization profile's shapes: ``name:BxD1xD2...`` for every input."""
        return ",".join(f"{t.name}:{'x'.join(str(d) for d in (batch, *t.dims))}" for t in self.inputs)

    def _tensorrt_lines(self, trt: TensorRT) -> list[str]:
        parameters = {
            "precision_mode": trt.precision,
            "max_workspace_size_bytes": str(trt.max_workspace_bytes),
            "trt_timing_cache_enable": "1",
            "trt_timing_cache_path": trt.timing_cache_path,
        }
        if self.max_batch_size > 0 and all(d > 0 for t in self.inputs for d in t.dims):
            # one engine for every batch size dynamic batching forms, built once (not again as batches grow)
            parameters |= {
                "trt_profile_min_shapes": self._profile(1),
                "trt_profile_opt_shapes": self._profile(self.max_batch_size),
                "trt_profile_max_shapes": self._profile(self.max_batch_size),
            }
        return [
            "optimization { execution_accelerators { gpu_execution_accelerator: [ {",
            '  name: "tensorrt"',
            *(f"  parameters {{ key: {_quote(k)} value: {_quote(v)} }}" for k, v in parameters.items()),
            "} ] } }",
        ]

    def _warmup(self, batch: int) -> str:
        inputs = " ".join(
            f"inputs {{ key: {_quote(t.name)} value: {{ data_type: {t.data_type.value} "
            f"dims: [ {', '.join(str(d) for d in t.dims)} ] zero_data: true }} }}"
            for t in self.inputs
        )
        return f'  {{ name: "batch-{batch}" batch_size: {batch} {inputs} }}'


def _quote(text: str) -> str:
    # JSON string escaping is a valid protobuf text-format string literal for the characters we allow.
    return json.dumps(text)


def _tensor(t: TensorSpec) -> str:
    dims = ", ".join(str(d) for d in t.dims)
    return f"  {{ name: {_quote(t.name)} data_type: {t.data_type.value} dims: [ {dims} ] }}"


def specific_versions(pbtxt: str) -> tuple[int, ...] | None:
    """The versions a config's ``specific`` version policy lists (None: another policy, or none)."""
    match = re.search(r"version_policy\s*:\s*\{\s*specific\s*:\s*\{\s*versions\s*:\s*\[([^\]]*)\]", pbtxt)
    if match is None:
        return None
    return tuple(sorted(int(v) for v in re.findall(r"\d+", match.group(1))))
