"""faust's own floor for the bench: an empty agent on the worker's app and batching.

``python -m cli.bench.floor COUNT_FILE`` (settings from ``INFERLOOP_*``) consumes the images topic with the
worker's Faust configuration and batches (:func:`streams.worker.classify_agent.worker_app`, ``take_batches``) and
does nothing with the events but count them; after each batch it writes the running count to ``COUNT_FILE``, which
the bench watches. Its CPU per event is what faust costs before the worker does any work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import faust

from inferloop.settings import Settings, load_settings
from streams.worker.classify_agent import run_worker_app, take_batches, worker_app


def floor_app(settings: Settings, count_file: Path) -> faust.App:
    s = settings.streams
    app = worker_app(settings, f"{s.app_id}-floor")
    images = app.topic(s.images_topic, key_type=bytes, value_type=bytes, partitions=s.partitions)

    @app.agent(images, concurrency=1)
    async def empty(stream: faust.StreamT[bytes]) -> None:
        seen = 0
        async for batch in take_batches(settings, stream):
            seen += len(batch.events)
            batch.ack()
            count_file.write_text(str(seen))  # noqa: ASYNC240 - a few bytes per batch

    return app


if __name__ == "__main__":
    settings = load_settings()
    run_worker_app(settings, floor_app(settings, Path(sys.argv[1])))
