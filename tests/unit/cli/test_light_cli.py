"""The light install: `inferloop --help`, the light client's commands and :mod:`inferloop.client` load nothing
heavy, each heavy command names the extra it needs, and those extras agree with pyproject.toml.

(tests/integration/test_core_install.py installs the core alone in a fresh virtual environment and runs the
commands against a real broker; these checks run in this environment, where everything is installed.)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import extras
from cli.main import app
from inferloop.errors import MissingExtra

REPO = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
HEAVY = {
    "torch", "faust", "mode", "aiokafka", "tritonclient", "pytriton", "onnx", "onnxruntime", "onnxscript", "numpy",
    "PIL", "matplotlib", "sklearn", "prometheus_client", "fsspec", "yaml", "pythonjsonlogger",
}  # fmt: skip
# inferloop's own modules that would mean a heavy import chain had started
HEAVY_OWN = {"streams", "trainer.jobs", "infra.local.stack", "cli.demo", "cli.bench", "inferloop.json_logs"}


def test_help_and_the_client_load_nothing_heavy() -> None:
    """In a fresh interpreter (this one has loaded everything): every command's --help, and the client module."""
    program = """
import json, sys
from typer.testing import CliRunner
from cli.main import app
import inferloop.client
failed = []
for args in (["--help"], ["produce", "--help"], ["predictions", "--help"], ["feedback", "--help"], ["dlq", "--help"],
             ["dlq", "replay", "--help"], ["topics", "--help"], ["worker", "--help"], ["joiner", "--help"],
             ["train", "--help"], ["models", "--help"], ["up", "--help"], ["demo", "--help"], ["bench", "--help"]):
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        failed.append([args, result.output])
print(json.dumps({"failed": failed, "modules": sorted(sys.modules)}))
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout.splitlines()[-1])
    assert report["failed"] == []
    loaded = set(report["modules"])
    assert {m.split(".")[0] for m in loaded} & HEAVY == set()
    assert {m for m in loaded if any(m == own or m.startswith(own + ".") for own in HEAVY_OWN)} == set()


def test_the_client_exports_exactly_its_public_names() -> None:
    import inferloop.client as client

    assert sorted(client.__all__) == client.__all__, "keep __all__ sorted"
    for name in client.__all__:
        assert getattr(client, name) is not None, name
    public = {name for name in vars(client) if not name.startswith("_")}
    assert public == set(client.__all__), "a public name of the module is not in __all__ (or the reverse)"


def _requirement(text: str) -> tuple[str, list[str]]:
    """A requirement's normalized distribution name and its extras."""
    match = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^\]]*)\])?", text)
    assert match, text
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    return name, [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]


def _top_level_modules() -> dict[str, set[str]]:
    """Each installed distribution's normalized name -> its top-level modules."""
    found: dict[str, set[str]] = {}
    for module, distributions in packages_distributions().items():
        for distribution in distributions:
            found.setdefault(re.sub(r"[-_.]+", "-", distribution).lower(), set()).add(module)
    return found


@pytest.mark.parametrize("extra", sorted(extras.MODULES))
def test_each_extra_checks_the_modules_of_the_distributions_pyproject_lists(extra: str) -> None:
    """cli.extras.MODULES names one import per distribution of the extra, and INCLUDES its self-references."""
    requirements = [_requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]]
    includes = [e for name, extra_names in requirements if name == "inferloop" for e in extra_names]
    assert tuple(includes) == extras.INCLUDES.get(extra, ())
    top_level = _top_level_modules()
    listed = set(extras.MODULES[extra])
    distributions = [name for name, _ in requirements if name != "inferloop"]
    assert len(listed) == len(distributions) == len(extras.MODULES[extra])
    for distribution in distributions:
        assert distribution in top_level, f"{distribution} is not installed here: pip install -e '.[all,dev]'"
        assert len(listed & top_level[distribution]) == 1, f"{extra}: no module listed for {distribution}"


def test_all_is_every_extra_but_the_development_ones_and_the_core_is_light() -> None:
    optional = PYPROJECT["project"]["optional-dependencies"]
    (everything,) = optional["all"]
    _, included = _requirement(everything)
    assert set(included) | {"json-logs"} == set(optional) - {"all", "dev", "docker"}
    assert set(extras.MODULES) == set(optional) - {"all", "dev", "docker"}
    core = {_requirement(r)[0] for r in PYPROJECT["project"]["dependencies"]}
    assert core <= {"kafka-python", "pydantic", "pydantic-settings", "typer", "rich", "fsspec"}


@pytest.mark.parametrize(
    ("args", "extra", "module"),
    [
        (["worker"], "worker", "faust"),
        (["joiner"], "worker", "aiokafka"),
        (["bench"], "worker", "tritonclient"),
        (["train", "--bootstrap"], "trainer", "torch"),
        (["trainer"], "trainer", "onnxruntime"),
        (["models"], "trainer", "sklearn"),
        (["rollback"], "trainer", "torch"),
        (["promote", "2"], "trainer", "torch"),
        (["setup"], "local", "pytriton"),
        (["up"], "local", "pytriton"),
        (["status"], "local", "yaml"),
        (["down"], "local", "yaml"),
        (["demo"], "demo", "matplotlib"),
        (["demo"], "demo", "faust"),
    ],
)
def test_a_heavy_command_without_its_extra_says_which_to_install(
    monkeypatch: pytest.MonkeyPatch, args: list[str], extra: str, module: str
) -> None:
    """As on a core install (the module looked up as missing): exit 1 and the pip command, no traceback."""
    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda name: name != module and real(name))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.output, repr(result.exception)
    output = " ".join(result.output.split())
    command = args[0]
    assert f"inferloop {command} needs the '{extra}' extra ({module} not installed)" in output
    assert f"pip install 'inferloop[{extra}]'" in output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_json_logs_without_python_json_logger_name_their_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """INFERLOOP_LOG_FORMAT=json on an install without the json-logs extra: one line of text says what to install."""
    from inferloop.logs import json_formatter, logging_config

    monkeypatch.setitem(sys.modules, "pythonjsonlogger", None)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "pythonjsonlogger.json", None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "inferloop.json_logs", raising=False)
    with pytest.raises(MissingExtra, match=re.escape("pip install 'inferloop[json-logs]'")):
        json_formatter()
    with pytest.raises(MissingExtra):
        logging_config("INFO", "json")
    assert logging_config("INFO", "text") is None  # text needs nothing more

    monkeypatch.setenv("INFERLOOP_LOG_FORMAT", "json")
    result = CliRunner().invoke(app, ["predictions", "--limit", "1"])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "INFERLOOP_LOG_FORMAT=json needs the 'json-logs' extra" in output and "Traceback" not in output
