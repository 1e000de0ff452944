"""The one settings tree of inferloop.

Every value can be set from the environment with the ``INFERLOOP_`` prefix; nested groups use a double
underscore, so ``settings.kafka.port`` is ``INFERLOOP_KAFKA__PORT``. The defaults run the whole stack on
one machine. Build the tree once at the entry point (:func:`load_settings`) and pass it down.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from streams.image_uris import ImageUriPolicy

ENV_PREFIX = "INFERLOOP_"
ENV_NESTED_DELIMITER = "__"


def _default_home() -> Path:
    return Path.home() / ".inferloop"


def _default_cache() -> Path:
    return Path.home() / ".cache" / "inferloop"


def _require_files(what: str, *paths: Path | None) -> None:
    """A ValueError naming the first of ``paths`` that is set but is no file."""
    for path in paths:
        if path is not None and not path.is_file():
            raise ValueError(f"{what} {path} does not exist")


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    """The Kafka broker: the one ``inferloop up`` starts, or an existing cluster."""

    host: str = Field("127.0.0.1", description="Address the local broker binds to and advertises.")
    port: int = Field(9092, ge=1, le=65535, description="Client (PLAINTEXT) port of the local broker.")
    controller_port: int = Field(9093, ge=1, le=65535, description="KRaft controller port of the local broker.")
    bootstrap_servers: str | None = Field(
        None, description="Clients connect here; defaults to host:port of the local broker."
    )
    version: str = Field("4.1.1", description="Apache Kafka version resolved from Maven Central.")
    heap_mb: int = Field(512, ge=128, description="Java heap of the local broker, in MiB.")
    start_timeout_s: float = Field(90.0, gt=0, description="How long to wait for the broker to be ready.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with a SASL_* protocol)."
    )
    sasl_username: str | None = Field(None, description="SASL user (with a SASL_* protocol).")
    sasl_password: SecretStr | None = Field(None, description="SASL password (with a SASL_* protocol); never logged.")
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates (SSL, SASL_SSL)."
    )
    ssl_certfile: Path | None = Field(None, description="Client certificate, for brokers that require mutual TLS.")
    ssl_keyfile: Path | None = Field(None, description="Key of the client certificate.")

    @model_validator(mode="after")
    def _consistent_security(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and not (self.sasl_username and self.sasl_password and self.sasl_password.get_secret_value()):
            raise ValueError(
                f"kafka.security_protocol {self.security_protocol} needs INFERLOOP_KAFKA__SASL_USERNAME and "
                "INFERLOOP_KAFKA__SASL_PASSWORD"
            )
        if not sasl and (self.sasl_username or self.sasl_password):
            raise ValueError(
                f"SASL credentials are set but kafka.security_protocol is {self.security_protocol}: "
                "set INFERLOOP_KAFKA__SECURITY_PROTOCOL=SASL_SSL (or remove the credentials)"
            )
        tls = self.security_protocol in ("SSL", "SASL_SSL")
        if not tls and (self.ssl_cafile or self.ssl_certfile or self.ssl_keyfile):
            raise ValueError(
                f"TLS files are set but kafka.security_protocol is {self.security_protocol}: use SSL or SASL_SSL"
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("kafka.ssl_certfile and kafka.ssl_keyfile go together")
        _require_files("kafka TLS file", self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        return self

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.host}:{self.port}"

    def client_options(self) -> dict[str, Any]:
        """Connection options for kafka-python clients (producers, consumers, admin)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL_"):
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options |= {
                "ssl_cafile": str(self.ssl_cafile) if self.ssl_cafile else None,
                "ssl_certfile": str(self.ssl_certfile) if self.ssl_certfile else None,
                "ssl_keyfile": str(self.ssl_keyfile) if self.ssl_keyfile else None,
            }
        return options

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for asyncio clients (aiokafka, faust); None without TLS."""
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile and self.ssl_keyfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile))
        return context

    def aiokafka_options(self) -> dict[str, Any]:
        """Connection options for aiokafka clients."""
        options = {k: v for k, v in self.client_options().items() if not k.startswith("ssl_")}
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        return options

    def faust_credentials(self) -> Any:
        """``broker_credentials`` for a Faust app (None for PLAINTEXT)."""
        import faust

        context = self.ssl_context()
        if self.security_protocol.startswith("SASL_"):
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value() if self.sasl_password else None,
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None


class TritonSettings(_Group):
    """The Triton Inference Server: the one ``inferloop up`` starts, or an existing deployment."""

    host: str = Field("127.0.0.1", description="Address the local server binds to and clients reach.")
    http_port: int = Field(8000, ge=1, le=65535, description="HTTP/REST port.")
    grpc_port: int = Field(8001, ge=1, le=65535, description="gRPC port (what the workers use).")
    metrics_port: int = Field(8002, ge=1, le=65535, description="Prometheus metrics port.")
    model_repository: Path | None = Field(
        None, description="Triton model repository; defaults to <home>/model_repository."
    )
    start_timeout_s: float = Field(120.0, gt=0, description="How long to wait for the server to be ready.")
    fan_out: bool = Field(
        False,
        description="Trainer and rollback: load versions on every address `host` resolves to (a headless Service).",
    )
    tls: bool = Field(False, description="Talk gRPC to Triton over TLS (workers, joiner, trainer, CLI).")
    tls_ca_file: Path | None = Field(
        None, description="CA bundle that signed Triton's gRPC certificate (default: the system's roots)."
    )
    tls_cert_file: Path | None = Field(None, description="Client certificate, for a Triton that requires mutual TLS.")
    tls_key_file: Path | None = Field(None, description="Key of the client certificate.")
    tls_server_name: str | None = Field(
        None, description="Name to verify Triton's certificate against (default: `host`, also with fan_out)."
    )
    tls_server_cert_file: Path | None = Field(
        None, description="`inferloop up`: serve gRPC over TLS with this certificate (needs tls_server_key_file)."
    )
    tls_server_key_file: Path | None = Field(None, description="`inferloop up`: key of the server certificate.")

    @model_validator(mode="after")
    def _consistent_tls(self) -> TritonSettings:
        client = {"tls_ca_file": self.tls_ca_file, "tls_cert_file": self.tls_cert_file,
                  "tls_key_file": self.tls_key_file, "tls_server_name": self.tls_server_name}  # fmt: skip
        if not self.tls and any(v is not None for v in client.values()):
            named = ", ".join(env_var(f"triton.{k}") for k, v in client.items() if v is not None)
            raise ValueError(f"{named} set but Triton TLS is off: set INFERLOOP_TRITON__TLS=true (or remove them)")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("triton.tls_cert_file and triton.tls_key_file go together")
        if bool(self.tls_server_cert_file) != bool(self.tls_server_key_file):
            raise ValueError("triton.tls_server_cert_file and triton.tls_server_key_file go together")
        if self.tls_server_cert_file and not self.tls:
            raise ValueError(
                "triton.tls_server_cert_file is set but clients would not use TLS: set INFERLOOP_TRITON__TLS=true"
            )
        _require_files("Triton TLS file", self.tls_ca_file, self.tls_cert_file, self.tls_key_file,
                       self.tls_server_cert_file, self.tls_server_key_file)  # fmt: skip
        return self

    def grpc_client_options(self) -> dict[str, Any]:
        """Keyword arguments of tritonclient's gRPC clients (sync and asyncio) for these settings."""
        if not self.tls:
            return {}
        options: dict[str, Any] = {
            "ssl": True,
            "root_certificates": str(self.tls_ca_file) if self.tls_ca_file else None,
            "private_key": str(self.tls_key_file) if self.tls_key_file else None,
            "certificate_chain": str(self.tls_cert_file) if self.tls_cert_file else None,
        }
        name = self.tls_server_name or (self.host if self.fan_out else None)
        if name:  # connect by address (a replica's IP), verify the certificate against this name
            from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

            options["channel_args"] = [
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.ssl_target_name_override", name),
            ]
        return options

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


class StreamsSettings(_Group):
    """Topics, batching and limits of the streaming worker."""

    app_id: str = Field("inferloop-worker", description="Faust app id: the consumer group and topic prefix.")
    images_topic: str = Field("inferloop.images", description="Image events in.")
    predictions_topic: str = Field("inferloop.predictions", description="Predictions out, keyed by event id.")
    dead_letter_topic: str = Field("inferloop.dead-letters", description="Events that could not be processed.")
    partitions: int = Field(4, ge=1, description="Partitions of the topics inferloop creates.")
    max_batch: int = Field(256, ge=1, description="Most events the worker takes into one batch.")
    batch_within_ms: float = Field(10.0, gt=0, description="Longest wait to fill a batch.")
    top_k: int = Field(3, ge=1, description="Labels with scores in each prediction.")
    metrics_port: int = Field(9100, ge=0, le=65535, description="Worker's Prometheus /metrics port (0: off).")
    max_image_bytes: int = Field(8 * 1024 * 1024, ge=1, description="Largest image accepted, in bytes.")
    max_image_pixels: int = Field(4_000_000, ge=1, description="Most pixels accepted (decompression bombs).")
    inline_max_bytes: int = Field(
        512 * 1024,
        ge=1,
        description="Producer: larger images travel as a file:// URI when under an image URI root, else inline.",
    )
    image_uri_roots: tuple[str, ...] = Field(
        (),
        description=(
            "Where image URIs may point (JSON list): local folders or prefixes like s3://bucket/images/; "
            "empty: URIs are refused (uri_not_allowed) and images travel inline."
        ),
    )
    dead_letter_max_original_bytes: int = Field(
        256 * 1024, ge=0, description="Dead letters keep the original bytes up to this size."
    )
    triton_timeout_s: float = Field(10.0, gt=0, description="Timeout of one inference call.")
    retry_initial_s: float = Field(0.2, gt=0, description="First back-off while Triton is unavailable.")
    retry_max_s: float = Field(5.0, gt=0, description="Longest back-off while Triton is unavailable.")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Largest Kafka record the producers send.")
    session_timeout_s: float = Field(
        30.0, ge=6, description="A worker silent this long loses its partitions to the others (Kafka session timeout)."
    )

    @field_validator("image_uri_roots")
    @classmethod
    def _valid_roots(cls, roots: tuple[str, ...]) -> tuple[str, ...]:
        from streams.image_uris import ImageUriPolicy

        ImageUriPolicy.from_roots(roots)  # raises ValueError with the offending root
        return roots

    def image_uris(self) -> ImageUriPolicy:
        """What image URIs the worker and the joiner may read."""
        from streams.image_uris import ImageUriPolicy

        return ImageUriPolicy.from_roots(self.image_uri_roots)


class FeedbackSettings(_Group):
    """The learning loop's streaming half: feedback in, joined with predictions, labelled examples logged."""

    topic: str = Field("inferloop.feedback", description="Feedback (true labels for event ids) in.")
    training_log_topic: str = Field(
        "inferloop.training-log", description="Joined, labelled examples out: a compacted topic, kept forever."
    )
    app_id: str = Field("inferloop-joiner", description="Faust app id of the joiner (its group and table prefix).")
    retention_s: float = Field(
        86_400.0, gt=0, description="How long a prediction stays joinable; later feedback is dead-lettered."
    )
    wait_s: float = Field(
        60.0, gt=0, description="How long feedback waits for its prediction before it is dead-lettered."
    )
    sweep_interval_s: float = Field(2.0, gt=0, description="How often the joiner expires old table entries.")
    online_window: int = Field(200, ge=1, description="Labelled predictions per version in the rolling accuracy.")
    metrics_port: int = Field(9101, ge=0, le=65535, description="Joiner's Prometheus /metrics port (0: off).")


class ModelSettings(_Group):
    """The served model: its name in Triton and how Triton batches and runs it."""

    name: str = Field("digits", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Model name in Triton.")
    max_batch_size: int = Field(64, ge=1, description="Largest batch Triton accepts and forms.")
    instance_count: int = Field(1, ge=1, description="Model instances (processes) per Triton server.")
    max_queue_delay_us: int = Field(2000, ge=0, description="Dynamic batching: longest wait to fill a batch.")


class TrainerSettings(_Group):
    """Retraining, the evaluation gate and publishing."""

    dataset: str = Field("digits", description="Bootstrap data: 'digits' (embedded) or an ImageFolder path.")
    image_channels: int = Field(1, description="Model input channels (1 grey, 3 RGB).")
    image_height: int = Field(28, description="Model input height in pixels.")
    image_width: int = Field(28, description="Model input width in pixels.")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="Share of the dataset kept out as fixed holdout.")
    feedback_dir: Path | None = Field(
        None, description="ImageFolder of newly labelled images; defaults to <home>/labelled."
    )
    feedback_holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of labelled feedback kept out to evaluate on."
    )
    bootstrap_epochs: int = Field(30, ge=1, description="Epochs when training version 1 from scratch.")
    finetune_epochs: int = Field(40, ge=1, description="Epochs when fine-tuning the serving version.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate from scratch.")
    finetune_learning_rate: float = Field(2e-3, gt=0, description="Peak learning rate when fine-tuning.")
    batch_size: int = Field(64, ge=1, description="Training batch size.")
    replay_ratio: float = Field(3.0, ge=0, description="Earlier examples replayed per new example.")
    tolerance: float = Field(
        0.02, ge=0, le=1, description="Gate: how much worse (accuracy) a candidate may be on any holdout."
    )
    feedback_source: str = Field(
        "log", pattern="^(log|folder)$", description="Where new labels come from: the training log or feedback_dir."
    )
    min_new_labels: int = Field(
        50, ge=1, description="Trigger: retrain once this many new labelled examples are logged (and never on fewer)."
    )
    interval_s: float = Field(30.0, gt=0, description="`inferloop trainer`: seconds between trigger checks.")
    schedule_s: float | None = Field(
        None, gt=0, description="Trigger: retrain this often (seconds) when any new labels exist; unset: off."
    )
    min_online_accuracy: float | None = Field(
        None, ge=0, le=1, description="Trigger: retrain when the serving version's online accuracy falls below."
    )
    min_labels_per_run: int = Field(
        20, ge=1, description="Schedule and accuracy triggers: fewest new labelled examples a retraining uses."
    )
    serving_versions: int = Field(1, ge=1, description="How many of the newest versions Triton serves at once.")
    keep_versions: int = Field(10, ge=1, description="Versions kept on disk (for rollback); older are deleted.")
    load_timeout_s: float = Field(120.0, gt=0, description="How long Triton may take to load a version.")
    seed: int = Field(0, description="Seed of training and sampling.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="`inferloop trainer`'s Prometheus port (0: off).")


class PrometheusSettings(_Group):
    """The Prometheus `inferloop up --with-prometheus` starts (it scrapes the ports configured here)."""

    host: str = Field("127.0.0.1", description="Address the local Prometheus listens on.")
    port: int = Field(9090, ge=1, le=65535, description="Local Prometheus HTTP port (UI and API).")
    scrape_interval_s: float = Field(5.0, gt=0, description="Scrape and rule-evaluation interval.")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class Settings(BaseSettings):
    """Root of the settings tree (environment prefix ``INFERLOOP_``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    home: Path = Field(
        default_factory=_default_home,
        description="State folder: process records, logs and the persistent data of `inferloop up`.",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache,
        description="Downloaded and prepared runtimes: Kafka jars, the Triton backend folder.",
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    triton: TritonSettings = Field(default_factory=TritonSettings)  # type: ignore[arg-type]
    model: ModelSettings = Field(default_factory=ModelSettings)  # type: ignore[arg-type]
    streams: StreamsSettings = Field(default_factory=StreamsSettings)  # type: ignore[arg-type]
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)  # type: ignore[arg-type]
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)  # type: ignore[arg-type]
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)  # type: ignore[arg-type]

    @property
    def model_repository(self) -> Path:
        return self.triton.model_repository or self.home / "model_repository"

    def secret_values(self) -> list[str]:
        """Every secret in the settings (masked in logs by :func:`streams.redact.redact_secrets`)."""
        password = self.kafka.sasl_password
        return [password.get_secret_value()] if password is not None else []

    @property
    def feedback_dir(self) -> Path:
        return self.trainer.feedback_dir or self.home / "labelled"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)


def env_var(path: str) -> str:
    """The environment variable that sets a field, from its dotted path: ``kafka.port`` → ``INFERLOOP_KAFKA__PORT``."""
    return ENV_PREFIX + path.replace(".", ENV_NESTED_DELIMITER).upper()
