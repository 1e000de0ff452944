"""docs/metrics.md lists exactly the metrics the code registers, with their types."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from inferloop.metrics import JoinerMetrics, TrainerMetrics, WorkerMetrics, consumer_lag_gauge

DOC = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def registered() -> dict[str, str]:
    out = {}
    for metrics in (WorkerMetrics, JoinerMetrics, TrainerMetrics):  # each process has a registry of its own
        registry = CollectorRegistry()
        metrics(registry)
        for family in registry.collect():
            out[family.name + ("_total" if family.type == "counter" else "")] = family.type
    return out


def documented() -> dict[str, str]:
    rows = re.findall(r"^\| `(inferloop_[a-z_]+)` \| (counter|gauge|histogram) \|", DOC.read_text(), re.M)
    return dict(rows)


def test_the_metrics_doc_matches_the_code() -> None:
    assert documented() == registered()
    assert consumer_lag_gauge(CollectorRegistry())._name == "inferloop_consumer_lag"
