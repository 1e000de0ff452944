"""infra/compose.yaml, the root Dockerfile and .dockerignore, checked without Docker: the file against the Compose
specification, then what would break a real `docker compose up` unnoticed: Kafka's two listeners (host clients
through localhost on the published port, containers through the service name), health checks, restart policies and
start order, non-root containers that can write the model repository, settings names, the build context."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.local.settings import LocalSettings

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "infra" / "compose.yaml"
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
# the Dockerfile's RUN, ENV, ... instructions with their continuation lines joined
INSTRUCTIONS = [line.strip() for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines() if line.strip()]
# what the build context must leave out: the virtualenv, caches, packaging and test leftovers, faust's folders
LEFT_OUT = (
    ".venv/bin/python",
    ".git/HEAD",
    ".mypy_cache/3.11/x.json",
    ".ruff_cache/x",
    ".pytest_cache/v",
    ".hypothesis/examples/x",
    ".import_linter_cache/x",
    "inferloop.egg-info/PKG-INFO",
    "inferloop-worker-data/v1/tables",
    "t-0396016c-joiner-data/x",
    "model_repository/digits/1/model.onnx",
    "inferloop/__pycache__/settings.cpython-311.pyc",
    "tests/unit/test_x.py",
)
METRICS_PORT_SETTING = {
    "worker": "INFERLOOP_STREAMS__METRICS_PORT",
    "joiner": "INFERLOOP_FEEDBACK__METRICS_PORT",
    "trainer": "INFERLOOP_TRAINER__METRICS_PORT",
}


def one_shot_services() -> set[str]:
    """Jobs that run to completion (others wait for them with ``service_completed_successfully``)."""
    return {
        target
        for service in SERVICES.values()
        for target, dependency in dict_depends_on(service).items()
        if dependency.get("condition") == "service_completed_successfully"
    }


def long_running_services() -> set[str]:
    return set(SERVICES) - one_shot_services()


def inferloop_services() -> set[str]:
    """The services that run the inferloop image (built from the root Dockerfile)."""
    return {
        name
        for name, service in SERVICES.items()
        if isinstance(service.get("build"), dict)
        and (COMPOSE_FILE.parent / service["build"]["context"]).resolve() == REPO
        and service["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    }


def dict_depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    depends = service.get("depends_on", {})
    return {name: {} for name in depends} if isinstance(depends, list) else depends


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {NAME: (host, port)}."""
    parsed = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        parsed[name] = (host, int(port))
    return parsed


def published_ports(service: dict[str, Any]) -> dict[int, int]:
    """{container port: host port} of a service's ``ports`` (short or long syntax)."""
    mapping = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            mapping[int(entry["target"])] = int(entry["published"])
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) >= 2, f"{entry}: publish with an explicit host port"
        mapping[int(parts[-1])] = int(parts[-2])
    return mapping


def healthcheck_command(service: str) -> str:
    check = SERVICES[service].get("healthcheck")
    assert check and not check.get("disable"), f"{service} has no healthcheck"
    test = check["test"]
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), f"{service}: healthcheck test {test!r}"
    return " ".join(test[1:])


def dockerfile_user() -> str:
    users = [line.split()[1] for line in INSTRUCTIONS if line.startswith("USER ")]
    assert users, "the Dockerfile never switches to a non-root user"
    return users[-1]


def test_compose_file_follows_the_compose_specification() -> None:
    # the one installed beside this interpreter (the project's virtualenv), else one on PATH
    beside = Path(sys.executable).parent / "check-jsonschema"
    checker = str(beside) if beside.exists() else shutil.which("check-jsonschema")
    assert checker, "check-jsonschema is missing: pip install -e '.[dev]'"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_kafka_advertises_localhost_to_the_host_and_the_service_name_to_containers() -> None:
    kafka = SERVICES["kafka"]
    env = {k: str(v) for k, v in kafka["environment"].items()}
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controllers = env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")
    assert set(bound) == set(protocols), "every listener needs a security protocol, and only listeners have one"
    assert set(advertised) == set(bound) - set(controllers), "every client listener is advertised, controllers not"
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    # the controller quorum is this node, on its controller listener, never published to the host
    (controller,) = controllers
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == str(env["KAFKA_NODE_ID"]) and voter == f"kafka:{bound[controller][1]}"
    assert bound[controller][1] not in published_ports(kafka)

    external = [name for name, (host, _) in advertised.items() if host == "localhost"]
    internal = [name for name, (host, _) in advertised.items() if host == "kafka"]
    assert len(external) == 1 and len(internal) == 1, f"one listener for localhost, one for kafka: {advertised}"
    # host clients: localhost on the host port that Docker forwards to the external listener
    (ext,) = external
    assert published_ports(kafka).get(bound[ext][1]) == advertised[ext][1], (
        f"{ext} is advertised as localhost:{advertised[ext][1]}, which must be the host port published for "
        f"the listener's container port {bound[ext][1]}"
    )
    # containers: the service name; brokers talk to each other there too
    (intl,) = internal
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == intl, "brokers reach each other on the internal listener"
    assert advertised[intl][1] == bound[intl][1]
    internal_address = f"kafka:{advertised[intl][1]}"
    for name in inferloop_services():
        servers = SERVICES[name]["environment"]["INFERLOOP_KAFKA__BOOTSTRAP_SERVERS"]
        assert servers == internal_address, f"{name} must use the internal listener {internal_address}"
    assert internal_address in healthcheck_command("kafka"), "the health check tries the listener the apps use"
    assert "kafka-broker-api-versions.sh" in healthcheck_command("kafka")


def test_long_running_services_are_health_checked_and_restarted_and_start_in_order() -> None:
    one_shots = one_shot_services()
    assert {"topics", "bootstrap"} <= one_shots
    assert {"kafka", "triton", "worker", "joiner", "trainer", "prometheus", "grafana"} <= long_running_services()
    for name in long_running_services():
        healthcheck_command(name)
        assert SERVICES[name].get("restart") == "unless-stopped", f"{name}: restart: unless-stopped"
    for name in one_shots:
        assert "healthcheck" not in SERVICES[name]
        assert SERVICES[name].get("restart") in ("no", "on-failure"), f"{name} is a job: never restarted when done"
    # every dependency waits for the right state: a server healthy, a job completed
    for name, service in SERVICES.items():
        for target, dependency in dict_depends_on(service).items():
            assert target in SERVICES, (name, target)
            wanted = "service_completed_successfully" if target in one_shots else "service_healthy"
            assert dependency.get("condition") == wanted, f"{name} -> {target}: condition {wanted}"
    for name in inferloop_services():
        needs = set(dict_depends_on(SERVICES[name]))
        assert "kafka" in needs, f"{name} starts before the broker"
        if name != "topics":
            assert "topics" in needs or "bootstrap" in needs, f"{name} starts before the topics exist"
    for name in ("bootstrap", "worker", "joiner", "trainer"):
        assert "triton" in dict_depends_on(SERVICES[name]), f"{name} starts before Triton"
    assert "bootstrap" in dict_depends_on(SERVICES["trainer"])
    assert "prometheus" in dict_depends_on(SERVICES["grafana"])


def test_healthchecks_probe_each_service_where_it_answers() -> None:
    for name, setting in METRICS_PORT_SETTING.items():
        port = SERVICES[name]["environment"][setting]
        command = healthcheck_command(name)
        assert command.startswith("python -c") and "urllib.request" in command, name
        assert f"127.0.0.1:{port}/metrics" in command, f"{name}'s health check must read its {setting}"
    triton_http = SERVICES["worker"]["environment"]["INFERLOOP_TRITON__HTTP_PORT"]
    assert f"127.0.0.1:{triton_http}/v2/health/ready" in healthcheck_command("triton")
    assert "127.0.0.1:9090/-/ready" in healthcheck_command("prometheus")
    assert "127.0.0.1:3000/api/health" in healthcheck_command("grafana")


def test_no_inferloop_container_runs_as_root_and_the_model_volume_is_theirs() -> None:
    user = dockerfile_user()
    uid = user.split(":")[0]
    assert uid not in ("0", "root"), "the Dockerfile's USER is root"
    assert re.search(rf"^RUN .*useradd .*--uid {uid}\b", DOCKERFILE, re.M), "the Dockerfile creates its user"
    services = inferloop_services()
    assert {"topics", "bootstrap", "worker", "joiner", "trainer"} <= services
    for name in services:
        assert str(SERVICES[name].get("user", "")).split(":")[0] == uid, f"{name} must run as {user}, not root"
    # whoever mounts the model repository runs as its owner; only the trainer and the bootstrap write it
    repository = SERVICES["trainer"]["environment"]["INFERLOOP_TRITON__MODEL_REPOSITORY"]
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, target, *mode = str(volume).split(":")
            if source != "models":
                continue
            assert target == repository, (name, volume)
            assert str(service.get("user", "")).split(":")[0] == uid, f"{name} mounts the models volume"
            assert (mode == ["ro"]) == (name not in ("trainer", "bootstrap")), f"{name}: {volume}"
    # a fresh named volume takes the owner of the image's folder it is mounted on: the image creates it as the user
    owned = [
        line for line in INSTRUCTIONS if line.startswith("RUN ") and re.search(rf"\s{re.escape(repository)}\b", line)
    ]
    assert any(re.search(rf"(-o {uid}\b|chown .*\b{uid}\b)", line) for line in owned), (
        f"the Dockerfile must create {repository} owned by {uid}"
    )


def test_triton_is_the_stock_image_serving_onnx_natively() -> None:
    triton = SERVICES["triton"]
    assert triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3" and "build" not in triton
    command = triton["command"]
    assert command[0] == "tritonserver"
    repository = SERVICES["trainer"]["environment"]["INFERLOOP_TRITON__MODEL_REPOSITORY"]
    assert f"--model-repository={repository}" in command
    assert {"--model-control-mode=explicit", "--load-model=*", "--strict-readiness=false"} <= set(command)
    for name in inferloop_services():
        assert SERVICES[name]["environment"]["INFERLOOP_MODEL__BACKEND"] == "onnxruntime", name


def test_every_inferloop_variable_is_a_setting_with_a_valid_value(monkeypatch: pytest.MonkeyPatch) -> None:
    dockerfile_env: dict[str, str] = {}
    for line in INSTRUCTIONS:
        if line.startswith("ENV "):
            dockerfile_env.update(item.split("=", 1) for item in shlex.split(line[4:]))
    # faust's folder is under INFERLOOP_HOME (streams.faust_app): both must be writable by the user
    assert dockerfile_env["INFERLOOP_HOME"].startswith("/tmp/")
    environments = {"Dockerfile": dockerfile_env} | {
        name: {**dockerfile_env, **service.get("environment", {})} for name, service in SERVICES.items()
    }
    for where, env in environments.items():
        for key in [k for k in os.environ if k.startswith("INFERLOOP_")]:
            monkeypatch.delenv(key)
        for key in [k for k in env if k.startswith("INFERLOOP_")]:
            assert is_setting(key), f"{where}: {key} is no field of the settings object"
            monkeypatch.setenv(key, str(env[key]))
        LocalSettings()  # the values are valid too (a bad one raises, naming its variable)


def is_setting(name: str) -> bool:
    """Whether ``INFERLOOP_A__B`` names a field (not a group) of the settings object."""
    model: Any = LocalSettings
    for part in name.removeprefix("INFERLOOP_").lower().split("__"):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        model = fields[part].annotation
    return not hasattr(model, "model_fields")


def test_the_build_context_leaves_out_the_virtualenv_and_keeps_what_the_dockerfile_copies() -> None:
    patterns = dockerignore_patterns()
    for path in LEFT_OUT:
        assert ignored(path, patterns), f".dockerignore must leave out {path}"
    sources = []
    for line in INSTRUCTIONS:
        if line.startswith(("COPY ", "ADD ")):
            args = [a for a in line.split()[1:] if not a.startswith("--")]
            sources += args[:-1]
    assert "inferloop" in sources and "pyproject.toml" in sources
    for source in sources:
        path = REPO / source
        assert path.exists(), f"the Dockerfile copies {source}, which does not exist"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            assert not ignored(relative, patterns), f".dockerignore leaves out {relative}, which the image needs"


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (negated, regex) pairs, with Docker's rules: paths from the context root, ``*`` within one
    path segment, ``**`` across any number of them."""
    patterns = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip().strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((negated, re.compile(regex)))
    return patterns


def ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``path`` out of the context: the last pattern matching it or a folder above it wins."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negated, regex in patterns:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict
