"""``inferloop``: the command line, the product's front door.

Read commands take ``--json`` and print one JSON document on stdout; human output and progress go to stderr
through rich. Exit codes: 0 success, 1 a failure the message explains, 2 a usage error, 3 ``status`` found a
component not ready.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from streams.errors import InferloopError
from streams.settings import Settings, load_settings

EXIT_FAILURE = 1
EXIT_NOT_READY = 3

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
    try:
        return load_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        _fail(f"invalid settings: {exc}")


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
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
def up() -> None:
    """Start the Kafka broker and Triton in the background and wait until both are ready."""
    from infra.local.stack import LocalStack

    settings = _settings()
    stack = LocalStack(settings)
    try:
        with err.status("starting the local stack") as spinner:

            def progress(message: str) -> None:
                err.log(message)
                spinner.update(message)

            statuses = stack.up(on_event=progress)
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
