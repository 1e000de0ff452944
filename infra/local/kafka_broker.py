"""The real Apache Kafka broker, single node in KRaft combined mode, run from Maven Central jars.

The jars (``org.apache.kafka:kafka_2.13`` with its runtime dependencies and the log4j SLF4J binding, so that
the broker's own logs appear) are resolved once by Maven into the cache folder. The broker runs ``kafka.Kafka``
with a generated ``server.properties``; its storage is formatted on first start only, so a data folder that
is kept (``inferloop up``) keeps its topics across restarts.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.local.errors import RuntimeMissing
from infra.local.process import LocalService, Port, port_accepts

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
COMPLETE_MARKER = ".complete"


def kafka_libs_dir(cache_dir: Path, version: str) -> Path:
    return cache_dir / f"kafka-{version}" / "libs"


def ensure_kafka_jars(cache_dir: Path, version: str) -> Path:
    """The folder of the broker's jars, resolved with Maven on first use (idempotent)."""
    libs = kafka_libs_dir(cache_dir, version)
    if (libs / COMPLETE_MARKER).exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeMissing("Maven (mvn)", "install it (apt-get install maven) so the Kafka jars can be resolved")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs.", dir=libs.parent))
    log.info("resolving Apache Kafka %s from Maven Central into %s", version, libs)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-Dkafka.version={version}", "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeMissing(
            f"Apache Kafka {version} jars",
            f"Maven could not resolve them (exit {result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}",
        )
    (staging / COMPLETE_MARKER).write_text(version)
    if libs.exists():
        shutil.rmtree(libs)
    staging.rename(libs)
    return libs


def java_binary() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeMissing("Java 17+", "install a JDK (apt-get install openjdk-17-jre-headless)")
    return java


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (what ``random-uuid`` prints)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class KafkaBroker(LocalService):
    """A single-node KRaft broker (broker + controller) on ``host:port`` with data in ``data_dir``."""

    name = "kafka"

    def __init__(
        self,
        *,
        libs_dir: Path,
        data_dir: Path,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int = 9092,
        controller_port: int = 9093,
        heap_mb: int = 512,
        start_timeout_s: float = 90.0,
        port_env_vars: Mapping[str, str] | None = None,
        extra_properties: Mapping[str, str] | None = None,
        format_args: Sequence[str] = (),
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``extra_properties`` override the generated ``server.properties`` (other listeners, TLS, SASL);
        ``format_args`` go to the storage format (``--add-scram ...`` users); ``client_options`` are how the
        readiness probe connects (kafka-python options: security protocol, SASL, CA file)."""
        super().__init__(log_path)
        self.libs_dir, self.data_dir = libs_dir, data_dir
        self.host, self.port, self.controller_port = host, port, controller_port
        self.heap_mb = heap_mb
        self._start_timeout_s = start_timeout_s
        self._port_env_vars = dict(port_env_vars or {})
        self.extra_properties = dict(extra_properties or {})
        self.format_args = list(format_args)
        self.client_options = dict(client_options or {})

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "log"

    @property
    def start_timeout_s(self) -> float:
        return self._start_timeout_s

    @property
    def marker(self) -> str:
        return str(self.config_path)

    def ports(self) -> Sequence[Port]:
        return [
            Port("client", self.host, self.port, self._port_env_vars.get("port")),
            Port("controller", self.host, self.controller_port, self._port_env_vars.get("controller_port")),
        ]

    def properties(self) -> dict[str, str]:
        listeners = f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            # A single node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
        }
        props.update(self.extra_properties)
        return props

    def write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{key}={value}\n" for key, value in self.properties().items())
        self.config_path.write_text("# written by inferloop; regenerated at every start\n" + text)

    def _java(self, main_class: str, *args: str) -> list[str]:
        return [
            java_binary(),
            f"-Xmx{self.heap_mb}m",
            "-Xms64m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            f"{self.libs_dir}/*",
            main_class,
            *args,
        ]

    def prepare(self) -> None:
        """Write the config and format the storage if this data folder has never been formatted."""
        self.write_config()
        if (self.log_dirs / "meta.properties").exists():
            return
        cmd = self._java(
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={new_cluster_id()}",  # one form: an id may start with "-" (base64url), read as an option
            "-c",
            str(self.config_path),
            *self.format_args,
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=120)

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_path))

    def is_ready(self) -> bool:
        return kafka_ready(self.bootstrap_servers, **self.client_options)


def kafka_ready(bootstrap_servers: str, timeout_s: float = 5.0, **client_options: Any) -> bool:
    """Ready when a client fetched the cluster's metadata (a cheap TCP check first, so a down broker is quick)."""
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    return port_accepts(host, int(port)) and fetch_metadata(bootstrap_servers, timeout_s=timeout_s, **client_options)


def fetch_metadata(bootstrap_servers: str, timeout_s: float = 5.0, **client_options: Any) -> bool:
    """Whether a Kafka client can fetch cluster metadata from ``bootstrap_servers``."""
    from kafka import KafkaAdminClient  # the client is imported lazily: most callers never probe

    options = {k: v for k, v in client_options.items() if k != "bootstrap_servers"}
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=int(timeout_s * 1000),
            client_id="inferloop-probe",
            **options,
        )
    except Exception:  # any failure means "not ready yet"
        return False
    try:
        cluster = admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            admin.close()
