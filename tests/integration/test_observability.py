"""Prometheus and Grafana, checked against the real tools: promtool on the config and the rules (with their
unit tests), a real Prometheus scraping a real stack under traffic, and every dashboard query run on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

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
    result = promtool("test", "rules", *sorted(str(p) for p in (PROMETHEUS_DIR / "tests").glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr
    # every alert has a unit test
    alerts = {line.split(":", 1)[1].strip() for f in rules for line in Path(f).read_text().splitlines()
              if line.strip().startswith("- alert:")}  # fmt: skip
    tested = "\n".join(p.read_text() for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert alerts and all(f"alertname: {a}" in tested for a in alerts), alerts
    runbooks = (REPO / "docs" / "operations.md").read_text()
    assert all(f"### {a}\n" in runbooks for a in alerts), "an alert has no runbook section in docs/operations.md"
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
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


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

        def all_up() -> dict[str, float] | None:
            up = {r["metric"]["job"]: float(r["value"][1]) for r in query(base, "up")["data"]["result"]}
            return up if set(up.values()) == {1.0} else None

        up = wait_for(all_up, 30, "every scrape target up")
        assert set(up) == {"inferloop-worker", "inferloop-joiner", "inferloop-trainer", "triton"}, up
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
        assert sum(len(g["rules"]) for g in rules) == 10

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
