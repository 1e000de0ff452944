"""gRPC client options (TLS, channel arguments) from ``settings.triton``, for every Triton client."""

from __future__ import annotations

from typing import Any

from inferloop.settings import TritonSettings


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
