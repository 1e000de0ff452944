"""The main job, as a user runs it: ``inferloop demo`` on a machine where nothing runs yet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.local.process import free_ports, port_is_free
from infra.local.settings import LocalSettings
from infra.local.stack import LocalStack
from tests.helpers import inferloop, own_stack_env, settings_from_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_shows_drift_and_recovery_and_leaves_nothing_running(base_settings: LocalSettings, tmp_path: Path) -> None:
    ports = free_ports(5)
    env = own_stack_env(tmp_path / "home", base_settings.cache_dir, ports)
    report_dir = tmp_path / "report"
    result = inferloop(env, "demo", "--report", str(report_dir), "--json", timeout_s=420)
    assert result.returncode == 0, result.stderr[-6000:]

    report = json.loads((report_dir / "report.json").read_text())
    assert json.loads(result.stdout) == report
    assert report["final_serving_version"] >= 2
    assert report["accuracy_before_drift"] >= 0.95
    assert report["accuracy_after_drift"] <= 0.5, "the drift did not hurt: the demo shows nothing"
    assert report["accuracy_recovered"] - report["accuracy_after_drift"] >= 0.20
    assert report["duration_s"] <= 300
    assert report["examples_logged"] > 0 and report["feedback_sent"] > 0
    # the new version served only after its verification, shadow scoring and promotion on live labels
    (promotion,) = [p for p in report["promotions"] if p["version"] == report["final_serving_version"]]
    assert promotion["shadow_live_labels"] >= 200
    assert promotion["candidate_live_accuracy"] >= promotion["serving_live_accuracy"]
    assert report["predictions_from_unverified"] == 0
    assert report["versions_published"][0]["at_s"] >= promotion["promoted_at_s"] - 1.0, "served before promoted"
    assert (report_dir / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "inferloop demo: summary" in result.stderr, "with --json the table goes to stderr, stdout is JSON"

    settings = settings_from_env(env)
    assert not any(c.running for c in LocalStack(settings).status()), "the demo left its stack running"
    assert all(port_is_free("127.0.0.1", p) for p in ports), "a port of the demo's stack is still taken"
