"""``inferloop produce / predictions / feedback / dlq / topics``: the light client's commands.

They run on the core install (``pip install inferloop``: kafka-python, pydantic, typer and rich), so this module
imports nothing heavier, not even inside a function (``lint-imports`` checks it); the Faust apps' commands are in
:mod:`cli.stream_app_commands`.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from cli.app import EXIT_FAILURE, JsonFlag, app, emit_json, err, fail, load, out
from inferloop.errors import InferloopError
from inferloop.events import Prediction, encode_dead_letter
from inferloop.kafka.producers import expand_paths, parse_feedback_file, publish_files, send_feedback
from inferloop.kafka.readers import read_dead_letters, read_predictions, replay_dead_letters
from inferloop.kafka.subscriber import PredictionSubscriber
from inferloop.kafka.topics import ensure_topics, existing_topics, restrict_trusted_feedback, topic_specs


@app.command()
def produce(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders (recursive) or globs.")],
    source: Annotated[str, typer.Option(help="The source header of each event.")] = "cli",
    ids_out: Annotated[Path | None, typer.Option(help="Write 'event_id<TAB>path' lines to this file.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Publish images as events (key the event id, value the file's bytes, content-type, source and meta-filename
    headers: docs/events.md); prints the event ids (or writes them with --ids-out)."""
    settings = load()
    try:
        files = expand_paths(paths)
        if not files:
            fail("no image files found in " + " ".join(paths))
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("publishing", total=len(files))
            published = publish_files(settings, files, source, on_file=lambda: bar.advance(task))
    except InferloopError as exc:
        fail(str(exc))
    sent = [(event_id, str(path)) for event_id, path in published.sent]
    if ids_out is not None:
        ids_out.write_text("".join(f"{event_id}\t{path}\n" for event_id, path in sent))
    if as_json:
        emit_json([{"event_id": e, "path": p} for e, p in sent])
    elif ids_out is None:
        sys.stdout.write("".join(f"{event_id}\t{path}\n" for event_id, path in sent))
    err.print(f"published {len(sent)} events to {settings.streams.images_topic}", highlight=False)
    if published.refused:
        for refusal in published.refused:
            err.print(f"[bold red]refused:[/] {escape(str(refusal))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def predictions(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep reading new predictions.")] = False,
    limit: Annotated[int | None, typer.Option(help="Stop after this many.")] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            "-g",
            help="Read as a member of this consumer group: from where the group's last run stopped (the beginning "
            "the first time), committing what was printed; without --follow, stop after 2 s with nothing new.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Read predictions from the beginning of the predictions topic (JSON lines with --json), or with --group from
    where the group stopped."""
    settings = load()
    try:
        if group is None:
            _print_predictions(read_predictions(settings, follow=follow, limit=limit), as_json)
            return
        with PredictionSubscriber(settings, group) as subscriber:
            _print_predictions(subscriber.follow(idle_timeout_s=None if follow else 2.0, limit=limit), as_json)
            skipped = sorted(subscriber.skipped.items())
    except InferloopError as exc:
        fail(str(exc))
    for reason, count in skipped:
        err.print(f"[yellow]skipped {count} record(s) that are not predictions ({reason})[/]", highlight=False)


def _print_predictions(found: Iterable[Prediction], as_json: bool) -> None:
    """Each prediction as one line, flushed: a prediction counts as read (and, with a group, is committed) once
    printed."""
    for p in found:
        if as_json:
            sys.stdout.write(json.dumps(asdict(p)) + "\n")
        else:
            sys.stdout.write(f"{p.event_id}  {p.label:>8}  {p.scores[0]:.3f}  {p.model_name} v{p.model_version}\n")
        sys.stdout.flush()


topics_app = typer.Typer(help="The topics inferloop uses: list them, create the missing.", invoke_without_command=True)
app.add_typer(topics_app, name="topics")


@topics_app.callback()
def topics(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the topics inferloop needs, their partitions and configs, and whether each exists."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load()
    try:
        existing = existing_topics(settings)
    except InferloopError as exc:
        fail(str(exc))
    specs = topic_specs(settings)
    if as_json:
        emit_json(
            [
                {"topic": t.name, "partitions": t.partitions, "exists": t.name in existing, "configs": t.configs}
                for t in specs
            ]
        )
        return
    table = Table(title=f"topics (replication factor {settings.kafka.replication_factor}; -1: the broker's default)")
    for column in ("topic", "partitions", "exists", "configs it is created with"):
        table.add_column(column, no_wrap=column == "topic")
    for t in specs:
        configs = ", ".join(f"{k}={v}" for k, v in sorted(t.configs.items()))
        table.add_row(t.name, str(t.partitions), "yes" if t.name in existing else "[red]no[/]", configs)
    out.print(table)


@topics_app.command("create")
def topics_create() -> None:
    """Create the missing topics (whatever kafka.create_topics says): for a Helm hook or a first deployment."""
    settings = load()
    try:
        created = ensure_topics(settings, create=True)
    except InferloopError as exc:
        fail(str(exc))
    err.print(f"created: {', '.join(created) if created else 'nothing (all exist)'}", highlight=False)


@topics_app.command("trust")
def topics_trust(
    writer: Annotated[
        list[str], typer.Option("--writer", help="A principal (User:<name>) that may write trusted feedback.")
    ],
    reader: Annotated[
        list[str] | None, typer.Option("--reader", help="A principal that reads it: the joiner's (repeatable).")
    ] = None,
) -> None:
    """Restrict the trusted feedback topic with Kafka ACLs: only --writer principals may write it (needs a
    cluster with an authorizer, and a super user's credentials)."""
    settings = load()
    try:
        created = restrict_trusted_feedback(settings, writer, reader or [])
    except InferloopError as exc:
        fail(str(exc))
    for line in created:
        out.print(f"allowed: {line}", highlight=False)


dlq_app = typer.Typer(help="Inspect and replay dead letters.", invoke_without_command=True, no_args_is_help=False)
app.add_typer(dlq_app, name="dlq")


@dlq_app.callback()
def dlq(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(help="Stop after this many.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List dead letters: reason, message, origin (JSON lines with --json: each as on the topic, the original
    value's size in place of its bytes)."""
    if ctx.invoked_subcommand is not None:
        return
    unreadable: Counter[str] = Counter()
    for d in read_dead_letters(load(), unreadable, limit=limit):
        if as_json:
            raw = json.loads(encode_dead_letter(d))  # as on the topic (docs/schemas/dead-letter.schema.json)
            raw["original_bytes"] = len(d.original) if d.original is not None else None
            raw.pop("original")  # its size rather than its base64
            sys.stdout.write(json.dumps(raw) + "\n")
        else:
            origin = f"{d.origin_topic}[{d.origin_partition}]@{d.origin_offset}"
            sys.stdout.write(f"{d.reason:<24} {d.event_id or '-':<34} {origin}  {d.message}\n")
    if unreadable:
        err.print(f"skipped {sum(unreadable.values())} records that are not dead letters", highlight=False)


@dlq_app.command("replay")
def dlq_replay(
    reason: Annotated[str | None, typer.Option(help="Only dead letters with this reason.")] = None,
) -> None:
    """Publish dead letters' original bytes again (after fixing the cause): to the images or open feedback topic."""
    try:
        replayed, skipped = replay_dead_letters(load(), reason)
    except InferloopError as exc:
        fail(str(exc))
    err.print(f"replayed {replayed} dead letters, skipped {skipped}", highlight=False)


@app.command()
def feedback(
    event_id: Annotated[str | None, typer.Argument(help="The event the label is for.")] = None,
    label: Annotated[str | None, typer.Argument(help="Its true label.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Bulk: CSV (event_id,label[,source]) or JSON lines.")
    ] = None,
    source: Annotated[str, typer.Option(help="Who says so (kept with the example).")] = "cli",
    trusted: Annotated[
        bool,
        typer.Option(
            "--trusted",
            help="Send to the trusted feedback topic (its labels are evidence for the gate and promotion; the "
            "broker lets only authorised principals write it).",
        ),
    ] = False,
) -> None:
    """Send ground truth: the true label of a predicted event (one, or many from a file)."""
    settings = load()
    if (file is None) == (event_id is None or label is None):
        fail("give either EVENT_ID LABEL or --file FILE", 2)
    try:
        rows = parse_feedback_file(file) if file is not None else [(event_id or "", label or "", None)]
        sent = send_feedback(settings, rows, source, trusted)
    except InferloopError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {file}: {exc}")
    topic = settings.feedback.trusted_topic if trusted else settings.feedback.topic
    err.print(f"sent {sent} feedback record(s) to {topic}", highlight=False)
