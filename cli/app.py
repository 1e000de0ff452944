"""The ``inferloop`` Typer app and what every command shares: the settings, the two consoles, failing, JSON.

Read commands take ``--json`` and print one JSON document on stdout; tables go to stdout too (so that
``inferloop models | grep serving`` works); progress and logs go to stderr. Exit codes: 0 success, 1 a failure
the message explains, 2 a usage error, 3 ``status`` found a component not ready, 4 the gate rejected a candidate.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import IO, Annotated, Any, NoReturn, cast

import typer
from rich.console import Console
from rich.markup import escape

from inferloop import __version__
from inferloop.errors import InferloopError, MissingExtra
from inferloop.logs import TEXT_FORMAT, JsonLineStream, log_everything_as_json, use_log_format
from inferloop.redact import key_file_secrets, redact_secrets
from inferloop.settings import Settings
from infra.local.settings import LocalSettings, load_local_settings

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
out = Console()  # tables and results
err = Console(stderr=True)  # progress, logs, errors

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
LogLevel = Annotated[str, typer.Option(help="Faust's log level.")]


def load() -> LocalSettings:
    """The settings of this command (the whole tree: any command may start or find the local stack)."""
    # masked from here on, even when the settings turn out to be invalid and are never built
    redact_secrets(os.environ.get(name) for name in LocalSettings.SECRET_VARIABLES)
    try:
        if os.environ.get("INFERLOOP_LOG_FORMAT", "").strip().lower() == "json":
            _json_console()  # before the settings are read: the error that says they are invalid is a record too
    except MissingExtra as exc:  # no JSON without python-json-logger: said in text, the one format there is
        fail(str(exc))
    try:
        settings = load_local_settings()
    except InferloopError as exc:
        fail(str(exc))
    redact_secrets(settings.secret_values())
    key_files = (settings.kafka.ssl_keyfile, settings.triton.tls_key_file, settings.triton.tls_server_key_file)
    redact_secrets(key_file_secrets(key_files))
    try:
        _use_log_format(settings)
    except MissingExtra as exc:
        fail(str(exc))
    return settings


def events_log(settings: Settings, logger: str) -> Callable[[str], None]:
    """Where a long-running command (worker, joiner, trainer) reports what it does: timestamped lines on stderr,
    or with ``INFERLOOP_LOG_FORMAT=json`` one JSON object per event (level INFO, shown at any log level, as the
    lines are), so that a log collector reads every line of the process."""
    if settings.log_format != "json":
        return err.log
    return JsonLineStream(sys.stderr, logger).emit


def _use_log_format(settings: Settings) -> None:
    """Log records, and with the JSON format everything else this process writes on stderr (progress, errors,
    warnings, an uncaught exception), in the settings' format."""
    use_log_format(settings.log_format)
    if settings.log_format == "json":
        _json_console()
        log_everything_as_json()


def _json_console() -> None:
    """``err`` (progress, events, errors) writes one JSON record per message: unwrapped, and its ``log`` without
    rich's time and source columns (which would split a message, and a secret in it, over several lines)."""
    if isinstance(err.file, JsonLineStream):
        return
    stream = JsonLineStream(sys.stderr, "inferloop.cli")
    err.file = cast("IO[str]", stream)
    err.soft_wrap = True
    err.log = lambda *objects, **_: stream.emit(" ".join(str(o) for o in objects))  # type: ignore[method-assign]


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    if isinstance(err.file, JsonLineStream):
        err.file.emit(f"error: {message}", logging.ERROR)
        raise typer.Exit(code)
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)  # unwrapped: masks match whole
    raise typer.Exit(code)


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"inferloop {__version__}\n")
        raise typer.Exit


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details to stderr.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format=TEXT_FORMAT,
    )
