"""``inferloop demo / bench``: the whole loop shown live, and the pipeline measured against its baselines.

``demo`` needs the ``demo`` extra (everything: the worker, the trainer, the local stack, matplotlib), ``bench`` the
``worker`` extra; each checks it before importing :mod:`cli.demo` or :mod:`cli.bench`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from cli.app import JsonFlag, app, emit_json, err, fail, load, out
from cli.extras import require
from inferloop.errors import InferloopError


@app.command()
def demo(
    report: Annotated[Path | None, typer.Option(help="Report folder (default: <home>/demo/<time>).")] = None,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the stack, worker, joiner and trainer running.")
    ] = False,
    rate: Annotated[float, typer.Option(help="Images per second streamed.")] = 80.0,
    clean_s: Annotated[float, typer.Option(help="Seconds of clean images before the drift.")] = 20.0,
    max_drift_s: Annotated[float, typer.Option(help="Give up on recovery after this many seconds of drift.")] = 180.0,
    as_json: JsonFlag = False,
) -> None:
    """The whole loop on the embedded digits: stream, drift, feedback, retrain, shadow scoring on live traffic,
    promotion, recovery; then a report."""
    require("demo", "demo")
    from cli.demo import Demo
    from cli.demo_report import DemoOptions

    settings = load()
    folder = report or settings.home / "demo" / time.strftime("%Y%m%d-%H%M%S")
    options = DemoOptions(
        report_dir=folder, rate_per_s=rate, clean_s=clean_s, max_drift_s=max_drift_s, keep_running=keep_running
    )
    runner = Demo(settings, options, on_event=err.log)
    with Live(_demo_view({}), console=err, refresh_per_second=4, transient=False) as live:
        try:
            result = runner.run(view=lambda snap: live.update(_demo_view(snap)))
        except InferloopError as exc:
            live.stop()
            fail(f"{exc}\nLogs: {folder / 'logs'}")
        except KeyboardInterrupt:
            live.stop()
            fail("interrupted; what the demo started was stopped", 130)
    if as_json:
        emit_json(result.__dict__)
    table = Table(title="inferloop demo: summary", show_header=False)
    table.add_column("what")
    table.add_column("value")

    def pct(value: float | None) -> str:
        return f"{value:.1%}" if value is not None else "-"

    for what, value in (
        ("duration", f"{result.duration_s:.0f} s"),
        ("baseline version", f"v{result.baseline_version}"),
        ("final serving version", f"v{result.final_serving_version}"),
        ("versions serving traffic", ", ".join(
            f"v{v['version']} at {v['at_s']:.0f} s" for v in result.versions_published) or "none"),
        ("promotions (shadow evidence)", "; ".join(
            f"v{p['version']} at {p['promoted_at_s']:.0f} s on {p['shadow_live_labels']} live labels: "
            f"{p['candidate_live_accuracy']:.1%} vs {p['serving_live_accuracy']:.1%}"
            for p in result.promotions) or "none"),
        ("predictions from unverified versions", str(result.predictions_from_unverified)),
        ("accuracy before drift (baseline, clean)", pct(result.accuracy_before_drift)),
        ("accuracy after drift (baseline, drifted holdout)", pct(result.accuracy_after_drift)),
        ("accuracy recovered (final, drifted holdout)", pct(result.accuracy_recovered)),
        ("events / predictions / feedback", f"{result.events_sent} / {result.predictions} / {result.feedback_sent}"),
        ("latency p50 / p99", f"{result.latency_p50_ms} / {result.latency_p99_ms} ms"),
        ("report", str(folder / "report.json")),
        ("chart", str(folder / "accuracy.png")),
    ):  # fmt: skip
        table.add_row(what, value)
    (err if as_json else out).print(table)  # with --json, stdout holds the JSON document alone
    recovered = result.accuracy_recovered is not None and result.accuracy_after_drift is not None
    if not recovered or result.final_serving_version <= result.baseline_version:
        fail("the loop did not publish a recovered version in time (see the trainer log in the report folder)")


def _demo_view(snap: dict[str, Any]) -> Table:
    table = Table(title="inferloop demo (live)", show_header=True, expand=False)
    for column in ("elapsed", "phase", "sent", "predicted", "images/s", "latency p50/p99", "serving", "shadow",
                   "accuracy", "online acc. (joiner)", "feedback"):  # fmt: skip
        table.add_column(column)
    if not snap:
        table.add_row(*["-"] * 11)
        return table
    online = snap.get("online") or {}
    table.add_row(
        f"{snap['elapsed_s']:.0f} s",
        {"clean": "[green]clean[/]", "drift": "[red]drift[/]"}.get(snap["phase"], snap["phase"]),
        str(snap["sent"]),
        str(snap["predicted"]),
        f"{snap['throughput']:.0f}",
        f"{snap['p50'] or '-'} / {snap['p99'] or '-'} ms",
        f"v{snap['serving']}",
        f"[cyan]v{snap['shadow']}[/]" if snap.get("shadow") else "-",
        f"{snap['accuracy']:.1%}" if snap["accuracy"] is not None else "-",
        ", ".join(f"v{v}: {a:.0%}" for v, a in sorted(online.items())) or "-",
        str(snap["feedback"]),
    )
    table.caption = f"trainer: {snap['trainer'] or 'waiting'}"
    return table


@app.command()
def bench(
    events: Annotated[int, typer.Option(help="Events at full load.")] = 20000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (one consumer group), at most partitions.")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Measure the worker beside a hand-written aiokafka peer, faust's floor, raw Triton and a naive consumer, side
    by side in one run (needs `inferloop up`)."""
    require("bench", "worker")
    from cli.bench import run_bench

    settings = load()
    try:
        with err.status("benchmarking") as spinner:

            def progress(message: str) -> None:
                err.log(message)
                spinner.update(message)

            result = run_bench(settings, events, progress, workers)
    except InferloopError as exc:
        fail(str(exc))
    if as_json:
        emit_json(result.as_dict())
        return
    table = Table(title=f"inferloop bench ({result.machine}, {result.events} events, {result.workers} worker(s))")
    table.add_column("measure")
    table.add_column("value", justify="right")

    def latency(figures: dict[str, float]) -> str:
        return f"{figures['p50_ms']:,.1f} / {figures['p99_ms']:,.1f}"

    shadow = (
        f"{result.worker_shadow_backlog_images_per_s:,.0f} images/s, {result.worker_shadow_cpu_us_per_image:,.0f} µs"
        if result.worker_shadow_backlog_images_per_s is not None
        else "no second version loaded"
    )
    rows = [
        ("worker, backlog images/s", f"{result.worker_backlog_images_per_s:,.0f}"),
        ("peer (plain aiokafka loop), backlog images/s", f"{result.peer_backlog_images_per_s:,.0f}"),
        ("worker / peer throughput (target >= 0.8)", f"{result.worker_vs_peer_throughput:.2f}"),
        (
            "worker, CPU µs per image (with Triton's / its own)",
            f"{result.worker_cpu_us_per_image:,.0f} / {result.worker_process_cpu_us_per_image:,.0f}",
        ),
        (
            "peer, CPU µs per image (with Triton's / its own)",
            f"{result.peer_cpu_us_per_image:,.0f} / {result.peer_process_cpu_us_per_image:,.0f}",
        ),
        ("worker / peer CPU per image (target <= 1.5)", f"{result.worker_vs_peer_cpu:.2f}"),
        ("faust's floor (empty agent), CPU µs per event", f"{result.faust_floor_cpu_us_per_event:,.0f}"),
        (f"worker with v{result.shadow_version} in shadow", shadow),
        ("latency p50 / p99 at 100 images/s (ms)", latency(result.latency_at_100_per_s)),
        ("latency p50 / p99 at 1,000 images/s (ms)", latency(result.latency_at_1000_per_s)),
        ("latency p50 / p99 at half load (ms)", f"{result.p50_half_load_ms:,.1f} / {result.p99_half_load_ms:,.1f}"),
        ("raw Triton images/s (best of grid)", f"{result.triton_images_per_s:,.0f} {result.triton_best}"),
        (
            f"naive consumer images/s (queue delay {result.naive_queue_delay_us} µs)",
            f"{result.naive_images_per_s:,.0f} ({result.naive_cpu_us_per_image:,.0f} µs per image)",
        ),
        ("worker / naive", f"{result.pipeline_vs_naive:.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for target, met in result.targets_met().items():
        table.add_row(target, "[green]met[/]" if met else "[red]missed[/]")
    out.print(table)
