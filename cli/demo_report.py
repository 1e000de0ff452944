"""The demo's options and live state, and what it observed, summed up: ``report.json`` and a chart of accuracy over
time by version."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DemoOptions:
    report_dir: Path
    rate_per_s: float = 80.0
    clean_s: float = 20.0
    feedback_fraction: float = 0.5
    settle_s: float = 15.0  # the newest version serves this long on drifted images before the demo ends
    max_drift_s: float = 180.0
    min_online_accuracy: float = 0.15  # the trainer's trigger: most of the last 200 labels are drifted ones
    min_labels_per_run: int = 150
    promotion_min_labels: int = 200  # live labels the candidate in shadow needs before the promoter decides
    keep_running: bool = False


@dataclass
class LiveState:
    """What the live view shows; written by the demo's threads, read by the view."""

    phase: str = "starting"
    started: float = 0.0
    sent: int = 0
    feedback: int = 0
    serving: int = 0
    announced: int = 0  # the version the promotions topic names
    shadow: int | None = None  # the candidate in shadow, if any
    trainer: str = ""
    joiner_accuracy: dict[str, float] | None = None
    message: str = ""


@dataclass(frozen=True)
class Observation:
    """One prediction as the demo saw it, against the truth it knows for every event it sent."""

    t_s: float  # when it was predicted, seconds since the stream began
    phase: str  # "clean" or "drift"
    version: int
    correct: bool
    latency_ms: float
    holdout: bool  # its image is in the holdout split: never labelled, so fair to measure on
    predicted_at_ms: int = 0


@dataclass
class DemoReport:
    duration_s: float
    final_serving_version: int
    baseline_version: int
    accuracy_before_drift: float | None  # baseline version, clean images
    accuracy_after_drift: float | None  # baseline version, drifted holdout images
    accuracy_recovered: float | None  # final version, drifted holdout images
    drift: str
    drift_started_s: float
    versions_published: list[dict[str, Any]]
    events_sent: int
    predictions: int
    feedback_sent: int
    examples_logged: int | None
    throughput_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    promotions: list[dict[str, Any]] = field(default_factory=list)  # the promoter's decisions during the run
    predictions_from_unverified: int = 0  # predictions whose version had not been promoted when they were made
    online_accuracy: dict[str, float] = field(default_factory=dict)  # the joiner's view, by version
    topics: dict[str, str] = field(default_factory=dict)
    model: str = ""
    notes: list[str] = field(default_factory=list)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "report.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def accuracy(observations: Sequence[Observation]) -> float | None:
    return round(sum(o.correct for o in observations) / len(observations), 4) if observations else None


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(values), q)), 1) if values else None


def rolling_accuracy(observations: Sequence[Observation], window: int) -> list[float]:
    correct = np.asarray([o.correct for o in observations], dtype=float)
    if len(correct) == 0:
        return []
    cumulative = np.concatenate([[0.0], np.cumsum(correct)])
    out = []
    for i in range(len(correct)):
        lo = max(0, i + 1 - window)
        out.append(float((cumulative[i + 1] - cumulative[lo]) / (i + 1 - lo)))
    return out


def write_chart(
    observations: Sequence[Observation],
    drift_started_s: float,
    published: Sequence[dict[str, Any]],
    path: Path,
    shadows: Sequence[dict[str, Any]] = (),
) -> Path:
    """Online accuracy over time (rolling, over the last 100 predictions), each point coloured by the version
    that made the prediction; the drift, every candidate's time in shadow and every publication marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(observations, key=lambda o: o.t_s)
    rolling = rolling_accuracy(ordered, 100)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    versions = sorted({o.version for o in ordered})
    colours = plt.get_cmap("tab10")
    for n, version in enumerate(versions):
        xs = [o.t_s for o in ordered if o.version == version]
        ys = [r for o, r in zip(ordered, rolling, strict=True) if o.version == version]
        ax.scatter(xs, ys, s=4, color=colours(n % 10), label=f"v{version}")
    ax.axvline(drift_started_s, color="black", linestyle="--", linewidth=1)
    ax.text(drift_started_s, 1.02, " drift: inverted digits", fontsize=8, va="bottom")
    for entry in shadows:
        end = entry.get("until_s") or (ordered[-1].t_s if ordered else entry["at_s"])
        ax.axvspan(entry["at_s"], end, color="tab:cyan", alpha=0.12)
        ax.text(entry["at_s"], 0.5, f" v{entry['version']} in shadow", fontsize=8, rotation=90, va="bottom")
    for entry in published:
        ax.axvline(entry["at_s"], color="grey", linestyle=":", linewidth=1)
        ax.text(entry["at_s"], 0.02, f" v{entry['version']} promoted", fontsize=8, rotation=90, va="bottom")
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("seconds since the stream began")
    ax.set_ylabel("accuracy (last 100 predictions)")
    ax.set_title("inferloop demo: online accuracy by serving version")
    if versions:
        ax.legend(title="model version", loc="lower right", markerscale=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
