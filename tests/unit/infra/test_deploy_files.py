"""The files for Docker users (Dockerfiles, infra/compose.yaml) and Grafana's provisioning cannot run here; these
checks keep their names and ports consistent with the settings object, the Prometheus configs and the chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from infra.local.prometheus_server import render_config
from infra.local.settings import LocalSettings

REPO = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((REPO / "infra" / "compose.yaml").read_text())
VALUES = yaml.safe_load((REPO / "helm" / "inferloop" / "values.yaml").read_text())


def setting_exists(name: str) -> bool:
    model: object = LocalSettings
    for part in name.removeprefix("INFERLOOP_").lower().split("__"):
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        model = fields[part].annotation
    return True


def test_compose_environment_names_are_settings_and_ports_agree() -> None:
    services = COMPOSE["services"]
    for name in ("worker", "joiner", "trainer"):
        env = services[name]["environment"]
        unknown = [k for k in env if k.startswith("INFERLOOP_") and not setting_exists(k)]
        assert unknown == [], (name, unknown)
    env = services["worker"]["environment"]
    triton_args = services["triton"]["command"]
    for kind in ("http", "grpc", "metrics"):
        assert f"--{kind}-port={env[f'INFERLOOP_TRITON__{kind.upper()}_PORT']}" in triton_args
        assert int(env[f"INFERLOOP_TRITON__{kind.upper()}_PORT"]) == VALUES["triton"]["ports"][kind]
    assert "--model-control-mode=explicit" in triton_args
    # Kafka's listeners, health checks, users and the build context: tests/unit/infra/test_compose.py
    # the metrics ports the apps listen on are the ones Prometheus scrapes, and the chart's defaults
    scrape = yaml.safe_load((REPO / "infra" / "prometheus" / "prometheus-compose.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"][0] for job in scrape["scrape_configs"]}
    assert targets["inferloop-worker"] == f"worker:{env['INFERLOOP_STREAMS__METRICS_PORT']}"
    assert targets["inferloop-joiner"] == f"joiner:{env['INFERLOOP_FEEDBACK__METRICS_PORT']}"
    assert targets["inferloop-trainer"] == f"trainer:{env['INFERLOOP_TRAINER__METRICS_PORT']}"
    assert targets["triton"] == f"triton:{env['INFERLOOP_TRITON__METRICS_PORT']}"
    assert int(env["INFERLOOP_STREAMS__METRICS_PORT"]) == VALUES["worker"]["metricsPort"]
    assert int(env["INFERLOOP_FEEDBACK__METRICS_PORT"]) == VALUES["joiner"]["metricsPort"]
    defaults = LocalSettings()
    assert int(env["INFERLOOP_STREAMS__METRICS_PORT"]) == defaults.streams.metrics_port
    assert int(env["INFERLOOP_FEEDBACK__METRICS_PORT"]) == defaults.feedback.metrics_port
    assert int(env["INFERLOOP_TRAINER__METRICS_PORT"]) == defaults.trainer.metrics_port
    # every file compose mounts exists
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / "infra" / source).resolve().exists(), source


def test_dockerfiles_run_as_non_root_and_expose_the_metrics_ports() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert VALUES["podSecurityContext"]["runAsUser"] == 10001
    exposed = {int(p) for line in dockerfile.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
    defaults = LocalSettings()
    assert {defaults.streams.metrics_port, defaults.feedback.metrics_port, defaults.trainer.metrics_port} <= exposed
    triton = (REPO / "infra" / "docker" / "triton.Dockerfile").read_text()
    assert "onnxruntime" in triton and "nvcr.io/nvidia/tritonserver:24.10-py3" in triton
    assert VALUES["triton"]["image"]["tag"].startswith("24.10")


def test_grafana_provisioning_gives_the_dashboard_its_datasource() -> None:
    datasource = yaml.safe_load(
        (REPO / "infra" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    dashboard = REPO / "infra" / "grafana" / "dashboards" / "inferloop.json"
    assert dashboard.read_bytes() == (REPO / "helm" / "inferloop" / "files" / "inferloop-dashboard.json").read_bytes()
    board = json.loads(dashboard.read_text())
    # every panel queries the Prometheus the `datasource` variable picks: the provisioned one here, any in a cluster
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == datasource["type"] == "prometheus"
    chosen = {"type": "prometheus", "uid": "${datasource}"}
    assert all(p["datasource"] == chosen for p in board["panels"])
    assert all(t["datasource"] == chosen for p in board["panels"] for t in p["targets"])
    assert variables["namespace"]["datasource"] == chosen
    assert variables["namespace"]["query"].startswith("label_values(up{job=~")
    # $__rate_interval follows the scrape interval Grafana is told
    scrape = yaml.safe_load((REPO / "infra" / "prometheus" / "prometheus-compose.yml").read_text())
    assert datasource["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]
    provider = yaml.safe_load(
        (REPO / "infra" / "grafana" / "provisioning" / "dashboards" / "inferloop.yml").read_text()
    )["providers"][0]
    mounts = [v for v in COMPOSE["services"]["grafana"]["volumes"] if "dashboards" in v]
    assert any(v.split(":")[1].startswith(provider["options"]["path"]) for v in mounts)
    titles = [p["title"] for p in board["panels"]]
    for wanted in ("Throughput", "End-to-end latency", "Batch fill", "Consumer lag", "Dead letters by reason",
                   "Triton queue and compute time per request", "Serving version", "Online accuracy per version",
                   "Trainer runs"):  # fmt: skip
        assert wanted in titles


def test_every_scrape_target_carries_the_namespace_the_rules_and_dashboard_select() -> None:
    configs = [yaml.safe_load((REPO / "infra" / "prometheus" / name).read_text())
               for name in ("prometheus.yml", "prometheus-compose.yml")]  # fmt: skip
    # and the copy `inferloop up --with-prometheus` renders, its targets moved
    configs.append(yaml.safe_load(render_config({"inferloop-worker": ["127.0.0.1:19100"]}, 2.0)))
    for config in configs:
        for job in config["scrape_configs"]:
            assert all(s["labels"] == {"namespace": "local"} for s in job["static_configs"]), job
    rules = REPO / "infra" / "prometheus" / "rules" / "inferloop.rules.yml"
    assert rules.read_bytes() == (REPO / "helm" / "inferloop" / "files" / "inferloop.rules.yml").read_bytes()


def test_the_image_copies_every_package_pyproject_ships() -> None:
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert {"inferloop", "streams", "trainer", "infra", "cli"} <= set(packages)
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in packages:
        assert (REPO / package / "__init__.py").is_file(), package
        assert f"COPY {package} ./{package}" in dockerfile, f"the Dockerfile does not copy {package}/"
