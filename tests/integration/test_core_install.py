"""``pip install inferloop`` with no extras, in a fresh virtual environment: the light client, against the real broker.

The core install must hold none of the heavy distributions, answer ``--help``, run the light client's commands and
:mod:`inferloop.client` against a real broker, and have every heavy command name the extra it needs. The package is
built from a snapshot of the working tree (pip builds a source tree in place: a copy keeps ``build/`` and the
egg-info out of the checkout, and a concurrent edit out of the build); pip's cache is used as usual.

Everything written to the broker from this test's own process (predictions, a dead letter) uses the main virtual
environment; everything the core install does runs in its own interpreter, in a folder where the checkout is not
on ``sys.path``. Image events are compared by record key, the event id, whatever the record's format.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka import KafkaProducer

from inferloop.events import DeadLetter, Prediction, encode_dead_letter, encode_prediction
from inferloop.kafka.options import kafka_options
from inferloop.kafka.readers import read_topic
from inferloop.kafka.topics import ensure_topics
from infra.local.kafka_broker import KafkaBroker
from infra.local.settings import LocalSettings
from tests.helpers import settings_from_env, stack_env
from tests.integration.conftest import Stream
from trainer.data import digits_images, png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
# distributions the core install must not bring (names as `pip list` normalizes them)
HEAVY = {
    "torch", "faust-streaming", "aiokafka", "tritonclient", "nvidia-pytriton", "onnx", "onnxruntime", "onnxscript",
    "numpy", "pillow", "matplotlib", "scikit-learn", "prometheus-client", "python-json-logger", "pyyaml",
}  # fmt: skip
# what the core install may require directly (the list)
ALLOWED = {"kafka-python", "pydantic", "pydantic-settings", "typer", "rich", "fsspec"}
# what a snapshot of the checkout leaves out: caches, environments, and what the package does not ship
NOT_SHIPPED = (".git", ".venv", ".cache", "__pycache__", "*.egg-info", "build", "dist", ".mypy_cache", ".ruff_cache",
               ".pytest_cache", ".hypothesis", "tests", "docs", "helm", "model_repository")  # fmt: skip


@dataclass(frozen=True)
class CoreVenv:
    """A virtual environment holding the core install, and a folder outside the checkout to run it in."""

    root: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def inferloop(self) -> Path:
        return self.root / "bin" / "inferloop"

    def run(self, env: dict[str, str], *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), cwd=self.workdir, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )

    def cli(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(env, str(self.inferloop), *args)

    def script(self, env: dict[str, str], program: str, *args: str) -> dict[str, object]:
        """Run ``program`` with the core interpreter; it prints one JSON document as its last line."""
        path = self.workdir / f"script-{uuid.uuid4().hex[:8]}.py"
        path.write_text(program)
        result = self.run(env, str(self.python), str(path), *args)
        assert result.returncode == 0, result.stderr
        document: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
        return document


def _clean(env: dict[str, str], venv: Path | None = None) -> dict[str, str]:
    """``env`` without what would point an interpreter at another environment; ``venv``'s bin first on PATH."""
    cleaned = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    if venv is not None:
        cleaned["PATH"] = f"{venv / 'bin'}{os.pathsep}{cleaned.get('PATH', '')}"
    return cleaned


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> CoreVenv:
    root = tmp_path_factory.mktemp("core-install")
    source, venv, workdir = root / "source", root / "venv", root / "work"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
    workdir.mkdir()
    env = _clean(dict(os.environ))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=300)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", str(source)],
        env=env, capture_output=True, text=True, timeout=900, check=False, cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, f"pip install of the core failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return CoreVenv(venv, workdir)


@pytest.fixture
def env(core: CoreVenv, kafka_broker: KafkaBroker, base_settings: LocalSettings, tmp_path: Path) -> dict[str, str]:
    """The environment of the core install's processes: the session's broker, topics of this test's own (one
    partition each, so that what comes first is read first)."""
    variables = stack_env(
        tmp_path / "home",
        base_settings.cache_dir,
        kafka=kafka_broker,
        topic_prefix=f"core-{uuid.uuid4().hex[:8]}",
        INFERLOOP_STREAMS__PARTITIONS="1",
    )
    return _clean(variables, core.root)


def tiny_png(shade: int) -> bytes:
    """A 2x2 grey PNG written with the standard library: bytes are all a producer needs (the core has no Pillow)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([shade, shade]) for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def keys(settings: LocalSettings, topic: str) -> list[str]:
    return [record.key.decode() for record in read_topic(settings, topic) if record.key is not None]


def send(settings: LocalSettings, topic: str, records: list[tuple[str | None, bytes]]) -> None:
    """Write ``(key, value)`` records from this process (the main environment), confirmed."""
    ensure_topics(settings)
    producer = KafkaProducer(**kafka_options(settings.kafka), acks="all")
    try:
        futures = [producer.send(topic, key=k.encode() if k else None, value=v) for k, v in records]
        producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()


def a_prediction(event_id: str) -> Prediction:
    now = int(time.time() * 1000)
    return Prediction(event_id, "digits", 1, ["7", "1"], [0.9, 0.1], now - 20, now - 10, now)


def test_the_core_install_holds_nothing_heavy(core: CoreVenv) -> None:
    result = core.run(_clean(dict(os.environ)), str(core.python), "-m", "pip", "list", "--format=json")
    assert result.returncode == 0, result.stderr
    installed = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(result.stdout)}
    assert "inferloop" in installed and "kafka-python" in installed
    assert sorted(HEAVY & installed.keys()) == []
    # what the core requires directly, extras aside: the list at most (fsspec is the worker's)
    program = (
        "import importlib.metadata as m, json, re; "
        "print(json.dumps([r for r in m.requires('inferloop') or [] if 'extra ==' not in r]))"
    )
    result = core.run(_clean(dict(os.environ)), str(core.python), "-c", program)
    assert result.returncode == 0, result.stderr
    direct = {re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in json.loads(result.stdout)}
    assert direct and direct <= ALLOWED, f"the core requires {sorted(direct - ALLOWED)} beyond {sorted(ALLOWED)}"
    site_packages = next((core.root / "lib").glob("python3*/site-packages"))
    size = subprocess.run(["du", "-sh", str(site_packages)], capture_output=True, text=True, check=True).stdout
    print(f"\ncore install: {len(installed)} distributions ({', '.join(sorted(installed))}); "
          f"site-packages {size.split()[0]}")  # fmt: skip


def test_help_works_from_the_core_install(core: CoreVenv, tmp_path: Path) -> None:
    env = _clean({**os.environ, "INFERLOOP_HOME": str(tmp_path)}, core.root)
    for args in (["--help"], ["produce", "--help"], ["predictions", "--help"], ["feedback", "--help"],
                 ["dlq", "--help"], ["dlq", "replay", "--help"], ["worker", "--help"], ["--version"]):  # fmt: skip
        result = core.cli(env, *args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "--group" in core.cli(env, "predictions", "--help").stdout


def test_heavy_commands_name_the_extra_to_install(core: CoreVenv, tmp_path: Path) -> None:
    """No traceback: exit 1 and the pip command, on stderr."""
    env = _clean({**os.environ, "INFERLOOP_HOME": str(tmp_path), "COLUMNS": "300"}, core.root)
    for args, extra in ((["worker"], "worker"), (["joiner"], "worker"), (["train", "--bootstrap"], "trainer"),
                        (["models"], "trainer"), (["up"], "local"), (["status"], "local"), (["demo"], "demo"),
                        (["bench"], "worker")):  # fmt: skip
        result = core.cli(env, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert f"inferloop {args[0]} needs the '{extra}' extra" in result.stderr, result.stderr
        assert f"pip install 'inferloop[{extra}]'" in result.stderr and "Traceback" not in result.stderr
    result = core.cli({**env, "INFERLOOP_LOG_FORMAT": "json"}, "predictions")
    assert result.returncode == 1 and "pip install 'inferloop[json-logs]'" in result.stderr, result.stderr


CLIENT = """
import json, sys
from pathlib import Path

import inferloop
from inferloop.client import ImageProducer, expand_paths, load_settings, publish_files, send_feedback

folder = Path(sys.argv[1])
settings = load_settings()
published = publish_files(settings, expand_paths([str(folder / "files")]), source="core-client")
with ImageProducer(settings, source="core-client") as producer:  # flushed when the block ends
    by_bytes = producer.publish_bytes((folder / "b.png").read_bytes(), "image/png")
ids = [event_id for event_id, _ in published.sent] + [by_bytes]
sent = send_feedback(settings, [(event_id, "7", None) for event_id in ids], source="core-client")
print(json.dumps({"ids": ids, "feedback": sent, "refused": len(published.refused), "module": inferloop.__file__}))
"""

SUBSCRIBER = """
import json, sys, time

from inferloop.client import PredictionSubscriber, load_settings

group, wanted = sys.argv[1], sys.argv[2]
seen, deadline = [], time.monotonic() + 90
with PredictionSubscriber(load_settings(), group) as subscriber:
    while wanted not in seen and time.monotonic() < deadline:
        seen += [prediction.event_id for prediction in subscriber.poll(timeout_s=1.0)]
        subscriber.commit()
    print(json.dumps({"seen": seen, "skipped": dict(subscriber.skipped)}))
"""


def test_the_python_client_publishes_sends_feedback_and_subscribes(
    core: CoreVenv, env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_from_env(env)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.png").write_bytes(tiny_png(40))
    (tmp_path / "b.png").write_bytes(tiny_png(200))

    published = core.script(env, CLIENT, str(tmp_path))
    assert str(published["module"]).startswith(str(core.root)), "the client ran from the checkout, not the install"
    ids = published["ids"]
    assert isinstance(ids, list) and len(ids) == 2 and published["refused"] == 0 and published["feedback"] == 2
    assert sorted(keys(settings, settings.streams.images_topic)) == sorted(ids)
    assert sorted(keys(settings, settings.feedback.topic)) == sorted(ids)

    # a record that is not a prediction, then one that is: the subscriber skips the first and counts it
    first, second = a_prediction(str(ids[0])), a_prediction(str(ids[1]))
    topic = settings.streams.predictions_topic
    send(settings, topic, [("junk", b"not a prediction"), (first.event_id, encode_prediction(first))])
    group = f"billing-{uuid.uuid4().hex[:6]}"
    run = core.script(env, SUBSCRIBER, group, first.event_id)
    assert run["seen"] == [first.event_id] and sum(run["skipped"].values()) == 1  # type: ignore[union-attr]

    # the same group again: it resumes after what it committed (one partition: an uncommitted record comes first)
    send(settings, topic, [(second.event_id, encode_prediction(second))])
    run = core.script(env, SUBSCRIBER, group, second.event_id)
    assert run["seen"] == [second.event_id] and run["skipped"] == {}


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_light_commands_run_from_the_core_install(core: CoreVenv, env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_from_env(env)
    (tmp_path / "images").mkdir()
    for n in range(2):
        (tmp_path / "images" / f"{n}.png").write_bytes(tiny_png(60 * n))

    result = core.cli(env, "produce", str(tmp_path / "images"), "--json")
    assert result.returncode == 0, result.stderr
    ids = [str(row["event_id"]) for row in json.loads(result.stdout)]
    assert len(ids) == 2 and sorted(keys(settings, settings.streams.images_topic)) == sorted(ids)

    result = core.cli(env, "feedback", ids[0], "3")
    assert result.returncode == 0, result.stderr
    assert keys(settings, settings.feedback.topic) == [ids[0]]

    send(settings, settings.streams.predictions_topic, [(ids[0], encode_prediction(a_prediction(ids[0])))])
    result = core.cli(env, "predictions", "--json")
    assert result.returncode == 0, result.stderr
    assert [p["event_id"] for p in _json_lines(result.stdout)] == [ids[0]]
    group = f"reports-{uuid.uuid4().hex[:6]}"
    result = core.cli(env, "predictions", "--group", group, "--json")
    assert result.returncode == 0, result.stderr
    assert [p["event_id"] for p in _json_lines(result.stdout)] == [ids[0]]
    result = core.cli(env, "predictions", "--group", group, "--json")  # committed: nothing new
    assert result.returncode == 0 and result.stdout.strip() == "", (result.stdout, result.stderr)

    letter = DeadLetter(
        reason="bad_image", message="test letter", origin_topic=settings.streams.images_topic, origin_partition=0,
        origin_offset=0, event_id="replayed-event", original=tiny_png(90),
    )  # fmt: skip
    send(settings, settings.streams.dead_letter_topic, [(letter.event_id, encode_dead_letter(letter))])
    result = core.cli(env, "dlq", "--json")
    assert result.returncode == 0, result.stderr
    assert [(d["reason"], d["event_id"]) for d in _json_lines(result.stdout)] == [("bad_image", "replayed-event")]
    result = core.cli(env, "dlq", "replay")
    assert result.returncode == 0 and "replayed 1 dead letters" in result.stderr, result.stderr
    replayed = [r for r in read_topic(settings, settings.streams.images_topic) if r.key == b"replayed-event"]
    assert [r.value for r in replayed] == [letter.original]


def test_the_example_in_docs_client_md_runs_from_the_core_install(
    core: CoreVenv, stream: Stream, tmp_path: Path
) -> None:
    """docs/client.md's round trip, run as it is written by the core install's interpreter, against the real
    broker, worker and Triton: three events (bytes, a file, a URI) predicted and read in a consumer group, the
    feedback confirmed on its topic."""
    text = (REPO / "docs" / "client.md").read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "PredictionSubscriber" in example and "send_feedback" in example, "the round trip is the first example"
    images = tmp_path / "images"
    images.mkdir()
    digit = images / "digit.png"
    pixels, labels = digits_images()
    digit.write_bytes(png_bytes(pixels[7]))
    stream.env["INFERLOOP_STREAMS__IMAGE_URI_ROOTS"] = json.dumps([str(images)])
    stream.start_worker()
    path = core.workdir / "example.py"
    path.write_text(example)
    result = core.run(_clean(stream.env, core.root), str(core.python), str(path), str(digit), timeout_s=240)
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 3 and len({event_id for event_id, _, _ in lines}) == 3, result.stdout
    assert {label for _, label, _ in lines} == {str(int(labels[7]))}, "each event read as the digit it is"
    settings = stream.settings
    feedback = [r.key.decode() for r in read_topic(settings, settings.feedback.topic) if r.key]
    assert len(feedback) == 1 and feedback[0] in {event_id for event_id, _, _ in lines}
