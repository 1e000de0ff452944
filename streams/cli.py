"""``inferloop``: the command line, the product's front door.

Read commands take ``--json`` and print one JSON document on stdout; human output and progress go to stderr
through rich. Exit codes: 0 success, 1 a failure the message explains, 2 a usage error, 3 ``status`` found a
component not ready.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streams.errors import InferloopError
from streams.settings import Settings, load_settings

EXIT_FAILURE = 1
EXIT_NOT_READY = 3
EXIT_REJECTED = 4

app = typer.Typer(
    name="inferloop",
    help="Streaming image inference with Kafka, Faust and Triton, closed into a learning loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


def _settings() -> Settings:
    from streams.redact import redact_secrets

    try:
        settings = load_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        _fail(f"invalid settings: {exc}")
    redact_secrets(settings.secret_values())
    return settings


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details to stderr.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@app.command()
def setup() -> None:
    """Prepare the local runtimes: resolve the Kafka jars with Maven, lay out Triton's backend folder."""
    from infra.local.kafka_broker import ensure_kafka_jars
    from infra.local.triton_server import ensure_backend_dir

    settings = _settings()
    try:
        with err.status(f"resolving Apache Kafka {settings.kafka.version} jars"):
            libs = ensure_kafka_jars(settings.cache_dir, settings.kafka.version)
        backends = ensure_backend_dir(settings.cache_dir)
    except InferloopError as exc:
        _fail(str(exc))
    err.print(f"kafka jars: {libs}\ntriton backends: {backends}", highlight=False)


@app.command()
def up(
    with_prometheus: Annotated[
        bool, typer.Option("--with-prometheus", help="Also start Prometheus scraping the stack (with the alerts).")
    ] = False,
) -> None:
    """Start the Kafka broker and Triton (and Prometheus) in the background and wait until all are ready."""
    from infra.local.stack import LocalStack

    settings = _settings()
    stack = LocalStack(settings)
    try:
        with err.status("starting the local stack") as spinner:

            def progress(message: str) -> None:
                err.log(message)
                spinner.update(message)

            statuses = stack.up(on_event=progress, with_prometheus=with_prometheus)
    except InferloopError as exc:
        _fail(f"{exc}\nNothing was left running. Fix the cause and run `inferloop up` again.")
    _print_status_table(statuses)
    err.print(f"state folder: {settings.home}    stop with: inferloop down", highlight=False)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Report, for each server, whether it runs, whether it is ready, and where it listens."""
    from infra.local.stack import LocalStack, status_as_json

    statuses = LocalStack(_settings()).status()
    if as_json:
        _emit_json(status_as_json(statuses))
    else:
        _print_status_table(statuses)
    if not all(s.ready for s in statuses):
        raise typer.Exit(EXIT_NOT_READY)


@app.command()
def down() -> None:
    """Stop every server that `inferloop up` started from this state folder."""
    from infra.local.stack import LocalStack

    stopped = LocalStack(_settings()).down(on_event=err.log)
    err.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"), highlight=False)


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h`` or ``1d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    raw = text.strip().lower()
    factor = units.get(raw[-1:])
    number = raw[:-1] if factor else raw
    try:
        seconds = float(number) * (factor or 1)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration (examples: 90s, 15m, 2h)") from None
    if seconds <= 0:
        raise typer.BadParameter("the duration must be positive")
    return seconds


class _EpochBar:
    """A rich progress bar for training epochs, on stderr."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(), console=err, transient=True,
        )  # fmt: skip
        self.task: Any = None

    def __call__(self, epoch: int, epochs: int, loss: float) -> None:
        if self.task is None:
            self.task = self.progress.add_task("train", total=epochs, loss="-")
        self.progress.update(self.task, completed=epoch, loss=f"{loss:.4f}")

    def __enter__(self) -> _EpochBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def _jobs(settings: Settings, bar: _EpochBar | None = None) -> Any:
    from streams.inference import triton_control
    from trainer.jobs import TrainerJobs

    return TrainerJobs(settings, triton_control(settings), on_event=err.log, on_epoch=bar)


@app.command()
def train(
    bootstrap: Annotated[bool, typer.Option("--bootstrap", help="Create version 1 from the dataset.")] = False,
    min_new_labels: Annotated[
        int | None, typer.Option(help="Fewest new labelled examples to retrain on (default: the setting).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="With --bootstrap: 'digits' or an ImageFolder path (root/<label>/*.png).")
    ] = None,
) -> None:
    """Train once: version 1 with --bootstrap, else fine-tune the serving version on new labels (exit 4: rejected)."""
    from trainer.errors import CandidateRejected, NotEnoughData

    settings = _settings()
    if dataset is not None:
        settings = settings.model_copy(update={"trainer": settings.trainer.model_copy(update={"dataset": dataset})})
    try:
        with _EpochBar() as bar:
            jobs = _jobs(settings, bar)
            outcome = jobs.bootstrap() if bootstrap else jobs.retrain(min_new_labels)
    except NotEnoughData as exc:
        err.print(f"nothing to train: {exc}", highlight=False)
        return
    except CandidateRejected as exc:
        message = f"{exc}\nThe candidate is recorded as rejected (see `inferloop models`); nothing else changed."
        _fail(message, EXIT_REJECTED)
    except InferloopError as exc:
        _fail(str(exc))
    m = outcome.card.metrics
    err.print(
        f"published version {outcome.version} of {settings.model.name}: holdout accuracy {m.holdout_accuracy:.4f}"
        + (f", feedback accuracy {m.feedback_accuracy:.4f}" if m.feedback_accuracy is not None else ""),
        highlight=False,
    )


@app.command()
def trainer(
    every: Annotated[str | None, typer.Option(help="Time between checks, e.g. 10m (default: the setting).")] = None,
    min_new_labels: Annotated[int | None, typer.Option(help="Retrain once this many new labels arrived.")] = None,
    max_runs: Annotated[
        int | None, typer.Option(help="Stop after this many checks (default: run until killed).")
    ] = None,
) -> None:
    """Keep retraining: check the triggers (new labels, schedule, online accuracy) every interval; publish if the
    gate accepts."""
    import signal
    import threading

    from trainer.jobs import Triggers, run_trainer_loop

    settings = _settings()
    interval_s = parse_duration(every) if every else settings.trainer.interval_s
    triggers = Triggers.from_settings(settings, min_new_labels)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    metrics = None
    if settings.trainer.metrics_port:
        from prometheus_client import CollectorRegistry, start_http_server

        from streams.metrics import TrainerMetrics

        metrics = TrainerMetrics(CollectorRegistry())
        start_http_server(settings.trainer.metrics_port, registry=metrics.registry)
    err.log(
        f"trainer: checking every {interval_s:g} s; retraining on {triggers.describe()} "
        f"(metrics on :{settings.trainer.metrics_port})"
    )
    run_trainer_loop(_jobs(settings), interval_s, triggers, stop, max_runs=max_runs, metrics=metrics)


@app.command()
def models(
    as_json: JsonFlag = False,
    online: Annotated[
        bool, typer.Option(help="Add online quality from the training log and predictions (needs Kafka).")
    ] = True,
) -> None:
    """List the model's versions (serving / retired), rejected candidates, holdout and online accuracy."""
    from trainer.repository import ModelRepository

    settings = _settings()
    try:
        rows = ModelRepository(settings.model_repository, settings.model.name).catalog()
    except InferloopError as exc:
        _fail(str(exc))
    quality: dict[int, Any] = {}
    if online:
        from streams.quality import read_online_quality

        try:
            quality = read_online_quality(settings, settings.model.name)
        except InferloopError as exc:
            err.print(f"[yellow]online quality unavailable:[/] {exc}", highlight=False)
        except Exception as exc:  # Kafka not running: the catalog is still worth showing
            err.print(f"[yellow]online quality unavailable (is Kafka up?):[/] {exc}", highlight=False)
    for r in rows:
        q = quality.get(r["version"]) if r["version"] is not None else None
        r["online"] = (
            {
                "accuracy": q.accuracy,
                "labelled": q.labelled,
                "confidence": q.confidence,
                "confidence_drift": q.confidence_drift,
            }
            if q is not None
            else None
        )
    if as_json:
        _emit_json(rows)
        return
    table = Table(title=f"model {settings.model.name} in {settings.model_repository}")
    for column in ("version", "status", "holdout acc.", "feedback acc.", "online acc. (n)", "confidence", "parent",
                   "created", "note"):  # fmt: skip
        table.add_column(column)
    colours = {"serving": "green", "retired": "dim", "rejected": "red"}
    for r in rows:
        metrics = r.get("metrics") or {}
        acc = metrics.get("holdout_accuracy")
        fb = metrics.get("feedback_accuracy")
        o = r["online"] or {}
        table.add_row(
            str(r["version"] or "-"),
            f"[{colours[r['status']]}]{r['status']}[/]",
            f"{acc:.4f}" if acc is not None else "-",
            f"{fb:.4f}" if fb is not None else "-",
            f"{o['accuracy']:.3f} ({o['labelled']})" if o.get("accuracy") is not None else "-",
            f"{o['confidence']:.3f}" if o.get("confidence") is not None else "-",
            str(r.get("parent") or "-"),
            str(r["created_at"]),
            "; ".join(r.get("reasons", [])),
        )
    err.print(table)


@app.command()
def rollback(
    to: Annotated[int | None, typer.Option(help="The version to serve (default: the previous one).")] = None,
) -> None:
    """Serve an earlier version again."""
    from streams.inference import triton_control
    from trainer.jobs import serving_options
    from trainer.publish import Publisher
    from trainer.repository import ModelRepository

    settings = _settings()
    try:
        publisher = Publisher(
            ModelRepository(settings.model_repository, settings.model.name),
            triton_control(settings),
            serving_options(settings),
        )
        version = publisher.rollback(to, on_event=err.log)
    except InferloopError as exc:
        _fail(str(exc))
    err.print(f"version {version} of {settings.model.name} is serving", highlight=False)


@app.command()
def worker(
    log_level: Annotated[str, typer.Option(help="Faust's log level.")] = "WARNING",
) -> None:
    """Run the streaming worker (Faust): image events in, predictions and dead letters out."""
    from streams.app import run_worker

    settings = _settings()
    err.log(
        f"worker: {settings.streams.images_topic} -> {settings.model.name}@{settings.triton.grpc_url} -> "
        f"{settings.streams.predictions_topic} (metrics on :{settings.streams.metrics_port})"
    )
    try:
        run_worker(settings, loglevel=log_level)
    except InferloopError as exc:
        _fail(str(exc))


@app.command()
def produce(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or globs.")],
    source: Annotated[str, typer.Option(help="Source recorded in each event.")] = "cli",
    ids_out: Annotated[Path | None, typer.Option(help="Write 'event_id<TAB>path' lines to this file.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Publish images as events; prints the event ids (or writes them with --ids-out)."""
    from rich.progress import Progress

    from streams.client import EventTooLarge, ImageProducer, expand_paths

    settings = _settings()
    refused: list[str] = []
    try:
        files = expand_paths(paths)
        if not files:
            _fail("no image files found in " + " ".join(paths))
        sent: list[tuple[str, str]] = []
        with ImageProducer(settings, source=source) as producer, Progress(console=err, transient=True) as bar:
            task = bar.add_task("publishing", total=len(files))
            for path in files:
                try:
                    sent.append((producer.publish_file(path), str(path)))
                except EventTooLarge as exc:  # one file refused, the others still go
                    refused.append(str(exc))
                bar.advance(task)
    except InferloopError as exc:
        _fail(str(exc))
    if ids_out is not None:
        ids_out.write_text("".join(f"{event_id}\t{path}\n" for event_id, path in sent))
    if as_json:
        _emit_json([{"event_id": e, "path": p} for e, p in sent])
    elif ids_out is None:
        sys.stdout.write("".join(f"{event_id}\t{path}\n" for event_id, path in sent))
    err.print(f"published {len(sent)} events to {settings.streams.images_topic}", highlight=False)
    if refused:
        for reason in refused:
            err.print(f"[bold red]refused:[/] {escape(reason)}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def predictions(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading new predictions.")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Read predictions from the beginning of the predictions topic (JSON lines with --json)."""
    from dataclasses import asdict

    from streams.client import read_predictions

    settings = _settings()
    for p in read_predictions(settings, follow=follow, limit=limit):
        if as_json:
            sys.stdout.write(json.dumps(asdict(p)) + "\n")
        else:
            sys.stdout.write(f"{p.event_id}  {p.label:>8}  {p.scores[0]:.3f}  {p.model_name} v{p.model_version}\n")
        sys.stdout.flush()


dlq_app = typer.Typer(help="Inspect and replay dead letters.", invoke_without_command=True, no_args_is_help=False)
app.add_typer(dlq_app, name="dlq")


@dlq_app.callback()
def dlq(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(help="Stop after this many.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List dead letters: reason, message, origin (JSON lines with --json)."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import asdict

    from streams.client import read_dead_letters

    for d in read_dead_letters(_settings(), limit=limit):
        if as_json:
            raw = asdict(d)
            raw["original_bytes"] = len(d.original) if d.original is not None else None
            raw.pop("original")
            sys.stdout.write(json.dumps(raw) + "\n")
        else:
            origin = f"{d.origin_topic}[{d.origin_partition}]@{d.origin_offset}"
            sys.stdout.write(f"{d.reason:<24} {d.event_id or '-':<34} {origin}  {d.message}\n")


@dlq_app.command("replay")
def dlq_replay(
    reason: Annotated[str | None, typer.Option(help="Only dead letters with this reason.")] = None,
) -> None:
    """Publish dead letters' original bytes to the images topic again (after fixing the cause)."""
    from streams.client import replay_dead_letters

    replayed, skipped = replay_dead_letters(_settings(), reason)
    err.print(f"replayed {replayed} dead letters, skipped {skipped}", highlight=False)


@app.command()
def feedback(
    event_id: Annotated[str | None, typer.Argument(help="The event the label is for.")] = None,
    label: Annotated[str | None, typer.Argument(help="Its true label.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Bulk: CSV (event_id,label[,source]) or JSON lines.")
    ] = None,
    source: Annotated[str, typer.Option(help="Who says so (kept with the example).")] = "cli",
) -> None:
    """Send ground truth: the true label of a predicted event (one, or many from a file)."""
    from streams.client import FeedbackProducer, parse_feedback_file

    settings = _settings()
    if (file is None) == (event_id is None or label is None):
        _fail("give either EVENT_ID LABEL or --file FILE", 2)
    try:
        rows = parse_feedback_file(file) if file is not None else [(event_id or "", label or "", None)]
        with FeedbackProducer(settings, source=source) as producer:
            for row_id, row_label, row_source in rows:
                producer.send(row_id, row_label, row_source)
    except InferloopError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot read {file}: {exc}")
    err.print(f"sent {len(rows)} feedback record(s) to {settings.feedback.topic}", highlight=False)


@app.command()
def joiner(
    log_level: Annotated[str, typer.Option(help="Faust's log level.")] = "WARNING",
) -> None:
    """Run the feedback joiner (Faust): feedback + predictions + images in, labelled examples out."""
    from streams.joiner import run_joiner

    settings = _settings()
    f = settings.feedback
    err.log(
        f"joiner: {f.topic} + {settings.streams.predictions_topic} -> {f.training_log_topic} "
        f"(metrics on :{f.metrics_port})"
    )
    try:
        run_joiner(settings, loglevel=log_level)
    except InferloopError as exc:
        _fail(str(exc))


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
    """The whole loop on the embedded digits: stream, drift, feedback, retrain, hot swap, recover; then a report."""
    import time as _time

    from rich.live import Live

    from infra.local.demo import Demo, DemoOptions

    settings = _settings()
    folder = report or settings.home / "demo" / _time.strftime("%Y%m%d-%H%M%S")
    options = DemoOptions(
        report_dir=folder, rate_per_s=rate, clean_s=clean_s, max_drift_s=max_drift_s, keep_running=keep_running
    )
    runner = Demo(settings, options, on_event=err.log)
    with Live(_demo_view({}), console=err, refresh_per_second=4, transient=False) as live:
        try:
            result = runner.run(view=lambda snap: live.update(_demo_view(snap)))
        except InferloopError as exc:
            live.stop()
            _fail(f"{exc}\nLogs: {folder / 'logs'}")
        except KeyboardInterrupt:
            live.stop()
            _fail("interrupted; what the demo started was stopped", 130)
    if as_json:
        _emit_json(result.__dict__)
    table = Table(title="inferloop demo: summary", show_header=False)
    table.add_column("what")
    table.add_column("value")

    def pct(value: float | None) -> str:
        return f"{value:.1%}" if value is not None else "-"

    for what, value in (
        ("duration", f"{result.duration_s:.0f} s"),
        ("baseline version", f"v{result.baseline_version}"),
        ("final serving version", f"v{result.final_serving_version}"),
        ("versions published", ", ".join(f"v{v['version']} at {v['at_s']:.0f} s" for v in result.versions_published)
         or "none"),
        ("accuracy before drift (baseline, clean)", pct(result.accuracy_before_drift)),
        ("accuracy after drift (baseline, drifted holdout)", pct(result.accuracy_after_drift)),
        ("accuracy recovered (final, drifted holdout)", pct(result.accuracy_recovered)),
        ("events / predictions / feedback", f"{result.events_sent} / {result.predictions} / {result.feedback_sent}"),
        ("latency p50 / p99", f"{result.latency_p50_ms} / {result.latency_p99_ms} ms"),
        ("report", str(folder / "report.json")),
        ("chart", str(folder / "accuracy.png")),
    ):  # fmt: skip
        table.add_row(what, value)
    err.print(table)
    recovered = result.accuracy_recovered is not None and result.accuracy_after_drift is not None
    if not recovered or result.final_serving_version <= result.baseline_version:
        _fail("the loop did not publish a recovered version in time (see the trainer log in the report folder)")


def _demo_view(snap: dict[str, Any]) -> Table:
    table = Table(title="inferloop demo (live)", show_header=True, expand=False)
    for column in ("elapsed", "phase", "sent", "predicted", "images/s", "latency p50/p99", "serving", "accuracy",
                   "online acc. (joiner)", "feedback"):  # fmt: skip
        table.add_column(column)
    if not snap:
        table.add_row(*["-"] * 10)
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
    """Measure the pipeline against raw Triton and a naive consumer, side by side (needs `inferloop up`)."""
    from streams.bench import run_bench

    settings = _settings()
    try:
        with err.status("benchmarking") as spinner:

            def progress(message: str) -> None:
                err.log(message)
                spinner.update(message)

            result = run_bench(settings, events, progress, workers)
    except InferloopError as exc:
        _fail(str(exc))
    if as_json:
        _emit_json(result.as_dict())
        return
    table = Table(title=f"inferloop bench ({result.machine}, {result.events} events, {result.workers} worker(s))")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("pipeline images/s (full load)", f"{result.pipeline_images_per_s:,.0f}"),
        ("raw Triton images/s (best of grid)", f"{result.triton_images_per_s:,.0f} {result.triton_best}"),
        ("naive consumer images/s", f"{result.naive_images_per_s:,.0f}"),
        ("pipeline / raw Triton", f"{result.pipeline_vs_triton:.2f}"),
        ("pipeline / naive", f"{result.pipeline_vs_naive:.1f}"),
        ("latency p50 / p99 at full load (ms)", f"{result.p50_ms:,.0f} / {result.p99_ms:,.0f}"),
        ("latency p50 / p99 at half load (ms)", f"{result.p50_half_load_ms:,.1f} / {result.p99_half_load_ms:,.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    for target, met in result.targets_met().items():
        table.add_row(target, "[green]met[/]" if met else "[red]missed[/]")
    err.print(table)


def _print_status_table(statuses: list[Any]) -> None:
    table = Table(title="inferloop local stack")
    for column in ("component", "running", "ready", "address", "pid"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            s.name,
            "[green]yes[/]" if s.running else "[red]no[/]",
            "[green]yes[/]" if s.ready else "[red]no[/]",
            s.address,
            str(s.pid or "-"),
        )
    err.print(table)


def main() -> None:
    """Entry point of the ``inferloop`` console script."""
    app()
