"""Options from the settings for Triton's clients (gRPC TLS and channel arguments, from ``settings.triton``) and for
the model's config (instance kind and accelerator, from ``settings.model``)."""

from __future__ import annotations

from typing import Any

from inferloop.settings import ModelSettings, TritonSettings
from inferloop.triton.model_config import KIND_CPU, KIND_GPU, TensorRT, answer_tolerance


def instance_kind(model: ModelSettings) -> str:
    """``KIND_GPU`` or ``KIND_CPU``, as ``model.device`` says."""
    return KIND_GPU if model.device == "gpu" else KIND_CPU


def tensorrt(model: ModelSettings) -> TensorRT | None:
    """The TensorRT accelerator ``model`` asks for (None: plain onnxruntime)."""
    return TensorRT(precision=model.tensorrt_precision.upper()) if model.tensorrt else None


def model_answer_tolerance(model: ModelSettings) -> float:
    """How far served answers may be from the artifact's on a CPU, for this backend and precision."""
    return answer_tolerance(instance_kind(model), tensorrt(model))


def grpc_options(triton: TritonSettings) -> dict[str, Any]:
    """Keyword arguments of tritonclient's gRPC clients (sync and asyncio) for these settings."""
    if not triton.tls:
        return {}
    options: dict[str, Any] = {
        "ssl": True,
        "root_certificates": str(triton.tls_ca_file) if triton.tls_ca_file else None,
        "private_key": str(triton.tls_key_file) if triton.tls_key_file else None,
        "certificate_chain": str(triton.tls_cert_file) if triton.tls_cert_file else None,
    }
    name = triton.tls_server_name or (triton.host if triton.fan_out else None)
    if name:  # connect by address (a replica's IP), verify the certificate against this name
        from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

        options["channel_args"] = [
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
            ("grpc.ssl_target_name_override", name),
        ]
    return options
