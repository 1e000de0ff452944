"""``inferloop worker / joiner``: the Faust apps (the ``worker`` extra).

Apart from the light client's commands (:mod:`cli.stream_commands`), so that those import nothing of faust, aiokafka,
Triton's client or numpy, even lazily (``lint-imports`` checks it): each command here checks its extra, then imports
its app.
"""

from __future__ import annotations

from collections.abc import Callable

from cli.app import LogLevel, app, events_log, fail, load
from cli.extras import require
from inferloop.errors import InferloopError
from inferloop.settings import Settings


def _run_app(run: Callable[[Settings, str], None], banner: str, log_level: str) -> None:
    """Run one of the Faust apps in the foreground, with its banner on stderr."""
    settings = load()
    events_log(settings, "inferloop.cli")(banner.format(s=settings))
    try:
        run(settings, log_level)
    except InferloopError as exc:
        fail(str(exc))


@app.command()
def worker(log_level: LogLevel = "WARNING") -> None:
    """Run the streaming worker (Faust): image events in, predictions and dead letters out."""
    require("worker", "worker")
    from streams.worker.classify_agent import run_worker

    banner = "worker: {s.streams.images_topic} -> {s.model.name}@{s.triton.grpc_url} -> {s.streams.predictions_topic}"
    _run_app(run_worker, banner + " (metrics on :{s.streams.metrics_port})", log_level)


@app.command()
def joiner(log_level: LogLevel = "WARNING") -> None:
    """Run the feedback joiner (Faust): feedback + predictions + images in, labelled examples out."""
    require("joiner", "worker")
    from streams.joiner.join_agent import run_joiner

    banner = (
        "joiner: {s.feedback.topic} + {s.feedback.trusted_topic} (trusted) + {s.streams.predictions_topic} "
        "-> {s.feedback.training_log_topic}"
    )
    _run_app(run_joiner, banner + " (metrics on :{s.feedback.metrics_port})", log_level)
