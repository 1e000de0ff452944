from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import Settings, env_var, load_settings


def test_defaults_run_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("INFERLOOP_"):
            monkeypatch.delenv(key)
    s = load_settings()
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.triton.grpc_url == "127.0.0.1:8001"
    assert s.model_repository == s.home / "model_repository"


def test_environment_overrides_nested_fields(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFERLOOP_HOME", str(tmp_path))
    monkeypatch.setenv("INFERLOOP_KAFKA__PORT", "19092")
    monkeypatch.setenv("INFERLOOP_KAFKA__BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("INFERLOOP_TRITON__GRPC_PORT", "18001")
    s = Settings()
    assert s.home == tmp_path
    assert s.kafka.port == 19092
    assert s.kafka.bootstrap == "broker-a:9092,broker-b:9092"
    assert s.triton.grpc_url == "127.0.0.1:18001"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERLOOP_KAFKA__PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(kafka={"prot": 1})


def test_env_var_names_match_what_settings_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for path, value in [("kafka.controller_port", "1234"), ("triton.metrics_port", "4321")]:
        monkeypatch.setenv(env_var(path), value)
    s = Settings()
    assert s.kafka.controller_port == 1234
    assert s.triton.metrics_port == 4321
    assert env_var("triton.grpc_port") == "INFERLOOP_TRITON__GRPC_PORT"


def test_cli_durations() -> None:
    import typer

    from streams.cli import parse_duration

    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("2h") == 7200
    for bad in ("soon", "-5m", "0"):
        with pytest.raises(typer.BadParameter):
            parse_duration(bad)


SECRET = "-".join(["not", "a", "real", "secret"])


def test_kafka_security_is_consistent_or_refused(tmp_path: Path) -> None:
    from streams.settings import KafkaSettings

    with pytest.raises(ValueError, match="needs INFERLOOP_KAFKA__SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="SASL credentials are set"):
        KafkaSettings(sasl_username="u", sasl_password=SECRET)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist"):
        KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    k = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=SECRET)  # type: ignore[arg-type]
    options = k.client_options()
    assert options["sasl_plain_password"] == SECRET and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert SECRET not in repr(k), "the password would show in logs"
    assert KafkaSettings().client_options() == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_triton_tls_is_consistent_or_refused(tmp_path: Path) -> None:
    from infra.local.stack import triton_service
    from streams.settings import TritonSettings

    pem = tmp_path / "x.pem"
    pem.write_text("not checked here")
    with pytest.raises(ValueError, match="INFERLOOP_TRITON__TLS_CA_FILE set but Triton TLS is off"):
        TritonSettings(tls_ca_file=pem)
    with pytest.raises(ValueError, match="go together"):
        TritonSettings(tls=True, tls_cert_file=pem)
    with pytest.raises(ValueError, match="does not exist"):
        TritonSettings(tls=True, tls_ca_file=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="clients would not use TLS"):
        TritonSettings(tls_server_cert_file=pem, tls_server_key_file=pem)
    assert TritonSettings().grpc_client_options() == {}
    options = TritonSettings(tls=True, tls_ca_file=pem).grpc_client_options()
    assert options == {"ssl": True, "root_certificates": str(pem), "private_key": None, "certificate_chain": None}
    fleet = TritonSettings(host="triton.ns.svc", tls=True, fan_out=True).grpc_client_options()
    assert ("grpc.ssl_target_name_override", "triton.ns.svc") in fleet["channel_args"], "replicas dialled by IP"

    settings = Settings(
        home=tmp_path,
        triton={"tls": True, "tls_ca_file": pem, "tls_server_cert_file": pem, "tls_server_key_file": pem},
    )  # type: ignore[arg-type]
    command = triton_service(settings).command()
    assert "--grpc-use-ssl=true" in command and f"--grpc-server-cert={pem}" in command
    assert not any("mutual" in arg for arg in command), "no client certificate configured: one-way TLS"
