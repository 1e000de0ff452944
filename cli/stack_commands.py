"""``inferloop setup / up / status / down``: the local stack (Kafka, Triton, optionally Prometheus).

They need the ``local`` extra (nvidia-pytriton's Triton, PyYAML for Prometheus' config): each command checks it,
then imports :mod:`infra.local.stack`, so that ``inferloop --help`` and the light client's commands never do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cli.app import EXIT_NOT_READY, JsonFlag, app, emit_json, err, fail, load, out
from cli.extras import require
from inferloop.errors import InferloopError

if TYPE_CHECKING:
    from infra.local.stack import ComponentStatus


@app.command()
def setup() -> None:
    """Prepare the local runtimes: resolve the Kafka jars with Maven, lay out Triton's backend folder."""
    require("setup", "local")
    from infra.local.stack import prepare_runtimes

    settings = load()
    try:
        with err.status(f"resolving Apache Kafka {settings.kafka.version} jars"):
            libs, backends = prepare_runtimes(settings)
    except InferloopError as exc:
        fail(str(exc))
    err.print(f"kafka jars: {libs}\ntriton backends: {backends}", highlight=False)


@app.command()
def up(
    with_prometheus: Annotated[
        bool, typer.Option("--with-prometheus", help="Also start Prometheus scraping the stack (with the alerts).")
    ] = False,
) -> None:
    """Start the Kafka broker and Triton (and Prometheus) in the background and wait until all are ready."""
    require("up", "local")
    from infra.local.stack import LocalStack

    settings = load()
    try:
        with err.status("starting the local stack") as spinner:

            def progress(message: str) -> None:
                err.log(message)
                spinner.update(message)

            statuses = LocalStack(settings).up(on_event=progress, with_prometheus=with_prometheus)
    except InferloopError as exc:
        fail(f"{exc}\nNothing was left running. Fix the cause and run `inferloop up` again.")
    print_status_table(statuses)
    err.print(f"state folder: {settings.home}    stop with: inferloop down", highlight=False)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Report, for each server, whether it runs, whether it is ready, and where it listens."""
    require("status", "local")
    from infra.local.stack import LocalStack, status_as_json

    statuses = LocalStack(load()).status()
    if as_json:
        emit_json(status_as_json(statuses))
    else:
        print_status_table(statuses)
    if not all(s.ready for s in statuses):
        raise typer.Exit(EXIT_NOT_READY)


@app.command()
def down() -> None:
    """Stop every server that `inferloop up` started from this state folder."""
    require("down", "local")
    from infra.local.stack import LocalStack

    stopped = LocalStack(load()).down(on_event=err.log)
    err.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"), highlight=False)


def print_status_table(statuses: list[ComponentStatus]) -> None:
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
    out.print(table)
