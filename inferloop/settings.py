"""The one settings tree of inferloop.

Every value can be set from the environment with the ``INFERLOOP_`` prefix; nested groups use a double
underscore, so ``settings.kafka.port`` is ``INFERLOOP_KAFKA__PORT``. The defaults run the whole stack on
one machine. Build the tree once at the entry point (:func:`load_settings`) and pass it down.

The tree holds values only: each adapter builds its own client options from its group
(``inferloop.kafka.options.kafka_options(settings.kafka)``, ``inferloop.triton.options.grpc_options(settings.triton)``,
``inferloop.images.uris.ImageUriReader.from_settings(settings.streams)``). Settings only the local launchers read (the
broker's version and heap, Triton's server certificate, the local Prometheus) extend this tree in
``infra.local.settings``, under the same environment names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inferloop.errors import ConfigurationError

ENV_PREFIX = "INFERLOOP_"
ENV_NESTED_DELIMITER = "__"


def _default_home() -> Path:
    return Path.home() / ".inferloop"


def require_files(what: str, *paths: Path | None, secret: tuple[str, Path | None] = ("", None)) -> None:
    """A ValueError naming the first of ``paths`` (and ``secret``: a private key's setting and path) that is set but
    is no file. The value of ``secret`` is never repeated (a key pasted where its path belongs would be), nor is a
    value that looks like a file's contents."""
    key_setting, key = secret
    for path in (*paths, key):
        if path is None:
            continue
        text = str(path)
        try:
            if path.is_file():
                continue
        except OSError:  # a name too long to be a path (a pasted key, likely): never in a traceback
            pass
        if path is key:
            raise ValueError(f"{env_var(key_setting)} names no file (its value is not shown: it may be a key)")
        if "-----BEGIN" in text or "\n" in text or len(text) > 1024:
            raise ValueError(f"a {what} setting names no file (its value is not shown: it may be a key)")
        raise ValueError(f"{what} {path} does not exist")


class SettingsGroup(BaseModel):
    """A group of the settings tree: frozen, unknown fields refused.

    ``launcher_fields`` are names under this group's environment prefix that only the local launchers read
    (:mod:`infra.local.settings` declares them): a process of the core alone ignores them rather than refusing
    an environment the launchers share with it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
    launcher_fields: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _ignore_launcher_fields(cls, data: Any) -> Any:
        ignored = cls.launcher_fields - cls.model_fields.keys()
        if isinstance(data, dict) and ignored:
            return {k: v for k, v in data.items() if k not in ignored}
        return data


class KafkaSettings(SettingsGroup):
    """The Kafka broker: the one ``inferloop up`` starts, or an existing cluster."""

    launcher_fields = frozenset({"controller_port", "version", "heap_mb", "start_timeout_s"})

    host: str = Field("127.0.0.1", description="Address the local broker binds to and advertises.")
    port: int = Field(9092, ge=1, le=65535, description="Client (PLAINTEXT) port of the local broker.")
    bootstrap_servers: str | None = Field(
        None, description="Clients connect here; defaults to host:port of the local broker."
    )
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
    create_topics: bool = Field(
        True,
        description="Create missing topics (faust's changelog included) at start; off for managed clusters, "
        "where `inferloop topics create` or the cluster's tooling creates them and a missing one stops the process.",
    )
    replication_factor: int = Field(
        -1, ge=-1, description="Replicas of every topic inferloop creates; -1: the broker's default.replication.factor."
    )
    min_insync_replicas: int | None = Field(
        None, ge=1, description="min.insync.replicas of every topic inferloop creates; unset: the broker's default."
    )

    @model_validator(mode="after")
    def _consistent_security(self) -> KafkaSettings:
        if self.replication_factor == 0:
            raise ValueError("kafka.replication_factor is -1 (the broker's default) or a number of replicas")
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
        require_files(
            "kafka TLS file", self.ssl_cafile, self.ssl_certfile, secret=("kafka.ssl_keyfile", self.ssl_keyfile)
        )
        return self

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"{self.host}:{self.port}"


class TritonSettings(SettingsGroup):
    """The Triton Inference Server: the one ``inferloop up`` starts, or an existing deployment."""

    launcher_fields = frozenset({"start_timeout_s", "tls_server_cert_file", "tls_server_key_file"})

    host: str = Field("127.0.0.1", description="Address the local server binds to and clients reach.")
    http_port: int = Field(8000, ge=1, le=65535, description="HTTP/REST port.")
    grpc_port: int = Field(8001, ge=1, le=65535, description="gRPC port (what the workers use).")
    metrics_port: int = Field(8002, ge=1, le=65535, description="Prometheus metrics port.")
    model_repository: Path | None = Field(
        None, description="Triton model repository; defaults to <home>/model_repository."
    )
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

    @model_validator(mode="after")
    def _consistent_tls(self) -> TritonSettings:
        client = {"tls_ca_file": self.tls_ca_file, "tls_cert_file": self.tls_cert_file,
                  "tls_key_file": self.tls_key_file, "tls_server_name": self.tls_server_name}  # fmt: skip
        if not self.tls and any(v is not None for v in client.values()):
            named = ", ".join(env_var(f"triton.{k}") for k, v in client.items() if v is not None)
            raise ValueError(f"{named} set but Triton TLS is off: set INFERLOOP_TRITON__TLS=true (or remove them)")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("triton.tls_cert_file and triton.tls_key_file go together")
        require_files(
            "Triton TLS file", self.tls_ca_file, self.tls_cert_file, secret=("triton.tls_key_file", self.tls_key_file)
        )
        return self

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


class StreamsSettings(SettingsGroup):
    """Topics, batching and limits of the streaming worker."""

    app_id: str = Field("inferloop-worker", description="Faust app id: the consumer group and topic prefix.")
    images_topic: str = Field("inferloop.images", description="Image events in.")
    predictions_topic: str = Field("inferloop.predictions", description="Predictions out, keyed by event id.")
    dead_letter_topic: str = Field("inferloop.dead-letters", description="Events that could not be processed.")
    shadow_predictions_topic: str = Field(
        "inferloop.shadow-predictions",
        description="Predictions of the candidate in shadow, keyed by event id (never on the predictions topic).",
    )
    shadow_fraction: float = Field(
        1.0, ge=0, le=1, description="Share of live events also scored by the candidate in shadow (by event id)."
    )
    shadow_timeout_s: float = Field(
        2.0,
        gt=0,
        description=(
            "Longest a batch waits for the candidate in shadow beyond its own predictions (it runs beside them); "
            "a slower shadow is skipped and counted, never the batch."
        ),
    )
    partitions: int = Field(4, ge=1, description="Partitions of the topics inferloop creates.")
    max_batch: int = Field(256, ge=1, description="Most events the worker takes into one batch.")
    batches_in_flight: int = Field(
        1,
        ge=1,
        le=8,
        description="Batches the worker works on at once (above 1, the next is decoded while one is inferred).",
    )
    batch_within_ms: float = Field(
        0.0,
        ge=0,
        description="Longest wait for more events once one has arrived (0: a batch is what has arrived by then).",
    )
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
    max_poll_interval_s: float = Field(
        300.0,
        ge=1,
        description="A consumer that fetches nothing for this long leaves its group (Kafka max.poll.interval.ms).",
    )
    memory_budget_mb: int = Field(
        512,
        ge=16,
        description=(
            "Most memory the worker's fetched, buffered and in-flight records may take, in MiB, counting each as "
            "max_request_bytes: it sets the batch and buffer sizes (docs/reliability.md, 'Memory')."
        ),
    )
    outage_timeout_s: float = Field(
        240.0,
        gt=0,
        description=(
            "How long one batch waits for an unavailable dependency (Triton, the broker) before the process exits "
            "(code 75) without committing it, so that it never outstays max_poll_interval_s holding partitions."
        ),
    )

    @model_validator(mode="after")
    def _outage_within_poll_interval(self) -> StreamsSettings:
        longest = self.outage_timeout_s + self.triton_timeout_s + self.retry_max_s
        if longest >= self.max_poll_interval_s:
            raise ValueError(
                f"streams.outage_timeout_s + triton_timeout_s + retry_max_s ({longest:g} s) must stay under "
                f"streams.max_poll_interval_s ({self.max_poll_interval_s:g} s): a batch that waits longer makes its "
                "worker leave the group while it still works on the batch"
            )
        return self

    @field_validator("image_uri_roots")
    @classmethod
    def _valid_roots(cls, roots: tuple[str, ...]) -> tuple[str, ...]:
        for root in roots:
            parts = urlsplit(root)
            if parts.scheme in ("", "file") and (
                parts.netloc not in ("", "localhost") or not (parts.path if parts.scheme else root).startswith("/")
            ):
                raise ValueError(f"image URI root {root!r} is not an absolute path on this host")
        return roots


class FeedbackSettings(SettingsGroup):
    """The learning loop's streaming half: feedback in, joined with predictions, labelled examples logged."""

    topic: str = Field(
        "inferloop.feedback",
        description="Open feedback (true labels for event ids) in: feeds training, within trainer.open_label_share.",
    )
    trusted_topic: str = Field(
        "inferloop.trusted-feedback",
        description=(
            "Trusted feedback in: the same records, on a topic only authorised Kafka principals may write (ACLs, "
            "docs/operations.md). Only its labels count as evidence for the gate and for promotion."
        ),
    )
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


class ModelSettings(SettingsGroup):
    """The served model: its name in Triton and how Triton batches and runs it."""

    name: str = Field("digits", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Model name in Triton.")
    max_batch_size: int = Field(64, ge=1, description="Largest batch Triton accepts and forms.")
    instance_count: int = Field(1, ge=1, description="Model instances per Triton server (per GPU on GPUs).")
    max_queue_delay_us: int = Field(
        100,
        ge=0,
        description="Dynamic batching: longest wait to fill a batch (the workers send whole batches already).",
    )
    backend: Literal["python", "onnxruntime"] = Field(
        "python",
        description=(
            "How Triton runs each version's model.onnx: 'python' (a python-backend wrapper calling onnxruntime: the "
            "only backend the PyPI server carries, so the local stack's) or 'onnxruntime' (Triton's native backend, "
            "platform onnxruntime_onnx: the stock NGC image, CPUs or GPUs)."
        ),
    )
    device: Literal["cpu", "gpu"] = Field(
        "cpu", description="Where the instances run: KIND_CPU or KIND_GPU (a GPU needs backend 'onnxruntime')."
    )
    tensorrt: bool = Field(
        False, description="GPUs only: let onnxruntime hand the graph to TensorRT (Triton's execution accelerator)."
    )
    tensorrt_precision: Literal["fp32", "fp16"] = Field(
        "fp32", description="TensorRT's precision; fp16 is faster and answers within a looser tolerance."
    )

    @model_validator(mode="after")
    def _runs_somewhere(self) -> Self:
        if self.device == "gpu" and self.backend != "onnxruntime":
            raise ValueError("model.device gpu needs model.backend onnxruntime (the python backend runs on CPUs)")
        if self.tensorrt and self.device != "gpu":
            raise ValueError("model.tensorrt needs model.device gpu")
        return self

    promotions_topic: str = Field(
        "inferloop.promotions",
        description=(
            "The announced (serving and shadow) version of each model: a compacted topic every worker reads; it "
            "belongs with the model repository, so topic prefixes leave it alone."
        ),
    )


class TrainerSettings(SettingsGroup):
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
    threads: int = Field(
        1,
        ge=1,
        description=(
            "Torch threads for training. More threads than cores the trainer has to itself slow it down many-fold "
            "(measured: 90 s with 2 threads against 12 s with 1 on 2 busy cores); one costs little on an idle machine."
        ),
    )
    replay_ratio: float = Field(3.0, ge=0, description="Earlier examples replayed per new example.")
    open_label_share: float = Field(
        0.5,
        ge=0,
        lt=1,
        description=(
            "The most that labels from the open feedback topic make up of the new examples a retraining fits on "
            "(the rest: trusted labels; none without them); 0: open feedback never trains."
        ),
    )
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
    serving_versions: int = Field(
        2,
        ge=1,
        description=(
            "Verified versions Triton keeps loaded: the promoted one and those before it, so that a rollback to "
            "them is an announcement (a candidate in shadow is loaded besides)."
        ),
    )
    promotion_min_labels: int = Field(
        200,
        ge=0,
        description=(
            "Live labels the candidate in shadow needs before the promoter decides (it is promoted when at least as "
            "accurate as the serving version on the same events); 0: promoted once verified, no shadow."
        ),
    )
    shadow_max_s: float = Field(
        86400.0,
        gt=0,
        description="A candidate still short of promotion_min_labels after this long in shadow is given up (rejected).",
    )
    best_tolerance: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Gate: how far below the best version ever served a candidate may be on the trusted holdout.",
    )
    min_trusted_accuracy: float = Field(
        0.5, ge=0, le=1, description="Gate: the least trusted-holdout accuracy any candidate needs."
    )
    trusted_holdout: Path | None = Field(
        None,
        description=(
            "Gate: a labelled ImageFolder (root/<label>/*) to compare candidates with the best version ever served; "
            "unset: the dataset's fixed holdout split. Feedback never changes it."
        ),
    )
    keep_versions: int = Field(10, ge=1, description="Versions kept on disk (for rollback); older are deleted.")
    load_timeout_s: float = Field(120.0, gt=0, description="How long Triton may take to load a version.")
    seed: int = Field(0, description="Seed of training and sampling.")
    metrics_port: int = Field(9102, ge=0, le=65535, description="`inferloop trainer`'s Prometheus port (0: off).")


class Settings(BaseSettings):
    """Root of the settings tree (environment prefix ``INFERLOOP_``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,  # an error names the variable, never its value (it may be a password)
    )

    home: Path = Field(
        default_factory=_default_home,
        description="State folder: process records, logs and the persistent data of `inferloop up`.",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or one JSON object per line (for log collectors)."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
    triton: TritonSettings = Field(default_factory=TritonSettings)  # type: ignore[arg-type]
    model: ModelSettings = Field(default_factory=ModelSettings)  # type: ignore[arg-type]
    streams: StreamsSettings = Field(default_factory=StreamsSettings)  # type: ignore[arg-type]
    trainer: TrainerSettings = Field(default_factory=TrainerSettings)  # type: ignore[arg-type]
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _distinct_topics(self) -> Self:
        """Every topic is one role: trust, in particular, comes from which feedback topic a label arrived on."""
        s, f = self.streams, self.feedback
        topics = {
            "streams.images_topic": s.images_topic,
            "streams.predictions_topic": s.predictions_topic,
            "streams.dead_letter_topic": s.dead_letter_topic,
            "streams.shadow_predictions_topic": s.shadow_predictions_topic,
            "feedback.topic": f.topic,
            "feedback.trusted_topic": f.trusted_topic,
            "feedback.training_log_topic": f.training_log_topic,
            "model.promotions_topic": self.model.promotions_topic,
        }
        seen: dict[str, str] = {}
        for name, topic in topics.items():
            if topic in seen:
                raise ValueError(f"{env_var(seen[topic])} and {env_var(name)} name the same topic {topic!r}")
            seen[topic] = name
        return self

    @property
    def model_repository(self) -> Path:
        return self.triton.model_repository or self.home / "model_repository"

    SECRET_VARIABLES: ClassVar[tuple[str, ...]] = ("INFERLOOP_KAFKA__SASL_PASSWORD",)

    def secret_values(self) -> list[str]:
        """Every secret in the settings (masked in logs by :func:`inferloop.redact.redact_secrets`)."""
        password = self.kafka.sasl_password
        return [password.get_secret_value()] if password is not None else []

    @property
    def feedback_dir(self) -> Path:
        return self.trainer.feedback_dir or self.home / "labelled"

    def to_env(self) -> dict[str, str]:
        """The ``INFERLOOP_*`` variables that make a child process read exactly these settings (secrets included:
        for the environment of processes this one starts, never for output). A field that is ``None`` is left out:
        the child reads its default, unless its own environment sets it."""
        env: dict[str, str] = {}

        def walk(prefix: str, group: BaseModel) -> None:
            for name in type(group).model_fields:
                value = getattr(group, name)
                if isinstance(value, BaseModel):
                    walk(f"{prefix}{name}{ENV_NESTED_DELIMITER}", value)
                elif value is not None:
                    env[f"{ENV_PREFIX}{prefix}{name}".upper()] = _env_text(value)

        walk("", self)
        return env

    def with_topic_prefix(self, prefix: str) -> Self:
        """These settings on topics and consumer groups of their own (``<prefix>.images``, ``<prefix>-worker``,
        ...): a demo or bench run that shares the cluster with nothing else."""
        streams = self.streams.model_copy(
            update={
                "app_id": f"{prefix}-worker",
                "images_topic": f"{prefix}.images",
                "predictions_topic": f"{prefix}.predictions",
                "dead_letter_topic": f"{prefix}.dead-letters",
                "shadow_predictions_topic": f"{prefix}.shadow-predictions",
            }
        )
        feedback = self.feedback.model_copy(
            update={
                "topic": f"{prefix}.feedback",
                "trusted_topic": f"{prefix}.trusted-feedback",
                "training_log_topic": f"{prefix}.training-log",
                "app_id": f"{prefix}-joiner",
            }
        )
        return self.model_copy(update={"streams": streams, "feedback": feedback})


TreeT = TypeVar("TreeT", bound=Settings)


def _env_text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    return str(value)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment; keyword overrides win. :class:`ConfigurationError` names what is
    wrong."""
    return load_tree(Settings, **overrides)


def load_tree(tree: type[TreeT], **overrides: Any) -> TreeT:
    """Read ``tree`` (the core :class:`Settings`, or a tree that extends it) from the environment."""
    try:
        return tree(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(f"invalid settings: {settings_errors(exc)}") from None
    except ValueError as exc:  # pydantic-settings' SettingsError (a value that is not JSON): names the field only
        raise ConfigurationError(f"invalid settings: {exc}") from None


def settings_errors(exc: ValidationError) -> str:
    """What is wrong, one problem per line, each named by its environment variable and never showing a value
    (which may be a secret)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{env_var(where)}: {message}" if where else message)
    return "; ".join(lines)


def env_var(path: str) -> str:
    """The environment variable that sets a field, from its dotted path: ``kafka.port`` → ``INFERLOOP_KAFKA__PORT``."""
    return ENV_PREFIX + path.replace(".", ENV_NESTED_DELIMITER).upper()
