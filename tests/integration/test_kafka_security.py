"""Kafka security with the real broker: SASL_SSL with SCRAM-SHA-512 users and a test CA.

The broker is started by the same launcher as always, with a SASL_SSL listener, a PEM keystore signed by a CA
made for the test (openssl), and SCRAM users added when its storage is formatted. Clients, the CLI and the
Faust worker connect with inferloop's settings; wrong or inconsistent settings fail with a clear message and
the password appears in no output or log.
"""

from __future__ import annotations

import secrets
import string
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from inferloop.errors import InferloopError
from inferloop.events import decode_feedback
from inferloop.kafka.errors import BrokerUnavailable
from inferloop.kafka.producers import ImageProducer, send_feedback
from inferloop.kafka.readers import read_predictions, read_topic
from inferloop.kafka.topics import _admin, ensure_topics
from infra.local.kafka_broker import KafkaBroker
from infra.local.process import free_ports, start, stop_pid
from infra.local.settings import LocalSettings
from infra.local.triton_server import TritonServer
from infra.local.worker import JoinerProcess, WorkerProcess
from tests.conftest import SERVER_LOGS
from tests.helpers import inferloop, make_certificates, settings_from_env, stack_env, wait_for
from tests.integration.conftest import announce
from trainer.data import digits_images, png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.security]


def random_password() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


USER = "inferloop"
PASSWORD = random_password()  # random: any 6 characters of it found in an output or a log means it leaked
ADMIN_PASSWORD = random_password()
LABELLER, LABELLER_PASSWORD = "labeller", random_password()


def assert_no_piece(text: str, secret: str, where: str, size: int = 6) -> None:
    """No ``size``-character piece of ``secret`` appears in ``text`` (case-sensitive): not whole, not in part."""
    leaked = sorted({secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size] in text})
    assert not leaked, f"pieces of a secret leaked into {where}: {len(leaked)} of them"


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
            # ACLs: a resource with ACLs admits only what they allow; the others stay open to every user
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:admin",
            "allow.everyone.if.no.acl.found": "true",
        },
        format_args=[
            "--add-scram",
            f"SCRAM-SHA-512=[name=admin,password={ADMIN_PASSWORD}]",
            "--add-scram",
            f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
            "--add-scram",
            f"SCRAM-SHA-512=[name={LABELLER},password={LABELLER_PASSWORD}]",
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


def own_topics(tag: str) -> dict[str, str]:
    """Topics and consumer groups of one test's own, on the module's shared broker."""
    return {
        "INFERLOOP_STREAMS__APP_ID": f"secure-{tag}",
        "INFERLOOP_STREAMS__IMAGES_TOPIC": f"images-{tag}",
        "INFERLOOP_STREAMS__PREDICTIONS_TOPIC": f"predictions-{tag}",
        "INFERLOOP_STREAMS__DEAD_LETTER_TOPIC": f"dead-{tag}",
        "INFERLOOP_STREAMS__SHADOW_PREDICTIONS_TOPIC": f"shadow-{tag}",
        "INFERLOOP_FEEDBACK__TOPIC": f"feedback-{tag}",
        "INFERLOOP_FEEDBACK__TRUSTED_TOPIC": f"trusted-{tag}",
        "INFERLOOP_FEEDBACK__TRAINING_LOG_TOPIC": f"log-{tag}",
        "INFERLOOP_FEEDBACK__APP_ID": f"secure-joiner-{tag}",
    }


def test_clients_cli_and_worker_work_over_sasl_ssl_and_never_show_the_password(
    secure_broker: tuple[KafkaBroker, Path],
    bootstrapped: dict[str, str],
    triton_server: TritonServer,
    base_settings: LocalSettings,
    tmp_path: Path,
) -> None:
    """Kafka over SASL_SSL (SCRAM-SHA-512, a test CA): the admin client, producers, the CLI, the Faust worker and
    joiner and the trainer connect through the settings, 21 images are predicted and a trusted label is joined;
    with every log at debug level no 6-character piece of the password shows anywhere (kafka-python's logged
    configuration shows it masked)."""
    broker, ca = secure_broker
    tag = uuid.uuid4().hex[:8]
    env = secure_env(
        broker,
        ca,
        tmp_path / "home",
        base_settings,
        INFERLOOP_TRITON__GRPC_PORT=str(triton_server.grpc_port),
        INFERLOOP_TRITON__HTTP_PORT=str(triton_server.http_port),
        **own_topics(tag),
    )
    settings = settings_from_env(env)
    assert ensure_topics(settings)  # kafka-python admin over SASL_SSL
    announce(settings, 1)  # the promotions topic over SASL_SSL: the worker follows it there too
    port, joiner_port = free_ports(2)
    # faust (aiokafka) over SASL_SSL, logging everything it can: a secret must not show even at debug level
    worker = WorkerProcess(env, port, tmp_path / "worker.log", log_level="DEBUG")
    joiner = JoinerProcess(env, joiner_port, tmp_path / "joiner.log", log_level="DEBUG")
    SERVER_LOGS["worker (SASL_SSL)"] = worker.log_path
    SERVER_LOGS["joiner (SASL_SSL)"] = joiner.log_path
    pid = start(worker).pid
    joiner_pid = start(joiner).pid
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
        labelled = inferloop(env, "-v", "feedback", "direct", "3", "--trusted")
        assert labelled.returncode == 0, labelled.stderr
        wait_for(lambda: list(read_topic(settings, f"log-{tag}", idle_timeout_s=0.5)), 90, "the joined example")
        # the trainer's loop over SASL_SSL, at debug level: one check (no retraining: 1 new label of 50)
        trained = inferloop(env, "-v", "trainer", "--every", "1s", "--max-runs", "1", timeout_s=300)
        assert trained.returncode == 0, trained.stderr
    finally:
        stop_pid(pid, timeout_s=20)
        stop_pid(joiner_pid, timeout_s=20)
    outputs = "".join(r.stdout + r.stderr for r in (result, listed, labelled, trained))
    assert_no_piece(outputs, PASSWORD, "the CLI's output")
    assert_no_piece(worker.log_path.read_text(errors="replace"), PASSWORD, "the worker's debug log")
    assert_no_piece(joiner.log_path.read_text(errors="replace"), PASSWORD, "the joiner's debug log")
    assert_no_piece(broker.log_path.read_text(errors="replace"), PASSWORD, "the broker's log")
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


def every_command() -> list[list[str]]:
    """Every command of the CLI, as words (groups' own callbacks included)."""
    from cli.main import app

    found: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        found.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return [path for path in found if path]


# what each command needs to get as far as reading its settings (a required argument, a file)
ARGUMENTS = {
    ("promote",): ["2"],
    ("produce",): ["{tmp}"],
    ("feedback",): ["e1", "3", "--trusted"],
    ("topics", "trust"): ["--writer", "User:someone"],
    ("trainer",): ["--max-runs", "1"],
}
NO_SETTINGS = {("setup",)}  # prepares runtimes from the cache folder only: reads no Kafka setting


def test_no_piece_of_the_password_shows_in_any_commands_output_with_bad_settings(
    base_settings: LocalSettings, tmp_path: Path
) -> None:
    """Every command of the CLI, at debug level, with a random 24-character SASL password in settings that do not
    validate (SASL credentials on a PLAINTEXT protocol, and an unparsable port): each exits 1 with an error that
    names the variables, and no 6-character piece of the password appears in its output."""
    commands = every_command()
    assert len(commands) >= 20 and ["topics", "trust"] in commands
    password = random_password()
    env = stack_env(
        tmp_path / "home",
        base_settings.cache_dir,
        INFERLOOP_KAFKA__SASL_USERNAME=USER,
        INFERLOOP_KAFKA__SASL_PASSWORD=password,
        INFERLOOP_TRITON__GRPC_PORT="not-a-port",
    )
    for words in commands:
        if tuple(words) in NO_SETTINGS:
            continue
        args = [a.format(tmp=tmp_path) for a in ARGUMENTS.get(tuple(words), [])]
        result = inferloop(env, "-v", *words, *args, timeout_s=120)
        output = result.stdout + result.stderr
        assert result.returncode == 1, f"inferloop {' '.join(words)}: exit {result.returncode}: {output[-2000:]}"
        assert "invalid settings" in output and "INFERLOOP_TRITON__GRPC_PORT" in output, (words, output[-2000:])
        assert "SASL credentials are set but" in output, (words, output[-2000:])
        assert_no_piece(output, password, f"`inferloop {' '.join(words)}`")


def test_debug_output_of_the_kafka_commands_shows_no_piece_of_the_password(
    secure_broker: tuple[KafkaBroker, Path], base_settings: LocalSettings, tmp_path: Path
) -> None:
    """The commands that talk to Kafka, at debug level (kafka-python logs its whole configuration there), against
    the SASL_SSL broker with the right password and with a wrong one: no 6-character piece of either password
    appears in their output, whether they succeed or fail."""
    broker, ca = secure_broker
    right = secure_env(broker, ca, tmp_path / "home", base_settings, **own_topics(uuid.uuid4().hex[:8]))
    wrong_password = random_password()
    wrong = right | {"INFERLOOP_KAFKA__SASL_PASSWORD": wrong_password}
    images, _ = digits_images()
    (tmp_path / "one.png").write_bytes(png_bytes(images[0]))
    runs = [
        ["topics", "create"],
        ["topics", "--json"],
        ["produce", str(tmp_path / "one.png"), "--json"],
        ["predictions", "--json"],
        ["feedback", "e1", "3"],
        ["dlq", "--json"],
    ]
    exits = {}
    for env, password in ((right, PASSWORD), (wrong, wrong_password)):
        for words in runs:
            result = inferloop(env, "-v", *words, timeout_s=120)
            exits[(password == PASSWORD, words[0])] = result.returncode
            assert_no_piece(result.stdout + result.stderr, password, f"`inferloop -v {' '.join(words)}`")
    assert all(code == 0 for (ok, _), code in exits.items() if ok), exits  # the right password works
    assert all(code != 0 for (ok, _), code in exits.items() if not ok), exits  # the wrong one is refused


def test_only_authorised_principals_write_the_trusted_feedback_topic(
    secure_broker: tuple[KafkaBroker, Path], base_settings: LocalSettings, tmp_path: Path
) -> None:
    """`inferloop topics trust` (as the super user) lets only the labeller write the trusted feedback topic: the
    worker's principal is refused by the broker there (and may still write the open topic), the labeller's
    trusted feedback is accepted, and the joiner's principal reads only the labeller's record back."""
    broker, ca = secure_broker
    tag = uuid.uuid4().hex[:8]
    untrusted = secure_env(broker, ca, tmp_path / "home", base_settings, **own_topics(tag))
    admin = untrusted | {"INFERLOOP_KAFKA__SASL_USERNAME": "admin", "INFERLOOP_KAFKA__SASL_PASSWORD": ADMIN_PASSWORD}
    labeller = untrusted | {
        "INFERLOOP_KAFKA__SASL_USERNAME": LABELLER,
        "INFERLOOP_KAFKA__SASL_PASSWORD": LABELLER_PASSWORD,
    }
    assert ensure_topics(settings_from_env(untrusted))
    granted = inferloop(admin, "topics", "trust", "--writer", f"User:{LABELLER}", "--reader", f"User:{USER}")
    assert granted.returncode == 0, granted.stderr
    assert f"User:{LABELLER} WRITE trusted-{tag}" in granted.stdout

    refused = inferloop(untrusted, "feedback", "forged", "3", "--trusted", timeout_s=120)
    assert refused.returncode == 1 and "authoriz" in refused.stderr.lower(), refused.stderr
    with pytest.raises(InferloopError):  # the client library too: the broker refuses, the send is not confirmed
        send_feedback(settings_from_env(untrusted), [("forged-2", "3", None)], trusted=True)
    assert inferloop(untrusted, "feedback", "open-1", "3").returncode == 0  # the open topic stays open
    accepted = inferloop(labeller, "feedback", "real", "7", "--trusted", timeout_s=120)
    assert accepted.returncode == 0, accepted.stderr

    settings = settings_from_env(untrusted)  # the joiner's principal: READ was granted
    records = list(read_topic(settings, settings.feedback.trusted_topic, idle_timeout_s=3.0))
    assert [(r.key, decode_feedback(r.value).label) for r in records] == [(b"real", "7")]

    # a prefixed ACL that also lets the worker's principal write it (a grant on every topic of the app, say):
    # `topics trust` finds it and fails, naming it, since the topic's labels could no longer be trusted
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    prefix = ResourcePattern(ResourceType.TOPIC, f"trusted-{tag[:4]}", ACLResourcePatternType.PREFIXED)
    broad = ACL(f"User:{USER}", "*", ACLOperation.WRITE, ACLPermissionType.ALLOW, prefix)
    with _admin(settings_from_env(admin)) as client:
        client.create_acls([broad])
    try:
        again = inferloop(admin, "topics", "trust", "--writer", f"User:{LABELLER}", "--reader", f"User:{USER}")
    finally:
        with _admin(settings_from_env(admin)) as client:  # the module's other tests share the broker
            client.delete_acls([broad])
    assert again.returncode == 1 and f"other principals may also write trusted-{tag}" in again.stderr, again.stderr
    assert f"User:{USER} WRITE (PREFIXED trusted-{tag[:4]})" in again.stderr
    for text in (granted.stdout + granted.stderr, refused.stdout + refused.stderr, accepted.stderr, again.stderr):
        for secret in (ADMIN_PASSWORD, PASSWORD, LABELLER_PASSWORD):
            assert_no_piece(text, secret, "the trust and feedback commands' output")
