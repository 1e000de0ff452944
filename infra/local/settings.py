"""Settings only the local launchers read, under the same ``INFERLOOP_`` names as the core tree.

:class:`LocalSettings` is :class:`~inferloop.settings.Settings` plus what it takes to start the servers here:
where the runtimes are cached, the broker's controller port, version and heap, Triton's server certificate,
start-up timeouts and the local Prometheus. The CLI reads these (every command may start or find the local
stack); a library user of the core reads :class:`~inferloop.settings.Settings` alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from inferloop.settings import KafkaSettings, Settings, SettingsGroup, TritonSettings, load_tree, require_files


def _default_cache() -> Path:
    return Path.home() / ".cache" / "inferloop"


class LocalKafkaSettings(KafkaSettings):
    """The broker ``inferloop up`` starts."""

    controller_port: int = Field(9093, ge=1, le=65535, description="KRaft controller port of the local broker.")
    version: str = Field("4.1.1", description="Apache Kafka version resolved from Maven Central.")
    heap_mb: int = Field(512, ge=128, description="Java heap of the local broker, in MiB.")
    start_timeout_s: float = Field(90.0, gt=0, description="How long to wait for the broker to be ready.")


class LocalTritonSettings(TritonSettings):
    """The Triton server ``inferloop up`` starts."""

    start_timeout_s: float = Field(120.0, gt=0, description="How long to wait for the server to be ready.")
    tls_server_cert_file: Path | None = Field(
        None, description="`inferloop up`: serve gRPC over TLS with this certificate (needs tls_server_key_file)."
    )
    tls_server_key_file: Path | None = Field(None, description="`inferloop up`: key of the server certificate.")

    @model_validator(mode="after")
    def _consistent_server_tls(self) -> LocalTritonSettings:
        if bool(self.tls_server_cert_file) != bool(self.tls_server_key_file):
            raise ValueError("triton.tls_server_cert_file and triton.tls_server_key_file go together")
        if self.tls_server_cert_file and not self.tls:
            raise ValueError(
                "triton.tls_server_cert_file is set but clients would not use TLS: set INFERLOOP_TRITON__TLS=true"
            )
        require_files(
            "Triton TLS file",
            self.tls_server_cert_file,
            secret=("triton.tls_server_key_file", self.tls_server_key_file),
        )
        return self


class PrometheusSettings(SettingsGroup):
    """The Prometheus `inferloop up --with-prometheus` starts (it scrapes the ports configured here)."""

    host: str = Field("127.0.0.1", description="Address the local Prometheus listens on.")
    port: int = Field(9090, ge=1, le=65535, description="Local Prometheus HTTP port (UI and API).")
    scrape_interval_s: float = Field(5.0, gt=0, description="Scrape and rule-evaluation interval.")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class LocalSettings(Settings):
    """The whole settings tree with the launchers' own settings (environment prefix ``INFERLOOP_``)."""

    cache_dir: Path = Field(
        default_factory=_default_cache,
        description="Downloaded and prepared runtimes: Kafka jars, the Triton backend folder.",
    )
    kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)  # type: ignore[arg-type]
    triton: LocalTritonSettings = Field(default_factory=LocalTritonSettings)  # type: ignore[arg-type]
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)  # type: ignore[arg-type]


def load_local_settings(**overrides: Any) -> LocalSettings:
    """Read the whole tree from the environment; :class:`ConfigurationError` names what is wrong."""
    return load_tree(LocalSettings, **overrides)
