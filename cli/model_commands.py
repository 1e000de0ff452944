"""``inferloop train / trainer / models / promote / rollback``: the model's versions.

They need the ``trainer`` extra (torch, onnxruntime, Triton's client...): each command checks it before it imports
the trainer's jobs, so that ``inferloop --help`` and the light client's commands never load them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.app import EXIT_REJECTED, JsonFlag, app, emit_json, err, events_log, fail, load, out
from cli.extras import require
from inferloop.errors import InferloopError
from trainer.errors import CandidateRejected, NotEnoughData


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
    require("train", "trainer")
    from trainer.jobs import TrainerJobs, retrain
    from trainer.jobs import bootstrap as bootstrap_version

    settings = load()
    if dataset is not None:
        settings = settings.model_copy(update={"trainer": settings.trainer.model_copy(update={"dataset": dataset})})
    try:
        with _EpochBar() as bar:
            jobs = TrainerJobs.from_settings(settings, on_event=err.log, on_epoch=bar)
            outcome = bootstrap_version(jobs) if bootstrap else retrain(jobs, min_new_labels)
    except NotEnoughData as exc:
        err.print(f"nothing to train: {exc}", highlight=False)
        return
    except CandidateRejected as exc:
        fail(
            f"{exc}\nThe candidate is recorded as rejected (see `inferloop models`); nothing else changed.",
            EXIT_REJECTED,
        )
    except InferloopError as exc:
        fail(str(exc))
    m = outcome.card.metrics
    err.print(
        f"published version {outcome.version} of {settings.model.name} ({outcome.status}): "
        f"holdout accuracy {m.holdout_accuracy:.4f}"
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
    """Keep the model current: every interval, decide on the candidate in shadow (promote it once enough live
    labels show it at least as accurate, else reject it), or check the triggers (new labels, schedule, online
    accuracy) and retrain; a candidate the gates accept goes into shadow."""
    require("trainer", "trainer")
    from trainer.jobs import run_trainer

    settings = load()
    interval_s = parse_duration(every) if every else settings.trainer.interval_s
    run_trainer(settings, interval_s, min_new_labels, max_runs, on_event=events_log(settings, "inferloop.trainer"))


@app.command()
def models(
    as_json: JsonFlag = False,
    online: Annotated[
        bool, typer.Option(help="Add online quality from the training log and predictions (needs Kafka).")
    ] = True,
) -> None:
    """List the model's versions (serving / shadow / candidate / retired / rejected), whether Triton has them
    loaded, holdout accuracy, live accuracy and label counts, and the shadow evidence behind each decision."""
    require("models", "trainer")
    from trainer.jobs.catalog import model_catalog

    settings = load()
    try:
        rows = model_catalog(
            settings, online, on_warning=lambda m: err.print(f"[yellow]{escape(m)}[/]", highlight=False)
        )
    except InferloopError as exc:
        fail(str(exc))
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"model {settings.model.name} in {settings.model_repository}")
    for column in ("version", "status", "loaded", "holdout acc.", "feedback acc.", "online acc. (n)", "confidence",
                   "shadow evidence", "parent", "created", "note"):  # fmt: skip
        table.add_column(column)
    colours = {
        "serving": "green", "shadow": "cyan", "candidate": "yellow", "retired": "dim", "rejected": "red",
        "unverified": "red",
    }  # fmt: skip
    for r in rows:
        metrics = r.get("metrics") or {}
        acc = metrics.get("holdout_accuracy")
        fb = metrics.get("feedback_accuracy")
        o = r["online"] or {}
        shadow = r.get("shadow_evidence") or {}
        evidence = (
            f"{shadow.get('shadow_live_labels')} labels: {shadow.get('candidate_live_accuracy')} vs "
            f"v{shadow.get('serving_version')} {shadow.get('serving_live_accuracy')}"
            if shadow
            else "-"
        )
        table.add_row(
            str(r["version"] or "-"),
            f"[{colours[r['status']]}]{r['status']}[/]",
            "yes" if r.get("loaded") else "-",
            f"{acc:.4f}" if acc is not None else "-",
            f"{fb:.4f}" if fb is not None else "-",
            f"{o['accuracy']:.3f} ({o['labelled']})" if o.get("accuracy") is not None else "-",
            f"{o['confidence']:.3f}" if o.get("confidence") is not None else "-",
            evidence,
            str(r.get("parent") or "-"),
            str(r["created_at"]),
            "; ".join(r.get("reasons", [])),
        )
    out.print(table)


@app.command()
def rollback(
    to: Annotated[int | None, typer.Option(help="The version to serve (default: the previous one).")] = None,
) -> None:
    """Serve an earlier verified version again (by default the one promoted before): an announcement every worker
    follows within a second, with no reload when the version is still loaded."""
    require("rollback", "trainer")
    from trainer.jobs.rollback import rollback as rollback_to

    settings = load()
    try:
        version = rollback_to(settings, to, on_event=err.log)
    except InferloopError as exc:
        fail(str(exc))
    err.print(f"version {version} of {settings.model.name} is serving", highlight=False)


@app.command()
def promote(version: Annotated[int, typer.Argument(help="A verified version (see `inferloop models`).")]) -> None:
    """Make a verified version serve now (an operator's decision; versions that never passed the smoke test on
    every replica are refused)."""
    require("promote", "trainer")
    from trainer.jobs.rollback import promote as promote_version

    settings = load()
    try:
        promote_version(settings, version, on_event=err.log)
    except InferloopError as exc:
        fail(str(exc))
    err.print(f"version {version} of {settings.model.name} is serving", highlight=False)
