"""The launchers' own settings: the server certificate of the local Triton, checked with the client settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferloop.settings import Settings
from infra.local.settings import LocalSettings, LocalTritonSettings
from infra.local.stack import triton_service


def test_triton_server_tls_is_consistent_or_refused(tmp_path: Path) -> None:
    pem = tmp_path / "x.pem"
    pem.write_text("not checked here")
    with pytest.raises(ValueError, match="clients would not use TLS"):
        LocalTritonSettings(tls_server_cert_file=pem, tls_server_key_file=pem)
    with pytest.raises(ValueError, match="go together"):
        LocalTritonSettings(tls=True, tls_server_cert_file=pem)
    settings = LocalSettings(
        home=tmp_path,
        triton={"tls": True, "tls_ca_file": pem, "tls_server_cert_file": pem, "tls_server_key_file": pem},
    )  # type: ignore[arg-type]
    command = triton_service(settings).command()
    assert "--grpc-use-ssl=true" in command and f"--grpc-server-cert={pem}" in command
    assert not any("mutual" in arg for arg in command), "no client certificate configured: one-way TLS"


def test_launcher_settings_share_the_environment_names_of_the_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERLOOP_KAFKA__CONTROLLER_PORT", "1234")
    monkeypatch.setenv("INFERLOOP_KAFKA__PORT", "4321")
    local = LocalSettings()
    assert local.kafka.controller_port == 1234 and local.kafka.port == 4321
    assert isinstance(local, Settings), "every app takes the launchers' settings as its own"
    monkeypatch.setenv("INFERLOOP_KAFKA__VERSION", "4.0.0")
    monkeypatch.setenv("INFERLOOP_TRITON__START_TIMEOUT_S", "5")
    core = Settings()  # a process of the core alone reads the same environment, ignoring what is not its own
    assert core.kafka.port == 4321 and not hasattr(core.kafka, "version")
    assert LocalSettings().kafka.version == "4.0.0" and LocalSettings().triton.start_timeout_s == 5
    with pytest.raises(ValueError, match="prot"):
        Settings(kafka={"prot": 1})  # type: ignore[arg-type]  # a typo is still refused
