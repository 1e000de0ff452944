"""TLS to Triton's gRPC endpoint with the real server: mutual TLS with a CA made for the test.

Triton is started by the launcher ``inferloop up`` uses, from settings (``INFERLOOP_TRITON__TLS_SERVER_*``), and
requires client certificates; the worker and the control client (trainer, rollback) connect with the client settings.
Plaintext, a client without a certificate and a client that trusts another CA are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inferloop.triton.control import TritonControl, triton_control
from inferloop.triton.options import grpc_options
from infra.local.kafka_broker import KafkaBroker
from infra.local.process import free_ports, start, stop_pid
from infra.local.settings import LocalSettings
from infra.local.stack import triton_service
from tests.conftest import SERVER_LOGS
from tests.helpers import Certificates, inferloop, make_certificates, settings_from_env, stack_env
from tests.integration.conftest import Stream, copy_bootstrapped_repository, holdout_batch, labelled_digits, publish

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.security]


@pytest.fixture(scope="module")
def tls_triton(
    bootstrapped: dict[str, str], base_settings: LocalSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, str], Certificates]]:
    """A Triton of its own serving gRPC over mutual TLS, and the environment of clients that may connect."""
    folder = tmp_path_factory.mktemp("triton-tls")
    certificates = make_certificates(folder / "tls")
    repository = copy_bootstrapped_repository(bootstrapped, folder / "models")
    http, grpc, metrics = free_ports(3)
    env = stack_env(
        folder / "home",
        base_settings.cache_dir,
        INFERLOOP_TRITON__HTTP_PORT=str(http),
        INFERLOOP_TRITON__GRPC_PORT=str(grpc),
        INFERLOOP_TRITON__METRICS_PORT=str(metrics),
        INFERLOOP_TRITON__MODEL_REPOSITORY=str(repository),
        INFERLOOP_TRITON__TLS="true",
        INFERLOOP_TRITON__TLS_CA_FILE=str(certificates.ca),
        INFERLOOP_TRITON__TLS_CERT_FILE=str(certificates.client_cert),
        INFERLOOP_TRITON__TLS_KEY_FILE=str(certificates.client_key),
        INFERLOOP_TRITON__TLS_SERVER_CERT_FILE=str(certificates.server_cert),
        INFERLOOP_TRITON__TLS_SERVER_KEY_FILE=str(certificates.server_key),
    )
    server = triton_service(settings_from_env(env))
    assert "--grpc-use-ssl-mutual=true" in server.command()
    SERVER_LOGS["triton (TLS)"] = server.log_path
    proc = start(server)
    yield env, certificates
    stop_pid(proc.pid)


def test_the_control_client_talks_to_triton_over_mutual_tls(tls_triton: tuple[dict[str, str], Certificates]) -> None:
    """Triton serving gRPC over mutual TLS (started from the INFERLOOP_TRITON__TLS_* settings): the control client
    of the trainer checks liveness, reads the repository index and runs an inference with the client settings."""
    env, _ = tls_triton
    control = triton_control(settings_from_env(env))  # what the trainer and `inferloop rollback` use
    try:
        assert control.server_live()
        outputs, version = control.infer("digits", holdout_batch(4))
        assert [v.version for v in control.index("digits") if v.state == "READY"] == [1]
    finally:
        control.close()
    assert version == 1 and outputs.shape == (4, 10)


def test_plaintext_no_client_certificate_and_another_ca_are_refused(
    tls_triton: tuple[dict[str, str], Certificates], tmp_path: Path
) -> None:
    """Clients of the mutual-TLS Triton without TLS, without a client certificate, trusting another CA, or with a
    certificate from another CA: each is refused."""
    env, certificates = tls_triton
    t = settings_from_env(env).triton
    other = make_certificates(tmp_path / "other")
    attempts = {
        "plaintext": {},
        "no client certificate": {"ssl": True, "root_certificates": str(certificates.ca)},
        "another CA": grpc_options(t) | {"root_certificates": str(other.ca)},
        "a certificate from another CA": grpc_options(t)
        | {"private_key": str(other.client_key), "certificate_chain": str(other.client_cert)},
    }
    for what, options in attempts.items():
        control = TritonControl(t.grpc_url, timeout_s=5, options=options)
        try:
            assert not control.server_live(), f"Triton answered a client with {what}"
        finally:
            control.close()


def test_the_worker_classifies_over_mutual_tls_and_logs_no_key(
    tls_triton: tuple[dict[str, str], Certificates], kafka_broker: KafkaBroker, stream: Stream
) -> None:
    """The Faust worker classifies 40 images through Triton over mutual TLS; its log holds no line of the client's
    private key."""
    env, certificates = tls_triton
    tls = {k: v for k, v in env.items() if k.startswith("INFERLOOP_TRITON__")}
    stream.env |= tls | {"INFERLOOP_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers}
    worker = stream.start_worker()
    events = labelled_digits(40)
    publish(stream.settings, events)
    predictions = stream.wait_predicted({e for e, _, _ in events})
    truth = {e: label for e, _, label in events}
    assert sum(p.label == truth[p.event_id] for p in predictions) >= 36
    key_body = certificates.client_key.read_text().splitlines()[1]  # a line of the private key itself
    assert key_body not in worker.log_path.read_text(errors="replace")


def test_the_worker_refuses_an_inconsistent_triton_tls_configuration(
    tls_triton: tuple[dict[str, str], Certificates], base_settings: LocalSettings, tmp_path: Path
) -> None:
    """A worker given Triton TLS files with TLS off, or a client certificate without its key: it exits 1 before
    connecting, naming the variables to set."""
    _, certificates = tls_triton
    env = stack_env(tmp_path / "home", base_settings.cache_dir, INFERLOOP_TRITON__TLS_CA_FILE=str(certificates.ca))
    result = inferloop(env, "worker", timeout_s=60)
    assert result.returncode == 1
    assert "INFERLOOP_TRITON__TLS_CA_FILE set but Triton TLS is off: set INFERLOOP_TRITON__TLS=true" in result.stderr
    env = stack_env(tmp_path / "home", base_settings.cache_dir, INFERLOOP_TRITON__TLS="true",
                    INFERLOOP_TRITON__TLS_CERT_FILE=str(certificates.client_cert))  # fmt: skip
    result = inferloop(env, "worker", timeout_s=60)
    assert result.returncode == 1 and "tls_cert_file and triton.tls_key_file go together" in result.stderr
