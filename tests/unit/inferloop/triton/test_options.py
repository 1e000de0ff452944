"""gRPC options for Triton clients come from ``settings.triton``: none without TLS, a CA, a name for replicas."""

from __future__ import annotations

from pathlib import Path

from inferloop.settings import TritonSettings
from inferloop.triton.options import grpc_options


def test_grpc_options_follow_the_tls_settings(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not checked here")
    assert grpc_options(TritonSettings()) == {}
    options = grpc_options(TritonSettings(tls=True, tls_ca_file=pem))
    assert options == {"ssl": True, "root_certificates": str(pem), "private_key": None, "certificate_chain": None}
    fleet = grpc_options(TritonSettings(host="triton.ns.svc", tls=True, fan_out=True))
    assert ("grpc.ssl_target_name_override", "triton.ns.svc") in fleet["channel_args"], "replicas dialled by IP"
