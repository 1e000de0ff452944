"""The Helm chart, checked with the real helm: lint (strict, with values.schema.json) and template with every values
file, the rendered manifests validated strictly against the Kubernetes schemas, then parsed to check the wiring
(settings names, ports, probes, selectors, toggles, scheduling, GPUs)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from inferloop.settings import TritonSettings
from inferloop.triton.options import grpc_options
from infra.local.settings import LocalSettings

pytestmark = [pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "inferloop"
PRODUCTION = CHART / "values-production.yaml"
GPU = CHART / "values-gpu.yaml"
VALUES_FILES = {
    "default": [],
    "production": ["-f", str(PRODUCTION)],
    "gpu": ["-f", str(GPU)],
    "production-gpu": ["-f", str(PRODUCTION), "-f", str(GPU)],
}
CRDS = ["--api-versions", "monitoring.coreos.com/v1", "--api-versions", "keda.sh/v1alpha1"]
CRD_GROUPS = ("monitoring.coreos.com/", "keda.sh/")


def helm_binary() -> str:
    cache = Path(os.environ.get("INFERLOOP_CACHE_DIR", Path.home() / ".cache" / "inferloop"))
    found = shutil.which("helm") or (str(cache / "bin" / "helm") if (cache / "bin" / "helm").exists() else None)
    assert found, "helm is not installed: `make setup` builds it with the Go toolchain"
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def render(*args: str) -> list[dict[str, Any]]:
    result = helm("template", "rel", str(CHART), *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def is_setting(name: str) -> bool:
    """Whether ``INFERLOOP_A__B`` names a field of the settings object."""
    model: type[BaseModel] = LocalSettings
    parts = name.removeprefix("INFERLOOP_").lower().split("__")
    for n, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if n < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {name: d["spec"]["template"]["spec"] for name, d in by_kind(docs, "Deployment").items()}
    out |= {name: d["spec"]["jobTemplate"]["spec"]["template"]["spec"] for name, d in by_kind(docs, "CronJob").items()}
    out |= {name: d["spec"]["template"]["spec"] for name, d in by_kind(docs, "Job").items()}
    return out


def test_every_values_file_in_the_chart_is_tested() -> None:
    assert {p.name for p in CHART.glob("values*.yaml")} == {"values.yaml", PRODUCTION.name, GPU.name}


@pytest.mark.parametrize("values", list(VALUES_FILES.values()), ids=list(VALUES_FILES))
def test_helm_lint_passes(values: list[str]) -> None:
    result = helm("lint", "--strict", str(CHART), *values)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "crds"), [([], False), (["-f", str(PRODUCTION)], True)], ids=["default", "production-crd-kinds-on"]
)
def test_rendered_manifests_are_wired_together(values: list[str], crds: bool) -> None:
    """``crds``: the values turn on KEDA, the ServiceMonitors and the PrometheusRule (the production values do)."""
    docs = render(*values)
    config = by_kind(docs, "ConfigMap")["rel-inferloop-env"]["data"]
    specs = pod_specs(docs)
    assert set(specs) == {
        "rel-inferloop-worker",
        "rel-inferloop-joiner",
        "rel-inferloop-triton",
        "rel-inferloop-trainer",
        "rel-inferloop-topics",
    }

    # every INFERLOOP_* variable is a field of the settings object
    names = set(config)
    for spec in specs.values():
        for container in spec["containers"]:
            names |= {e["name"] for e in container.get("env") or [] if e["name"].startswith("INFERLOOP_")}
    unknown = sorted(n for n in names if n.startswith("INFERLOOP_") and not is_setting(n))
    assert unknown == [], f"not settings: {unknown}"

    # ports: containers, Services and the settings agree
    worker = specs["rel-inferloop-worker"]["containers"][0]
    joiner = specs["rel-inferloop-joiner"]["containers"][0]
    triton = specs["rel-inferloop-triton"]["containers"][0]
    assert worker["args"] == ["worker"] and joiner["args"] == ["joiner"]
    assert {p["name"]: p["containerPort"] for p in worker["ports"]} == {
        "metrics": int(config["INFERLOOP_STREAMS__METRICS_PORT"])
    }
    assert joiner["ports"][0]["containerPort"] == int(config["INFERLOOP_FEEDBACK__METRICS_PORT"])
    triton_ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert set(triton_ports) == {"http", "grpc", "metrics"}  # http: the kubelet's probes only (see below)
    assert {k: v for k, v in triton_ports.items() if k != "http"} == {
        "grpc": int(config["INFERLOOP_TRITON__GRPC_PORT"]),
        "metrics": int(config["INFERLOOP_TRITON__METRICS_PORT"]),
    }
    assert f"--grpc-port={config['INFERLOOP_TRITON__GRPC_PORT']}" in triton["args"]
    assert "--model-control-mode=explicit" in triton["args"] and "--strict-readiness=false" in triton["args"]
    assert f"--model-repository={config['INFERLOOP_TRITON__MODEL_REPOSITORY']}" in triton["args"]

    # probes: Triton's health endpoints; the Faust apps' metrics endpoints
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    for container in (worker, joiner):
        assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}

    # topics: a hook creates them (with the ConfigMap's settings, which does not exist yet at pre-install) before
    # any app starts; the apps never create topics, whatever the cluster allows
    topics_job = by_kind(docs, "Job")["rel-inferloop-topics"]
    assert topics_job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    topics = specs["rel-inferloop-topics"]["containers"][0]
    assert topics["args"] == ["topics", "create"]
    assert config.items() <= {e["name"]: e["value"] for e in topics["env"] if "value" in e}.items()
    assert config["INFERLOOP_KAFKA__CREATE_TOPICS"] == "false"
    assert (
        int(config["INFERLOOP_KAFKA__REPLICATION_FACTOR"]) == -1
        or int(config["INFERLOOP_KAFKA__REPLICATION_FACTOR"]) >= 1
    )
    # the worker's memory budget leaves room under its limit (the budget counts records, not the process)
    limit = worker["resources"]["limits"]["memory"]
    assert limit.endswith("Gi") or limit.endswith("Mi")
    limit_mib = int(limit[:-2]) * (1024 if limit.endswith("Gi") else 1)
    assert int(config["INFERLOOP_STREAMS__MEMORY_BUDGET_MB"]) <= limit_mib // 2

    # labels and selectors: every Service, PDB and policy selects the pods it means
    deployments = by_kind(docs, "Deployment")
    pod_labels = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    for name, d in deployments.items():
        assert d["spec"]["selector"]["matchLabels"].items() <= pod_labels[name].items(), name
    services = by_kind(docs, "Service")
    assert config["INFERLOOP_TRITON__HOST"] in services
    for name, svc in services.items():
        targets = [n for n, labels in pod_labels.items() if svc["spec"]["selector"].items() <= labels.items()]
        assert len(targets) == 1, f"service {name} selects {targets}"
        container_ports = {p["name"] for p in specs[targets[0]]["containers"][0]["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= container_ports, name
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        assert any(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() for labels in pod_labels.values())
    assert by_kind(docs, "NetworkPolicy")

    # the trainer runs its loop continuously (the promoter waits for live labels), one replica at a time, reaches
    # every Triton replica through the headless Service, and writes the shared volume
    trainer = specs["rel-inferloop-trainer"]["containers"][0]
    trainer_deployment = deployments["rel-inferloop-trainer"]
    assert trainer_deployment["spec"]["replicas"] == 1 and trainer_deployment["spec"]["strategy"]["type"] == "Recreate"
    assert trainer["args"][0].rstrip().endswith("exec inferloop trainer")
    assert {p["containerPort"] for p in trainer["ports"]} == {int(config["INFERLOOP_TRAINER__METRICS_PORT"])}
    assert int(config["INFERLOOP_TRAINER__PROMOTION_MIN_LABELS"]) == 200
    trainer_env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert trainer_env["INFERLOOP_TRITON__FAN_OUT"] == "true"
    headless = services[trainer_env["INFERLOOP_TRITON__HOST"]]
    assert headless["spec"]["clusterIP"] == "None"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for name in ("rel-inferloop-trainer", "rel-inferloop-triton")
        for v in specs[name]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == set(by_kind(docs, "PersistentVolumeClaim")), claims

    # non-root everywhere, no privilege escalation, shared memory sized for the python backend
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["resources"]["requests"], name
    dshm = next(v for v in specs["rel-inferloop-triton"]["volumes"] if v["name"] == "dshm")
    assert dshm["emptyDir"]["medium"] == "Memory"

    # Triton's gRPC over TLS (production values: mutual): the server mounts its Secret, clients get only its CA
    if config.get("INFERLOOP_TRITON__TLS") == "true":
        assert "--grpc-use-ssl=true" in triton["args"] and "--grpc-use-ssl-mutual=true" in triton["args"]
        for name in ("rel-inferloop-worker", "rel-inferloop-joiner", "rel-inferloop-trainer"):
            container = specs[name]["containers"][0]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            for setting in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"):
                path = Path(config[f"INFERLOOP_TRITON__{setting}"])
                assert str(path.parent) in mounts, (name, setting)
            ca_volume = next(v for v in specs[name]["volumes"] if v["name"] == "triton-tls")
            assert ca_volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the server key leaks"
        # the trainer dials each replica by address and verifies the name the certificate carries: the Service's
        assert trainer_env["INFERLOOP_TRITON__TLS_SERVER_NAME"] == config["INFERLOOP_TRITON__HOST"]
        trainer_triton = TritonSettings(
            host=trainer_env["INFERLOOP_TRITON__HOST"], tls=True, fan_out=True,
            tls_server_name=trainer_env["INFERLOOP_TRITON__TLS_SERVER_NAME"],
        )  # fmt: skip
        overrides = dict(grpc_options(trainer_triton)["channel_args"])
        assert overrides["grpc.ssl_target_name_override"] == config["INFERLOOP_TRITON__HOST"]
        assert json.loads(config["INFERLOOP_STREAMS__IMAGE_URI_ROOTS"]) == ["s3://inferloop-images/incoming/"]
    else:
        assert not any("ssl" in arg for arg in triton["args"]) and "INFERLOOP_TRITON__TLS_CA_FILE" not in config

    # autoscaling: KEDA on the workers' consumer lag when the CRD exists, else a CPU HPA
    if crds:
        (scaled,) = by_kind(docs, "ScaledObject").values()
        assert scaled["spec"]["scaleTargetRef"]["name"] == "rel-inferloop-worker"
        trigger = scaled["spec"]["triggers"][0]
        assert trigger["metadata"]["consumerGroup"] == config["INFERLOOP_STREAMS__APP_ID"]
        assert trigger["metadata"]["topic"] == config["INFERLOOP_STREAMS__IMAGES_TOPIC"]
        assert scaled["spec"]["maxReplicaCount"] <= int(config["INFERLOOP_STREAMS__PARTITIONS"])
        assert not by_kind(docs, "HorizontalPodAutoscaler")
        rules = yaml.safe_load((CHART / "files" / "inferloop.rules.yml").read_text())
        (rule,) = by_kind(docs, "PrometheusRule").values()
        assert rule["spec"] == rules
        monitors = by_kind(docs, "ServiceMonitor")
        assert len(monitors) == 4  # workers, joiner, trainer, Triton
        for monitor in monitors.values():
            selected = [s for s in services.values() if monitor["spec"]["selector"]["matchLabels"].items()
                        <= s["metadata"]["labels"].items()]  # fmt: skip
            assert len(selected) == 1 and any(p["name"] == "metrics" for p in selected[0]["spec"]["ports"])
        # SASL credentials come from the Secret, never from the ConfigMap
        env = {e["name"]: e for e in worker["env"]}
        assert env["INFERLOOP_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "inferloop-kafka-sasl"
        assert "INFERLOOP_KAFKA__SASL_PASSWORD" not in config
    else:
        (hpa,) = by_kind(docs, "HorizontalPodAutoscaler").values()
        assert hpa["spec"]["maxReplicas"] <= int(config["INFERLOOP_STREAMS__PARTITIONS"])
        assert not by_kind(docs, "ServiceMonitor") and not by_kind(docs, "ScaledObject")
    dashboard = by_kind(docs, "ConfigMap")["rel-inferloop-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["inferloop.json"]) == json.loads(
        (CHART / "files" / "inferloop-dashboard.json").read_text()
    )


@pytest.mark.security
@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default", "production"])
def test_no_pod_reaches_tritons_plain_http_port(values: list[str]) -> None:
    """Triton's HTTP port carries the model-control API (load/unload) without the mutual TLS of gRPC: the
    NetworkPolicy admits no pod to it and no Service exposes it (the kubelet's probes come from the node); gRPC
    is admitted from inferloop's own pods only, metrics from Prometheus."""
    docs = render(*values)
    config = by_kind(docs, "ConfigMap")["rel-inferloop-env"]["data"]
    triton = pod_specs(docs)["rel-inferloop-triton"]
    http_port = next(p["containerPort"] for p in triton["containers"][0]["ports"] if p["name"] == "http")
    assert f"--http-port={http_port}" in triton["containers"][0]["args"]  # the port is open in the container
    policy = by_kind(docs, "NetworkPolicy")["rel-inferloop-triton"]
    triton_labels = by_kind(docs, "Deployment")["rel-inferloop-triton"]["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= triton_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    admitted = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert http_port not in admitted and "http" not in admitted
    assert admitted == {int(config["INFERLOOP_TRITON__GRPC_PORT"]), int(config["INFERLOOP_TRITON__METRICS_PORT"])}
    for service in by_kind(docs, "Service").values():
        assert all(p["targetPort"] not in ("http", http_port) for p in service["spec"]["ports"])


def test_the_chart_refuses_inconsistent_values() -> None:
    result = helm("template", "rel", str(CHART), "--set", "worker.autoscaling.enabled=false", "--set",
                  "worker.replicas=9")  # fmt: skip
    assert result.returncode != 0 and "more than topics.partitions" in result.stderr
    result = helm("template", "rel", str(CHART), "--set", "kafka.securityProtocol=SASL_SSL")
    assert result.returncode != 0 and "kafka.sasl.existingSecret is required" in result.stderr
    result = helm(
        "template", "rel", str(CHART), "--set", "triton.tls.existingSecret=t", "--set", "triton.tls.mutual=true"
    )
    assert result.returncode != 0 and "triton.tls.clientSecret is required" in result.stderr


# -- Kubernetes conventions ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", list(VALUES_FILES.values()), ids=list(VALUES_FILES))
def test_rendered_manifests_pass_strict_kubernetes_validation(values: list[str]) -> None:
    """Every core kind against the Kubernetes schemas (unknown fields refused); the CRD kinds (KEDA, the Prometheus
    Operator) have no schema there and are checked for their required structure."""
    import kubernetes_validate

    docs = render(*values)
    core = [d for d in docs if not d["apiVersion"].startswith(CRD_GROUPS)]
    assert len(core) >= 15
    for doc in core:
        try:
            kubernetes_validate.validate(doc, "1.37.0", strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']} {doc['metadata']['name']}: {exc.message}") from None
    for doc in docs:
        if doc["kind"] == "ScaledObject":
            assert doc["spec"]["scaleTargetRef"]["name"] and doc["spec"]["triggers"][0]["type"] == "kafka"
        elif doc["kind"] == "ServiceMonitor":
            assert doc["spec"]["selector"]["matchLabels"] and doc["spec"]["endpoints"][0]["port"] == "metrics"
        elif doc["kind"] == "PrometheusRule":
            assert all(r["alert"] and r["expr"] for g in doc["spec"]["groups"] for r in g["rules"])
        elif doc["kind"] == "TriggerAuthentication":
            assert doc["spec"]["secretTargetRef"]


def test_values_schema_is_valid_and_accepts_every_values_file() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, schema)

    def objects(node: dict[str, Any], path: str) -> list[str]:  # every closed object, to prove keys are checked
        closed = [path] if node.get("additionalProperties") is False else []
        return closed + [p for k, sub in node.get("properties", {}).items() for p in objects(sub, f"{path}.{k}")]

    closed = objects(schema, "")
    assert {".worker", ".worker.autoscaling", ".triton", ".model.tensorrt", ".metrics.prometheusRule"} <= set(closed)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--set", "wrokers.replicas=2"], "additional properties 'wrokers' not allowed"),
        (["--set", "worker.replica=2"], "additional properties 'replica' not allowed"),
        (["--set", "model.device=tpu"], "/model/device"),
        (["--set", "model.backend=tensorflow"], "/model/backend"),
        (["--set", "logFormat=xml"], "/logFormat"),
        (["--set-string", "worker.replicas=two"], "/worker/replicas"),
        (["--set", "triton.ports.grpc=70000"], "/triton/ports/grpc"),
        (["--set", "kafka.securityProtocol=TLS"], "/kafka/securityProtocol"),
        (["--set", "metrics.prometheusRule.runbookUrl=https://wiki/runbooks"], "/metrics/prometheusRule/runbookUrl"),
        (["--set", "model.device=gpu"], "model.device gpu needs triton.gpus"),
        (["--set", "model.device=gpu,triton.gpus=1,model.backend=python"], "needs model.backend onnxruntime"),
        (["--set", "model.backend=python"], "the stock nvcr.io/nvidia/tritonserver image lacks"),
        (["--set", "worker.autoscaling.minReplicas=3,worker.autoscaling.maxReplicas=2"], "is more than maxReplicas"),
        (["--set", "triton.gpus=1"], "the GPUs would sit idle"),
        (["--set", "model.tensorrt.enabled=true"], "model.tensorrt.enabled needs model.device gpu"),
    ],
)
def test_the_schema_and_the_checks_refuse_bad_values(overrides: list[str], message: str) -> None:
    """The schema's refusals fail ``helm lint --strict`` too; the chart's own checks (``fail``) fail the rendering
    (helm lint reports a template's ``fail`` as INFO only)."""
    schema_refusal = message.startswith(("/", "additional properties"))
    for command in ("template", "lint") if schema_refusal else ("template",):
        args = ["template", "rel", str(CHART)] if command == "template" else ["lint", "--strict", str(CHART)]
        result = helm(*args, *overrides)
        assert result.returncode != 0, (command, overrides)
        assert message in result.stderr + result.stdout, (command, result.stderr + result.stdout)


def test_toggles_render_the_crd_kinds_without_asking_the_cluster() -> None:
    """``helm template`` (and GitOps tools built on it) renders what ``helm install`` would: the values decide, not
    ``.Capabilities``."""
    on = ["--set", "keda.enabled=true,metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true"]
    docs = render(*on)  # no --api-versions: no CRD is known
    (scaled,) = by_kind(docs, "ScaledObject").values()
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    # the workers read from the earliest offset when their group has none: KEDA counts lag the same way
    assert scaled["spec"]["triggers"][0]["metadata"]["offsetResetPolicy"] == "earliest"
    assert len(by_kind(docs, "ServiceMonitor")) == 4 and len(by_kind(docs, "PrometheusRule")) == 1

    docs = render(*CRDS)  # the CRDs exist, the toggles are off (the defaults): nothing of theirs renders
    assert not by_kind(docs, "ScaledObject") and not by_kind(docs, "ServiceMonitor")
    assert not by_kind(docs, "PrometheusRule") and by_kind(docs, "HorizontalPodAutoscaler")


def test_alerts_link_their_runbook_from_the_url_template() -> None:
    template = "https://runbooks.example.com/inferloop/%s.html"
    docs = render(
        "--set", "metrics.prometheusRule.enabled=true", "--set", f"metrics.prometheusRule.runbookUrl={template}"
    )
    (rule,) = by_kind(docs, "PrometheusRule").values()
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) >= 10
    for alert in alerts:
        annotations = alert["annotations"]
        assert annotations["runbook_url"] == template % alert["alert"].lower()
        assert annotations["summary"] and annotations["description"]
    # the file the local Prometheus loads carries the default template's URLs
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["metrics"]["prometheusRule"]["runbookUrl"]
    local = yaml.safe_load((REPO / "infra" / "prometheus" / "rules" / "inferloop.rules.yml").read_text())
    for alert in (r for g in local["groups"] for r in g["rules"]):
        assert alert["annotations"]["runbook_url"] == defaults % alert["alert"].lower()
        anchor = alert["alert"].lower()
        assert f"### {alert['alert']}" in (REPO / "docs" / "operations.md").read_text(), anchor


def test_no_disruption_budget_blocks_a_drain_at_one_replica() -> None:
    docs = render("--set", "worker.autoscaling.enabled=false,worker.replicas=1,joiner.replicas=1,triton.replicas=1")
    budgets = by_kind(docs, "PodDisruptionBudget")
    assert set(budgets) == {"rel-inferloop-worker", "rel-inferloop-joiner", "rel-inferloop-triton"}
    for name, pdb in budgets.items():
        # one replica: a drain may evict it unless minAvailable >= 1 or maxUnavailable == 0
        spec = pdb["spec"]
        assert spec.get("maxUnavailable", 1) >= 1 and spec.get("minAvailable", 0) == 0, (name, spec)


def test_scheduling_values_reach_every_components_pods(tmp_path: Path) -> None:
    scheduling = {
        "nodeSelector": {"pool": "inference"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1,
                     "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "podAnnotations": {"example.com/team": "ml"},
        "priorityClassName": "inferloop-critical",
    }  # fmt: skip
    components = ("worker", "joiner", "triton", "trainer")
    values = tmp_path / "scheduling.yaml"
    values.write_text(yaml.safe_dump({c: scheduling for c in components}))
    docs = render("-f", str(values))
    deployments = by_kind(docs, "Deployment")
    for component in components:
        template = deployments[f"rel-inferloop-{component}"]["spec"]["template"]
        spec = template["spec"]
        for key in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName"):
            assert spec[key] == scheduling[key], (component, key)
        annotations = template["metadata"]["annotations"]
        assert annotations["example.com/team"] == "ml", component
        assert component == "triton" or len(annotations["checksum/env"]) == 64, component  # merged, not replaced
    # unset, nothing is rendered (no empty keys)
    spec = by_kind(render(), "Deployment")["rel-inferloop-worker"]["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName"} & set(spec)


def test_gpu_values_give_triton_gpus_and_the_trainer_a_gpu_model_config() -> None:
    """values-gpu.yaml: the stock image, GPU limits and node placement for Triton; the settings the pods get make
    the trainer render a KIND_GPU config with TensorRT in FP16, which Triton's own protobuf parses."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from inferloop.images.preprocess import InputSpec
    from inferloop.settings import Settings
    from inferloop.triton.signature import ModelSignature
    from tests.helpers import settings_from_env
    from trainer.jobs.context import serving_options

    docs = render("-f", str(PRODUCTION), "-f", str(GPU))
    triton = pod_specs(docs)["rel-inferloop-triton"]
    container = triton["containers"][0]
    assert container["image"].startswith("nvcr.io/nvidia/tritonserver:")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["memory"] == "8Gi"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in triton["tolerations"]
    for name, spec in pod_specs(docs).items():  # only Triton holds GPUs
        if name != "rel-inferloop-triton":
            assert "nvidia.com/gpu" not in (spec["containers"][0]["resources"].get("limits") or {}), name

    # (the GPU values alone: the production ones name SASL and TLS files only the pods have)
    config = by_kind(render("-f", str(GPU)), "ConfigMap")["rel-inferloop-env"]["data"]
    settings: Settings = settings_from_env(dict(config))
    assert (settings.model.backend, settings.model.device, settings.model.tensorrt) == ("onnxruntime", "gpu", True)
    assert settings.trainer.load_timeout_s == 900
    signature = ModelSignature.classifier(settings.model.name, (1, 28, 28), tuple("0123456789"))
    rendered = serving_options(settings).model_config(signature, InputSpec(), [4]).to_pbtxt()
    model_config = text_format.Parse(rendered, pb.ModelConfig())
    assert model_config.platform == "onnxruntime_onnx"
    assert model_config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert model_config.instance_group[0].count == 2
    (trt,) = model_config.optimization.execution_accelerators.gpu_execution_accelerator
    assert (trt.name, trt.parameters["precision_mode"]) == ("tensorrt", "FP16")

    default = by_kind(render(), "ConfigMap")["rel-inferloop-env"]["data"]
    assert (default["INFERLOOP_MODEL__BACKEND"], default["INFERLOOP_MODEL__DEVICE"]) == ("onnxruntime", "cpu")
    assert default["INFERLOOP_LOG_FORMAT"] == "json"
    default_triton = pod_specs(render())["rel-inferloop-triton"]["containers"][0]
    assert default_triton["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert "nvidia.com/gpu" not in default_triton["resources"]["limits"]


def test_notes_say_where_predictions_metrics_and_the_dashboard_are(tmp_path: Path) -> None:
    """helm prints NOTES.txt after an install; rendered here through a copy of the chart, as a template."""
    chart = tmp_path / "inferloop"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    indented = "".join(f"  {line}" if line.strip() else line for line in notes.splitlines(keepends=True))
    (chart / "templates" / "zz-notes.yaml").write_text("notes: |\n" + indented)

    def rendered(*args: str) -> str:
        result = helm("template", "rel", str(chart), "--show-only", "templates/zz-notes.yaml", *args)
        assert result.returncode == 0, result.stderr
        return str(yaml.safe_load(result.stdout)["notes"])

    text = rendered()
    for expected in ("inferloop.images", "inferloop.predictions", "inferloop.dead-letters", "inferloop predictions",
                     "rel-inferloop-triton.default.svc:8001", ":9100", ":9102", "rel-inferloop-dashboard",
                     "port-forward svc/rel-inferloop-worker-metrics"):  # fmt: skip
        assert expected in text, expected
    text = rendered("-f", str(PRODUCTION), "-f", str(GPU))
    assert "ServiceMonitors are created" in text and "consumer lag (KEDA)" in text and "1 GPU(s)" in text
    assert '{"release":"kube-prometheus-stack"}' in text
    assert "ServiceMonitors are created." in rendered("--set", "metrics.serviceMonitor.enabled=true")


def test_triton_resources_follow_the_gpus_whatever_the_resources_values() -> None:
    """No resources at all, or GPU requests of their own: the GPU count still decides (requests must equal limits
    for extended resources)."""
    gpu = ["--set", "model.backend=onnxruntime,model.device=gpu,triton.gpus=2"]
    container = pod_specs(render(*gpu, "--set", "triton.resources=null"))["rel-inferloop-triton"]["containers"][0]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 2}}
    own = ["--set-string", "triton.resources.requests.nvidia\\.com/gpu=1"]
    container = pod_specs(render(*gpu, *own))["rel-inferloop-triton"]["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    container = pod_specs(render("--set", "triton.resources=null"))["rel-inferloop-triton"]["containers"][0]
    assert container["resources"] == {}
    # a TensorRT pod builds engines as it starts: its startup probe waits longer
    trt = pod_specs(render(*gpu, "--set", "model.tensorrt.enabled=true"))["rel-inferloop-triton"]["containers"][0]
    plain = pod_specs(render())["rel-inferloop-triton"]["containers"][0]
    assert trt["startupProbe"]["failureThreshold"] > plain["startupProbe"]["failureThreshold"]
