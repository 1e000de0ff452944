"""A client that is not Python: ``kcat`` (librdkafka) publishes images as plain Kafka records (the key the event id,
the value the file's bytes, metadata in headers), sends feedback as JSON, and reads predictions and dead letters
back, against the real broker, worker, joiner and Triton. The commands are those docs/client.md and the README
show; every JSON record read back is checked against its published schema (docs/schemas)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, PngImagePlugin

from inferloop.kafka.producers import send_feedback
from inferloop.kafka.readers import read_training_log
from inferloop.kafka.topics import ensure_topics
from infra.local.worker import JoinerProcess
from streams.joiner.join_step import partition_of
from tests.helpers import wait_for
from tests.integration.conftest import Stream
from tests.schemas import assert_valid, headers_document
from trainer.data import digits_images, png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KCAT = shutil.which("kcat")


def kcat(bootstrap: str, *args: str, stdin: bytes | None = None) -> str:
    """Run kcat against ``bootstrap``; its stdout. Fails the test, with kcat's stderr, when it fails."""
    assert KCAT, "kcat is not installed: `make setup` installs it (Debian package kcat)"
    result = subprocess.run([KCAT, "-b", bootstrap, *args], input=stdin, capture_output=True, timeout=60)
    assert result.returncode == 0, f"kcat {' '.join(args)} failed: {result.stderr.decode(errors='replace')}"
    return result.stdout.decode()


def consume(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of ``topic`` so far, read as docs/client.md reads them (``-f '%k %s\\n'``): key and payload."""
    out = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k %s\n")
    return [dict(zip(("key", "payload"), line.split(" ", 1), strict=True)) for line in out.splitlines() if line]


def padded_png(png: bytes) -> bytes:
    """The same image with an 8 KiB text chunk that decoders ignore: a record every codec shrinks, so that
    librdkafka compresses it (it sends a batch as it is when compression would not make it smaller)."""
    buffer = io.BytesIO()
    info = PngImagePlugin.PngInfo()
    info.add_text("padding", "inferloop " * 820)
    Image.open(io.BytesIO(png)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_kcat_publishes_images_and_feedback_and_reads_predictions_and_dead_letters(stream: Stream) -> None:
    """kcat publishes three digit PNG files inline (content-type, source and meta-camera headers; compressed with
    gzip, lz4 and zstd, as other clients may send them), one by reference (an empty value and an image-uri
    header), one without its content-type header (snappy) and one with an unknown schema-version. The worker
    predicts the four good ones (the right digit, their source and timestamp kept) and dead-letters the two bad
    ones with missing_header and unknown_schema_version, keeping their headers; kcat reads both topics back.
    Feedback sent by kcat as JSON (with the Java client's murmur2 partitioner) is joined and logged with its
    label; feedback sent with kcat's default partitioner, placed elsewhere than its prediction, is dead-lettered
    as misplaced_feedback rather than left waiting. Every prediction, dead letter (the worker's and the
    joiner's), feedback record (inferloop's producer's), image-event headers (kcat's) and training-log header read
    back validates against its schema."""
    settings = stream.settings
    bootstrap = settings.kafka.bootstrap
    s = settings.streams
    folder = stream.tmp_path / "images"
    folder.mkdir()
    stream.env["INFERLOOP_STREAMS__IMAGE_URI_ROOTS"] = json.dumps([str(folder)])
    ensure_topics(settings)
    stream.start_worker()
    stream.start(JoinerProcess)
    images, labels = digits_images()
    started_ms = int(time.time() * 1000)
    files: dict[str, tuple[Path, str]] = {}
    for n in range(4):
        event_id = uuid.uuid4().hex
        path = folder / f"digit-{n}.png"
        path.write_bytes(padded_png(png_bytes(images[n])))
        files[event_id] = (path, str(int(labels[n])))
    inline, (by_reference,) = list(files)[:3], list(files)[3:]

    for event_id, codec in zip(inline, ("gzip", "lz4", "zstd"), strict=True):  # the README's command, compressed too
        path = files[event_id][0]
        kcat(bootstrap, "-P", "-t", s.images_topic, "-k", event_id, "-z", codec, "-H", "content-type=image/png",
             "-H", "source=kcat", "-H", "meta-camera=north", str(path))  # fmt: skip
    uri = files[by_reference][0].as_uri()
    # an empty value: a line holding the key and its delimiter alone (kcat sends no record for an empty file)
    kcat(bootstrap, "-P", "-t", s.images_topic, "-K:", "-H", "content-type=image/png", "-H", f"image-uri={uri}",
         stdin=f"{by_reference}:\n".encode())  # fmt: skip
    no_type, future_version = uuid.uuid4().hex, uuid.uuid4().hex
    digit = str(files[inline[0]][0])
    kcat(bootstrap, "-P", "-t", s.images_topic, "-k", no_type, "-z", "snappy", "-H", "source=kcat", digit)
    kcat(bootstrap, "-P", "-t", s.images_topic, "-k", future_version, "-H", "content-type=image/png",
         "-H", "schema-version=9", digit)  # fmt: skip

    def predicted() -> dict[str, dict[str, Any]] | None:
        got = {r["key"]: r for r in consume(bootstrap, s.predictions_topic)}
        return got if set(files) <= set(got) else None

    predictions = wait_for(predicted, 120, "kcat to read the four predictions")
    assert set(predictions) == set(files), "a bad record was predicted, or a prediction was duplicated"
    for event_id, record in predictions.items():
        document = json.loads(record["payload"])
        assert_valid("prediction", document)
        assert document["labels"][0] == files[event_id][1], (event_id, document)
        assert document["source"] == ("kcat" if event_id in inline else "")
        assert started_ms <= document["produced_at_ms"] <= document["received_at_ms"], "the record's timestamp"

    def dead() -> dict[str, dict[str, Any]] | None:
        got = {r["key"]: r for r in consume(bootstrap, s.dead_letter_topic)}
        return got if {no_type, future_version} <= set(got) else None

    letters = {k: json.loads(r["payload"]) for k, r in wait_for(dead, 60, "kcat to read two dead letters").items()}
    assert set(letters) == {no_type, future_version}
    for letter in letters.values():
        assert_valid("dead-letter", letter)
    assert letters[no_type]["reason"] == "missing_header" and "content-type" in letters[no_type]["message"]
    assert letters[future_version]["reason"] == "unknown_schema_version"
    kept = {h["key"] for h in letters[future_version]["original_headers"]}
    assert kept == {"content-type", "schema-version"}, "the dead letter keeps the original record's headers"

    # feedback: one JSON document per line, keyed by event id, partitioned as the Java client does
    chosen = inline[0]
    feedback = {"schema_version": 1, "event_id": chosen, "label": files[chosen][1], "at_ms": int(time.time() * 1000)}
    kcat(bootstrap, "-P", "-t", settings.feedback.topic, "-k", chosen, "-X", "partitioner=murmur2_random",
         stdin=json.dumps(feedback).encode() + b"\n")  # fmt: skip
    # kcat's own default partitioner (CRC32) puts this one elsewhere than its prediction: dead-lettered, not lost
    stray = next(
        e
        for e in (uuid.uuid4().hex for _ in range(100))
        if zlib.crc32(e.encode()) % s.partitions != partition_of(e.encode(), s.partitions)
    )
    stray_feedback = {**feedback, "event_id": stray}
    kcat(bootstrap, "-P", "-t", settings.feedback.topic, "-k", stray, stdin=json.dumps(stray_feedback).encode() + b"\n")
    # and one sent by inferloop's own producer: its record is checked against the schema as written
    send_feedback(settings, [(inline[1], files[inline[1]][1], "reviewer")])
    sent = {r["key"]: json.loads(r["payload"]) for r in consume(bootstrap, settings.feedback.topic)}
    assert set(sent) == {chosen, stray, inline[1]}
    assert_valid("feedback", sent[inline[1]])
    # kcat's own records, read back by kcat (kafka-python, the light client's library, has no lz4/zstd/snappy):
    # key and headers (name=value, comma-separated; none of these values holds a comma)
    out = kcat(bootstrap, "-C", "-t", s.images_topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%h\n")
    rows = [line.split("\t", 1) for line in out.splitlines() if line.strip()]
    images_sent = {key: text for key, text in rows if key in files}
    assert len(images_sent) == 4
    for text in images_sent.values():
        headers = [(name, value.encode()) for name, value in (pair.split("=", 1) for pair in text.split(","))]
        assert_valid("image-event-headers", headers_document(headers))

    def misplaced() -> dict[str, Any] | None:
        got = [json.loads(r["payload"]) for r in consume(bootstrap, s.dead_letter_topic) if r["key"] == stray]
        return got[0] if got else None

    letter = wait_for(misplaced, 60, "the joiner to dead-letter the misplaced feedback")
    assert_valid("dead-letter", letter)
    assert letter["reason"] == "misplaced_feedback" and letter["origin_topic"] == settings.feedback.topic

    def logged() -> list[Any] | None:
        got = [(r, e) for r, e in read_training_log(settings, idle_timeout_s=0.5) if e.event_id == chosen]
        return got or None

    ((record, example),) = wait_for(logged, 90, "the kcat feedback joined and logged")
    assert (example.label, example.image) == (files[chosen][1], files[chosen][0].read_bytes())
    headers = dict(record.headers)
    assert headers["content-type"] == b"image/png"
    assert_valid("training-example", json.loads(headers["training-example"]))
