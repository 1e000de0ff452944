"""Kafka security with the real broker: SASL_SSL with SCRAM-SHA-512 users and a test CA.

The broker is started by the same launcher as always, with a SASL_SSL listener, a PEM keystore signed by a CA
made for the test (openssl), and SCRAM users added when its storage is formatted. Clients, the CLI and the
Faust worker connect with inferloop's settings; wrong or inconsistent settings fail with a clear message and
the password appears in no output or log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferloop.kafka.errors import BrokerUnavailable
from inferloop.kafka.producers import ImageProducer
from inferloop.kafka.readers import read_predictions
from inferloop.kafka.topics import ensure_topics
from infra.local.kafka_broker import KafkaBroker
from infra.local.process import free_ports, start, stop_pid
from infra.local.settings import LocalSettings
from infra.local.triton_server import TritonServer
from infra.local.worker import WorkerProcess
from tests.conftest import SERVER_LOGS
from tests.helpers import inferloop, make_certificates, settings_from_env, stack_env, wait_for
from tests.integration.conftest import announce
from trainer.data import digits_images, png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.security]
USER = "inferloop"
PASSWORD = "pw-" + uuid.uuid4().hex  # unique: found in a log or an output means it leaked
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def secure_broker(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KafkaBroker, Path]]:
    folder = tmp_path_factory.mktemp("kafka-sasl")
    certificates = make_certificates(folder / "tls")
    ca, keystore = certificates.ca, certificates.server_keystore
    port, controller_port = free_ports(2)
    login = "org.apache.kafka.common.security.scram.ScramLoginModule required"
    jaas = f'{login} username="admin" password="{ADMIN_PASSWORD}";'
    broker = KafkaBroker(
        libs_dir=kafka_libs,
        data_dir=folder / "data",
        log_path=folder / "kafka.log",
        port=port,
        controller_port=controller_port,
        heap_mb=384,
        extra_properties={
            "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(ca),
        },
        format_args=[
            "--add-scram",
            f"SCRAM-SHA-512=[name=admin,password={ADMIN_PASSWORD}]",
            "--add-scram",
            f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
        ],
        client_options={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": USER,
            "sasl_plain_password": PASSWORD,
            "ssl_cafile": str(ca),
        },
    )
    SERVER_LOGS["kafka (SASL_SSL)"] = broker.log_path
    proc = start(broker)
    yield broker, ca
    stop_pid(proc.pid)


def secure_env(broker: KafkaBroker, ca: Path, home: Path, base: LocalSettings, **extra: str) -> dict[str, str]:
    security = {
        "INFERLOOP_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "INFERLOOP_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "INFERLOOP_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "INFERLOOP_KAFKA__SASL_USERNAME": USER,
        "INFERLOOP_KAFKA__SASL_PASSWORD": PASSWORD,
        "INFERLOOP_KAFKA__SSL_CAFILE": str(ca),
    }
    return stack_env(home, base.cache_dir, **(security | extra))


def test_clients_cli_and_worker_work_over_sasl_ssl_and_never_show_the_password(
    secure_broker: tuple[KafkaBroker, Path],
    bootstrapped: dict[str, str],
    triton_server: TritonServer,
    base_settings: LocalSettings,
    tmp_path: Path,
) -> None:
    """Kafka over SASL_SSL (SCRAM-SHA-512, a test CA): the admin client, producers, the CLI and the Faust worker
    connect through the settings and 21 images are predicted; with every log at debug level the password shows
    nowhere (kafka-python's logged configuration shows it masked)."""
    broker, ca = secure_broker
    tag = uuid.uuid4().hex[:8]
    env = secure_env(
        broker,
        ca,
        tmp_path / "home",
        base_settings,
        INFERLOOP_TRITON__GRPC_PORT=str(triton_server.grpc_port),
        INFERLOOP_TRITON__HTTP_PORT=str(triton_server.http_port),
        INFERLOOP_STREAMS__APP_ID=f"secure-{tag}",
        INFERLOOP_STREAMS__IMAGES_TOPIC=f"images-{tag}",
        INFERLOOP_STREAMS__PREDICTIONS_TOPIC=f"predictions-{tag}",
        INFERLOOP_STREAMS__DEAD_LETTER_TOPIC=f"dead-{tag}",
    )
    settings = settings_from_env(env)
    assert ensure_topics(settings)  # kafka-python admin over SASL_SSL
    announce(settings, 1)  # the promotions topic over SASL_SSL: the worker follows it there too
    (port,) = free_ports(1)
    # faust (aiokafka) over SASL_SSL, logging everything it can: a secret must not show even at debug level
    worker = WorkerProcess(env, port, tmp_path / "worker.log", log_level="DEBUG")
    SERVER_LOGS["worker (SASL_SSL)"] = worker.log_path
    pid = start(worker).pid
    try:
        images, _ = digits_images()
        folder = tmp_path / "pictures"
        folder.mkdir()
        for i in range(20):
            (folder / f"{i}.png").write_bytes(png_bytes(images[i]))
        result = inferloop(env, "-v", "produce", str(folder), "--json")  # the CLI over SASL_SSL, debug logs on
        assert result.returncode == 0, result.stderr
        with ImageProducer(settings, source="test") as producer:
            producer.publish_bytes(png_bytes(images[20]), "image/png", event_id="direct")
        wait_for(lambda: len(list(read_predictions(settings, idle_timeout_s=0.5))) >= 21, 90, "21 predictions")
        listed = inferloop(env, "-v", "predictions", "--json")
        assert listed.returncode == 0 and listed.stdout.count('"event_id"') >= 21, listed.stderr
    finally:
        stop_pid(pid, timeout_s=20)
    outputs = result.stdout + result.stderr + listed.stdout + listed.stderr
    for text in (outputs, worker.log_path.read_text(errors="replace"), broker.log_path.read_text(errors="replace")):
        assert PASSWORD not in text, "the SASL password leaked into an output or a log"
    # kafka-python logs its configuration at debug level, password included: there it is, masked
    assert "'sasl_plain_password': '**********'" in outputs


def test_wrong_credentials_and_plaintext_are_refused_clearly(
    secure_broker: tuple[KafkaBroker, Path], base_settings: LocalSettings, tmp_path: Path
) -> None:
    """A wrong SASL password and a plaintext client against the SASL_SSL broker: refused (BrokerUnavailable, CLI
    exit status non-zero), and the wrong password is not echoed."""
    broker, ca = secure_broker
    bad = "not-" + "it"
    wrong = secure_env(broker, ca, tmp_path / "home", base_settings, INFERLOOP_KAFKA__SASL_PASSWORD=bad)
    with pytest.raises(BrokerUnavailable):
        ensure_topics(settings_from_env(wrong))
    result = inferloop(wrong, "dlq", "--json", timeout_s=120)
    assert result.returncode != 0
    assert bad not in result.stdout + result.stderr
    plaintext = stack_env(tmp_path / "home", base_settings.cache_dir,
                          INFERLOOP_KAFKA__BOOTSTRAP_SERVERS=broker.bootstrap_servers)  # fmt: skip
    with pytest.raises(BrokerUnavailable):
        ensure_topics(settings_from_env(plaintext))


def test_the_worker_refuses_an_inconsistent_security_configuration(
    base_settings: LocalSettings, tmp_path: Path
) -> None:
    """A worker started with SASL_SSL but no password, or a password without SASL: it exits 1 with a message that
    names the variables to set, and does not print the password."""
    env = stack_env(
        tmp_path / "home",
        base_settings.cache_dir,
        INFERLOOP_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
        INFERLOOP_KAFKA__SASL_USERNAME=USER,  # and no password
    )
    result = inferloop(env, "worker", timeout_s=60)
    assert result.returncode == 1
    assert "needs INFERLOOP_KAFKA__SASL_USERNAME and INFERLOOP_KAFKA__SASL_PASSWORD" in result.stderr
    env = stack_env(tmp_path / "home", base_settings.cache_dir, INFERLOOP_KAFKA__SASL_PASSWORD=PASSWORD)
    result = inferloop(env, "worker", timeout_s=60)
    assert result.returncode == 1 and "SASL credentials are set but" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
