"""Kafka client options are built from the settings, secrets included only where a client needs them."""

from __future__ import annotations

from pathlib import Path

from inferloop.kafka.options import aiokafka_options, kafka_options, ssl_context
from inferloop.settings import KafkaSettings

SECRET = "-".join(["not", "a", "real", "secret"])


def test_plaintext_needs_only_the_bootstrap_servers() -> None:
    assert kafka_options(KafkaSettings()) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert ssl_context(KafkaSettings()) is None


def test_sasl_options_carry_the_credentials(tmp_path: Path) -> None:
    k = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="u", sasl_password=SECRET)  # type: ignore[arg-type]
    options = kafka_options(k)
    assert options["sasl_plain_password"] == SECRET and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert aiokafka_options(k)["sasl_plain_username"] == "u"
    assert "ssl_context" not in aiokafka_options(k), "no TLS without an SSL protocol"
