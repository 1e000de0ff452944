"""Connection options of every Kafka client, built from ``settings.kafka`` (which holds values only)."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from inferloop.settings import KafkaSettings

TLS_PROTOCOLS = ("SSL", "SASL_SSL")


def _drop_close_noise(record: logging.LogRecord) -> bool:
    """kafka-python logs a metadata refresh cancelled by ``close()`` as an error; it is not one."""
    return "failed Cancelled" not in record.getMessage()


logging.getLogger("kafka.cluster").addFilter(_drop_close_noise)  # every kafka-python client is built from here


def kafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options for kafka-python clients (producers, consumers, admin)."""
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap, "security_protocol": kafka.security_protocol}
    if kafka.security_protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": kafka.sasl_mechanism,
            "sasl_plain_username": kafka.sasl_username,
            "sasl_plain_password": kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
        }
    if kafka.security_protocol in TLS_PROTOCOLS:
        options |= {
            "ssl_cafile": str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
            "ssl_certfile": str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
            "ssl_keyfile": str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
        }
    return options


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context for asyncio clients (aiokafka, faust); None without TLS."""
    if kafka.security_protocol not in TLS_PROTOCOLS:
        return None
    context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    if kafka.ssl_certfile and kafka.ssl_keyfile:
        context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile))
    return context


def aiokafka_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options for aiokafka clients."""
    options = {k: v for k, v in kafka_options(kafka).items() if not k.startswith("ssl_")}
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    return options
