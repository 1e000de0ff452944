"""Shared fixtures: the real Kafka broker and the real Triton server, on free ports in temporary folders.

The servers are started by :mod:`infra.local` (the same launchers ``inferloop up`` uses). A server that cannot
start makes the tests that need it fail with its log; nothing is skipped. When a test fails, the tail of every
server log the session started is attached to its report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra.local.kafka_broker import KafkaBroker, ensure_kafka_jars
from infra.local.process import LocalService, free_ports, start, stop_pid, tail
from infra.local.settings import LocalSettings, load_local_settings
from infra.local.triton_server import TritonServer, ensure_backend_dir

# Logs of every server started in this session, newest last: attached to the report of a failing test.
SERVER_LOGS: dict[str, Path] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and SERVER_LOGS:
        for label, path in SERVER_LOGS.items():
            report.sections.append((f"server log: {label} ({path})", tail(path, 60)))
    _record_reliability(item, report)
    return report


# -- the results table of docs/reliability.md ---------------------------------------------------------------------
# Every test marked `faults`, `fuzz` or `security` is a row: what was tried (its docstring), the test, its result.
# For each kind a run covers completely (`pytest -m faults`, the whole suite, ...), the rows it produces must equal
# that kind's rows in docs/reliability.md (the run fails otherwise); WRITE_RELIABILITY_TABLE=1 writes them there.

RELIABILITY_DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
TABLE_START = "<!-- results: written by the test run (WRITE_RELIABILITY_TABLE=1); do not edit by hand -->"
TABLE_END = "<!-- end of results -->"
KINDS = ("faults", "fuzz", "security")
_MARKED: dict[str, str] = {}  # nodeid -> kind, of every collected test (before -m/-k deselect any)
_RESULTS: dict[str, tuple[str, str, str, str]] = {}  # nodeid -> (kind, what was tried, test, result)


def _kind(item: pytest.Item) -> str | None:
    return next((k for k in KINDS if item.get_closest_marker(k)), None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _MARKED.update({item.nodeid: kind for item in items if (kind := _kind(item))})


def _record_reliability(item: pytest.Item, report: pytest.TestReport) -> None:
    kind = _kind(item)
    if kind is None or (report.when != "call" and report.passed):
        return
    function = getattr(item, "function", None)
    doc = " ".join((getattr(function, "__doc__", None) or "").split())
    what = doc or getattr(item, "originalname", item.name).removeprefix("test_").replace("_", " ")
    params = getattr(item, "callspec", None)
    if params is not None:
        what += f" ({params.id})"
    test = f"`{item.nodeid.split('::')[0].removeprefix('tests/')}::{item.name}`"
    status = "passed" if report.passed else "failed" if report.failed else "skipped"
    figures = dict(report.user_properties).get(RESULT_FIGURES)
    if item.nodeid not in _RESULTS or status != "passed":
        _RESULTS[item.nodeid] = (kind, what, test, f"{status} ({figures})" if figures else status)


# A test's figures for its row: `reliability_figures("2,000 cases, 1,430 deep: 72 %")` makes its result cell read
# `passed (2,000 cases, 1,430 deep: 72 %)`. They are compared with the documented table like the rest of the row, so
# they must be the same every run (counts of derandomized cases, never timings).
RESULT_FIGURES = "reliability_figures"


@pytest.fixture
def reliability_figures(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """Attach figures to this test's row of docs/reliability.md's results table (a user property of its report)."""
    return lambda text: record_property(RESULT_FIGURES, text)


TABLE_HEAD = ["| kind | what was tried, and what must hold | test | result |", "| --- | --- | --- | --- |"]


def reliability_rows(kinds: set[str]) -> list[str]:
    rows = sorted((r for r in _RESULTS.values() if r[0] in kinds), key=lambda r: (KINDS.index(r[0]), r[2]))
    return [f"| {kind} | {what} | {test} | {result} |" for kind, what, test, result in rows]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os

    tests_dir = Path(__file__).resolve().parent
    if [Path(arg).resolve() for arg in session.config.args] != [tests_dir]:
        return  # only a run that collected the whole suite knows every test of a kind (-m and -k may narrow it)
    complete = {
        kind
        for kind in set(_MARKED.values())
        if {n for n, k in _MARKED.items() if k == kind} <= {n for n, r in _RESULTS.items() if r[0] == kind}
    }
    if not complete:
        return  # no kind of reliability test ran completely
    text = RELIABILITY_DOC.read_text()
    head, _, rest = text.partition(TABLE_START)
    body, _, tail_ = rest.partition(TABLE_END)
    documented = [line for line in body.strip().splitlines()[len(TABLE_HEAD) :] if line.startswith("|")]
    kept = [line for line in documented if line.split("|")[1].strip() not in complete]
    rows = reliability_rows(complete)
    order = {kind: n for n, kind in enumerate(KINDS)}
    merged = sorted(kept + rows, key=lambda line: (order.get(line.split("|")[1].strip(), 99), line.split("|")[3]))
    table = "\n".join(TABLE_HEAD + merged)
    if os.environ.get("WRITE_RELIABILITY_TABLE") == "1":
        RELIABILITY_DOC.write_text(f"{head}{TABLE_START}\n{table}\n{TABLE_END}{tail_}")
        return
    current = body.strip()
    if current != table:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                "docs/reliability.md's results table does not match this run; "
                "rerun with WRITE_RELIABILITY_TABLE=1 and commit it",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@dataclass
class Running:
    """A started server and how to stop it."""

    service: LocalService
    pid: int

    def stop(self) -> bool:
        return stop_pid(self.pid)


@pytest.fixture(scope="session")
def base_settings() -> LocalSettings:
    """The environment's settings: where the cached runtimes (Kafka jars, Triton backends) live."""
    return load_local_settings()


@pytest.fixture(scope="session")
def kafka_libs(base_settings: LocalSettings) -> Path:
    return ensure_kafka_jars(base_settings.cache_dir, base_settings.kafka.version)


@pytest.fixture(scope="session")
def triton_backends(base_settings: LocalSettings) -> Path:
    return ensure_backend_dir(base_settings.cache_dir)


def _start_kafka(libs: Path, data_dir: Path, label: str, ports: tuple[int, int] | None = None) -> Running:
    port, controller_port = ports or tuple(free_ports(2))
    broker = KafkaBroker(
        libs_dir=libs,
        data_dir=data_dir,
        log_path=data_dir / "kafka.log",
        port=port,
        controller_port=controller_port,
        heap_mb=384,
    )
    SERVER_LOGS[label] = broker.log_path
    proc = start(broker)
    return Running(broker, proc.pid)


@pytest.fixture(scope="session")
def kafka_broker(kafka_libs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One real broker for the whole session; tests use their own topic names."""
    running = _start_kafka(kafka_libs, tmp_path_factory.mktemp("kafka"), "kafka (session)")
    assert isinstance(running.service, KafkaBroker)
    yield running.service
    running.stop()


@pytest.fixture
def kafka_factory(
    kafka_libs: Path, tmp_path: Path
) -> Iterator[Callable[[Path | None, tuple[int, int] | None], Running]]:
    """Start extra brokers (restarts, faults); everything started is stopped after the test."""
    started: list[Running] = []

    def factory(data_dir: Path | None = None, ports: tuple[int, int] | None = None) -> Running:
        folder = data_dir or tmp_path / f"kafka-{len(started)}"
        running = _start_kafka(kafka_libs, folder, f"kafka ({folder.name})", ports)
        started.append(running)
        return running

    yield factory
    for running in started:
        with contextlib.suppress(Exception):
            running.stop()


@pytest.fixture(scope="session")
def triton_server(triton_backends: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """One real Triton for the session, explicit model control, on an empty temporary repository."""
    folder = tmp_path_factory.mktemp("triton")
    http_port, grpc_port, metrics_port = free_ports(3)
    server = TritonServer(
        model_repository=folder / "models",
        backend_dir=triton_backends,
        log_path=folder / "triton.log",
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        load_models=(),
    )
    SERVER_LOGS["triton (session)"] = server.log_path
    proc = start(server)
    yield server
    stop_pid(proc.pid)


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name of this test's own."""
    return "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name)[:80]


@pytest.fixture(scope="session")
def bootstrapped(
    triton_server: TritonServer,
    kafka_broker: KafkaBroker,
    base_settings: LocalSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """`inferloop train --bootstrap` run once, as a user runs it: model 'digits' version 1 serves, announced on the
    session broker's promotions topic.

    Returns the environment of that CLI call (it points at the session's Triton, broker and repository).
    """
    from tests.helpers import inferloop, stack_env

    env = stack_env(tmp_path_factory.mktemp("home"), base_settings.cache_dir, triton_server, kafka_broker)
    result = inferloop(env, "train", "--bootstrap")
    assert result.returncode == 0, result.stderr
    return env
