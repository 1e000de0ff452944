from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from inferloop.errors import ConfigurationError
from inferloop.settings import Settings, env_var, load_settings


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
    for path, value in [("kafka.port", "1234"), ("triton.metrics_port", "4321")]:
        monkeypatch.setenv(env_var(path), value)
    s = Settings()
    assert s.kafka.port == 1234
    assert s.triton.metrics_port == 4321
    assert env_var("triton.grpc_port") == "INFERLOOP_TRITON__GRPC_PORT"


SECRET = "-".join(["not", "a", "real", "secret"])


def test_kafka_security_is_consistent_or_refused(tmp_path: Path) -> None:
    from inferloop.settings import KafkaSettings

    with pytest.raises(ValueError, match="needs INFERLOOP_KAFKA__SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="SASL credentials are set"):
        KafkaSettings(sasl_username="u", sasl_password=SECRET)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist"):
        KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "missing.pem")
    k = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=SECRET)  # type: ignore[arg-type]
    assert SECRET not in repr(k), "the password would show in logs"


def test_triton_tls_is_consistent_or_refused(tmp_path: Path) -> None:
    from inferloop.settings import TritonSettings

    pem = tmp_path / "x.pem"
    pem.write_text("not checked here")
    with pytest.raises(ValueError, match="INFERLOOP_TRITON__TLS_CA_FILE set but Triton TLS is off"):
        TritonSettings(tls_ca_file=pem)
    with pytest.raises(ValueError, match="go together"):
        TritonSettings(tls=True, tls_cert_file=pem)
    with pytest.raises(ValueError, match="does not exist"):
        TritonSettings(tls=True, tls_ca_file=tmp_path / "missing.pem")


@pytest.mark.security
def test_two_roles_never_share_a_topic() -> None:
    """Trust comes from the feedback topic a label arrives on: the trusted topic cannot be the open one (nor any
    other topic be two)."""
    with pytest.raises(ConfigurationError, match="INFERLOOP_FEEDBACK__TOPIC and INFERLOOP_FEEDBACK__TRUSTED_TOPIC"):
        load_settings(feedback={"trusted_topic": "inferloop.feedback"})
    with pytest.raises(ConfigurationError, match=r"name the same topic 'inferloop\.images'"):
        load_settings(feedback={"training_log_topic": "inferloop.images"})


def test_load_settings_names_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERLOOP_KAFKA__PORT", "70000")
    with pytest.raises(ConfigurationError, match=r"^invalid settings: INFERLOOP_KAFKA__PORT: Input should be less"):
        load_settings()
    monkeypatch.delenv("INFERLOOP_KAFKA__PORT")
    monkeypatch.setenv("INFERLOOP_STREAMS__IMAGE_URI_ROOTS", "not json")  # pydantic-settings cannot even parse it
    with pytest.raises(ConfigurationError, match=r'invalid settings.*"streams"'):
        load_settings()


def test_to_env_gives_a_child_process_exactly_these_settings(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        kafka={"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": SECRET},
        streams={"image_uri_roots": [str(tmp_path)], "batch_within_ms": 2.5},
        triton={"tls": False, "fan_out": True},
    )  # type: ignore[arg-type]
    env = settings.to_env()
    assert env["INFERLOOP_KAFKA__SASL_PASSWORD"] == SECRET
    assert env["INFERLOOP_STREAMS__IMAGE_URI_ROOTS"] == json.dumps([str(tmp_path)])
    assert env["INFERLOOP_TRITON__FAN_OUT"] == "true"
    assert "INFERLOOP_KAFKA__BOOTSTRAP_SERVERS" not in env, "None is left unset, not the string 'None'"
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("INFERLOOP_"):
                patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        assert Settings() == settings


def test_a_topic_prefix_moves_every_topic_and_group() -> None:
    prefixed = Settings().with_topic_prefix("run-7")
    s, f = prefixed.streams, prefixed.feedback
    names = [s.images_topic, s.predictions_topic, s.dead_letter_topic, f.topic, f.training_log_topic]
    assert all(n.startswith("run-7.") for n in names) and len(set(names)) == 5
    assert (s.app_id, f.app_id) == ("run-7-worker", "run-7-joiner")


def test_an_outage_budget_that_reaches_the_poll_interval_is_refused() -> None:
    Settings(streams={"outage_timeout_s": 40, "max_poll_interval_s": 60})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="max_poll_interval_s"):
        Settings(streams={"outage_timeout_s": 50, "max_poll_interval_s": 60})  # type: ignore[arg-type]


def test_replication_factor_is_the_broker_default_or_a_count() -> None:
    assert Settings().kafka.replication_factor == -1
    assert Settings(kafka={"replication_factor": 3}).kafka.replication_factor == 3  # type: ignore[arg-type]
    for bad in (0, -2):
        with pytest.raises(ValidationError, match="replication_factor"):
            Settings(kafka={"replication_factor": bad})  # type: ignore[arg-type]
