"""Prometheus and Grafana, checked against the real tools: promtool on the config and the rules (with their
unit tests), a real Prometheus scraping a real stack under traffic, and every dashboard query run on it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from inferloop.kafka.producers import FeedbackProducer, ImageProducer
from infra.local.process import free_ports, port_is_free, start, stop_pid
from infra.local.prometheus_server import PROMETHEUS_DIR, render_config
from infra.local.settings import LocalSettings
from infra.local.worker import JoinerProcess, TrainerProcess, WorkerProcess
from tests.conftest import SERVER_LOGS
from tests.helpers import inferloop, own_stack_env, settings_from_env, wait_for
from trainer.data import digits_images, png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "infra" / "grafana" / "dashboards" / "inferloop.json"
# the chart rewrites this prefix from its values; the files keep it
RUNBOOKS = "https://github.com/inferloop/inferloop/blob/main/docs/operations.md#"
# the dashboard's variables as the live test fills them in: the local scrape configs' namespace, and a rate
# range that holds several scrapes at the local intervals (2 s here, 5 s by default)
LOCAL_NAMESPACE = "local"
RATE_INTERVAL = "1m"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is not installed (make setup installs Debian's prometheus package)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_promtool_accepts_the_config_and_the_rules_and_their_unit_tests_pass(tmp_path: Path) -> None:
    for config_file in ("prometheus.yml", "prometheus-compose.yml"):
        result = promtool("check", "config", str(PROMETHEUS_DIR / config_file))
        assert result.returncode == 0, result.stdout + result.stderr
    rules = sorted(str(p) for p in (PROMETHEUS_DIR / "rules").glob("*.yml"))
    result = promtool("check", "rules", *rules)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    result = promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"]: r for f in rules for g in yaml.safe_load(Path(f).read_text())["groups"] for r in g["rules"]}
    runbooks = (REPO / "docs" / "operations.md").read_text()
    for name, rule in alerts.items():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == RUNBOOKS + name.lower(), name
        assert f"### {name}\n" in runbooks, f"{name} has no runbook section in docs/operations.md"
        # computed per namespace: every aggregation and every join keeps it, so two releases never mix
        assert not re.search(r"\b(sum|max|min|avg|count)\s*\(", rule["expr"]), f"{name} aggregates without by"
        assert all("namespace" in labels for labels in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"])), name
    # every alert has a unit test where it fires and one where it stays quiet
    cases = {
        (case["alertname"], bool(case["exp_alerts"]))
        for f in tests
        for test in yaml.safe_load(f.read_text())["tests"]
        for case in test["alert_rule_test"]
    }
    assert {(a, fires) for a in alerts for fires in (True, False)} <= cases, cases
    # the config `up --with-prometheus` renders is valid too
    (tmp_path / "rules").mkdir()
    config = tmp_path / "prometheus.yml"
    config.write_text(render_config({"inferloop-worker": ["127.0.0.1:19100"]}, 2.0))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - the test's own Prometheus
        body: dict[str, Any] = json.loads(response.read())
    return body


def values(base: str, expr: str) -> list[float]:
    body = query(base, expr)
    assert body["status"] == "success", body
    return [float(r["value"][1]) for r in body["data"]["result"]]


def dashboard_queries() -> list[tuple[str, str]]:
    """Every panel's query as Grafana sends it for the local stack, after checking that each selects the
    dashboard's namespace and takes its ranges from Grafana's rate interval."""
    board = json.loads(DASHBOARD.read_text())
    queries = [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]
    for title, expr in queries:
        selectors = re.findall(r"\b((?:inferloop|nv)_\w+|up)\b(\{[^}]*\})?", expr)
        assert selectors and all('namespace=~"$namespace"' in labels for _, labels in selectors), (title, expr)
        assert all("job=" in labels for metric, labels in selectors if metric == "up"), (title, "inferloop's jobs only")
        assert all(r == "$__rate_interval" for r in re.findall(r"\[([^\]]*)\]", expr)), (title, expr)
    local = {"$__rate_interval": RATE_INTERVAL, "$namespace": LOCAL_NAMESPACE}
    return [(title, re.sub(r"\$\w+", lambda m: local[m.group()], expr)) for title, expr in queries]


def test_every_dashboard_query_selects_the_namespace_and_the_rate_interval() -> None:
    queries = dashboard_queries()
    assert queries and not any("$" in expr for _, expr in queries)


def test_prometheus_scrapes_the_stack_and_every_dashboard_query_returns_data(
    base_settings: LocalSettings, tmp_path: Path
) -> None:
    ports = free_ports(9)
    env = own_stack_env(
        tmp_path / "home",
        base_settings.cache_dir,
        ports,
        INFERLOOP_PROMETHEUS__PORT=str(ports[5]),
        INFERLOOP_PROMETHEUS__SCRAPE_INTERVAL_S="2",
        INFERLOOP_STREAMS__METRICS_PORT=str(ports[6]),
        INFERLOOP_FEEDBACK__METRICS_PORT=str(ports[7]),
        INFERLOOP_TRAINER__METRICS_PORT=str(ports[8]),
        INFERLOOP_TRAINER__BOOTSTRAP_EPOCHS="5",
        INFERLOOP_TRAINER__MIN_NEW_LABELS="100000",  # the trainer checks (and reports) but does not retrain
    )
    settings = settings_from_env(env)
    base = settings.prometheus.url
    home = settings.home
    for name in ("kafka", "triton", "prometheus"):
        SERVER_LOGS[f"{name} (observability)"] = home / "logs" / f"{name}.log"
    pids: list[int] = []
    try:
        result = inferloop(env, "up", "--with-prometheus")
        assert result.returncode == 0, result.stderr
        status = json.loads(inferloop(env, "status", "--json").stdout)
        assert status["prometheus"]["ready"] and status["kafka"]["ready"] and status["triton"]["ready"]
        assert inferloop(env, "train", "--bootstrap").returncode == 0
        for service in (
            WorkerProcess(env, ports[6], tmp_path / "worker.log"),
            JoinerProcess(env, ports[7], tmp_path / "joiner.log"),
            TrainerProcess(env, tmp_path / "trainer.log", every="2s"),
        ):
            SERVER_LOGS[f"{service.name} (observability)"] = service.log_path
            pids.append(start(service).pid)

        images, labels = digits_images()
        items = [(uuid.uuid4().hex, png_bytes(images[i]), str(int(labels[i]))) for i in range(300)]
        with ImageProducer(settings, source="test") as producer:
            for event_id, data, _ in items:
                producer.publish_bytes(data, "image/png", event_id=event_id)
            producer.publish_bytes(b"not an image at all", "image/png")  # one dead letter
        wait_for(lambda: sum(values(base, "inferloop_predictions_total")) >= 300, 90, "300 predictions in Prometheus")
        with FeedbackProducer(settings, source="test") as feedback:
            for event_id, _, label in items[:120]:
                feedback.send(event_id, label)
            feedback._producer.send(settings.feedback.topic, key=b"junk", value=b"{oops")  # one feedback dead letter
        wait_for(lambda: values(base, "inferloop_online_accuracy"), 60, "online accuracy in Prometheus")

        def all_up() -> dict[tuple[str, str], float] | None:
            result = query(base, "up")["data"]["result"]
            up = {(r["metric"]["job"], r["metric"].get("namespace", "")): float(r["value"][1]) for r in result}
            return up if set(up.values()) == {1.0} else None

        up = wait_for(all_up, 30, "every scrape target up")
        jobs = {"inferloop-worker", "inferloop-joiner", "inferloop-trainer", "triton"}
        assert set(up) == {(job, LOCAL_NAMESPACE) for job in jobs}, up
        (accuracy,) = values(base, 'inferloop_online_accuracy{model="digits",version="1"}')
        assert 0.5 <= accuracy <= 1.0
        assert values(base, 'inferloop_serving_model_version{model="digits"}') == [1.0]
        assert sum(values(base, 'nv_inference_request_success{model="digits"}')) > 0
        assert sum(values(base, "inferloop_end_to_end_latency_seconds_count")) >= 300
        assert sum(values(base, 'inferloop_dead_letters_total{reason="not_an_image"}')) == 1
        # the worker's images; the joiner's predictions, shadow predictions and feedback (open and trusted)
        lag_series = settings.streams.partitions * 5
        wait_for(lambda: len(values(base, "inferloop_consumer_lag")) == lag_series, 20, "consumer lag of both apps")
        # the trainer's first check ends a few seconds after its metrics endpoint is up, then waits for a scrape
        wait_for(lambda: values(base, 'inferloop_trainer_runs_total{outcome="skipped"}'), 30, "a trainer check")
        rules = (
            query(base, "up")
            and json.loads(
                urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10).read()  # noqa: S310 - the test's own Prometheus
            )["data"]["groups"]
        )
        assert sum(len(g["rules"]) for g in rules) == 11
        assert not [r["name"] for g in rules for r in g["rules"] if r.get("health") == "err"]

        def every_panel_has_data() -> list[str] | None:
            empty = [f"{title}: {expr}" for title, expr in dashboard_queries() if not values(base, expr)]
            return None if empty else ["ok"]

        try:
            wait_for(every_panel_has_data, 60, "every dashboard query to return data")
        except AssertionError:
            empty = [f"{t}: {e}" for t, e in dashboard_queries() if not values(base, e)]
            raise AssertionError(f"dashboard queries without data: {empty}") from None
    finally:
        for pid in pids:
            stop_pid(pid, timeout_s=20)
        down = inferloop(env, "down")
    assert down.returncode == 0, down.stderr
    assert all(port_is_free("127.0.0.1", p) for p in ports[:6]), "a server of the stack is still listening"
