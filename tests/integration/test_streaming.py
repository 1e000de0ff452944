"""Streaming inference end to end: real Kafka, real Triton, the default model, the worker as a process."""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from PIL import Image

from inferloop.events import DeadLetter, ImageEvent, encode_image_event
from inferloop.kafka.options import kafka_options
from inferloop.kafka.readers import read_dead_letters
from inferloop.kafka.topics import join_changelog_topic
from infra.local.process import free_ports, kill_pid, pid_alive, start, stop_pid
from infra.local.triton_server import TritonServer
from tests.conftest import SERVER_LOGS
from tests.helpers import inferloop, settings_from_env, wait_for
from tests.integration.conftest import (
    Stream,
    assert_each_event_once_or_identically,
    copy_bootstrapped_repository,
    labelled_digits,
    publish,
)
from trainer.data import digits_images, png_bytes

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_thousand_images_become_a_thousand_distinct_predictions(stream: Stream) -> None:
    stream.start_worker()
    items = labelled_digits(1000)
    publish(stream.settings, items)
    ids = {event_id for event_id, _, _ in items}
    predictions = stream.wait_predicted(ids)
    assert len(predictions) == 1000, "a prediction was duplicated"
    assert {p.event_id for p in predictions} == ids
    assert {(p.model_name, p.model_version) for p in predictions} == {("digits", 1)}
    truth = {event_id: label for event_id, _, label in items}
    correct = sum(p.label == truth[p.event_id] for p in predictions)
    assert correct >= 950, f"only {correct} of 1000 correct"
    first = predictions[0]
    assert len(first.labels) == 3 and first.scores == sorted(first.scores, reverse=True)
    assert first.produced_at_ms <= first.received_at_ms <= first.predicted_at_ms
    assert list(read_dead_letters(stream.settings, idle_timeout_s=0.5)) == []


BadCase = tuple[str, bytes | None, bytes, tuple[tuple[str, bytes], ...]]


def bad_events(tmp_path: Path) -> list[BadCase]:
    """(expected reason, key, value, headers) of records that break the image-event convention or carry bad
    images; the key is the event id the dead letter should carry, where it is one."""
    digit = png_bytes(digits_images()[0][0])
    big = png_bytes(np.random.default_rng(0).integers(0, 255, (400, 400), dtype=np.uint8))  # ~160 kB of noise
    bomb = io.BytesIO()
    Image.new("L", (3000, 3000)).save(bomb, format="PNG")  # 9 Mpx in a few kB
    jpeg = io.BytesIO()
    Image.fromarray(digits_images()[0][0]).save(jpeg, format="JPEG")
    tiff = io.BytesIO()
    Image.fromarray(digits_images()[0][0]).save(tiff, format="TIFF")
    png = ("content-type", b"image/png")
    cases: list[BadCase] = []

    def event(reason: str, image: bytes, *headers: tuple[str, bytes], key: bytes | None = None) -> None:
        cases.append((reason, uuid.uuid4().hex.encode() if key is None else key, image, headers))

    event("missing_image", b"", png)
    cases.append(("missing_key", None, digit, (png,)))
    event("bad_key", digit, png, key=b"\xff\xfe not UTF-8")
    event("bad_key", digit, png, key=b"k" * 300)
    event("missing_header", digit)
    event("missing_header", digit, ("content-type", b""))
    event("unknown_schema_version", digit, png, ("schema-version", b"9"))
    event("bad_header", digit, png, ("Content-Type", b"image/png"))  # twice, in another case
    event("bad_header", digit, png, ("source", b"\xff\xfe"))
    event("bad_header", digit, png, ("source", b"s" * 300))
    event("bad_header", digit, png, *((f"meta-{n}", b"v") for n in range(33)))
    event("bad_header", digit, png, ("image-uri", b"file:///tmp/x.png"))  # inline and by reference at once
    event("disallowed_content_type", digit, ("content-type", b"image/tiff"))
    event("not_an_image", b"hello, I am text pretending to be a PNG", png)
    event("not_an_image", tiff.getvalue(), png)
    legacy = b"ILE\x01" + struct.pack(">I", 2) + b"{}" + digit  # the retired frame: its bytes are not an image
    event("not_an_image", legacy, png)
    event("undecodable", digit[: len(digit) // 2], png)
    event("content_type_mismatch", jpeg.getvalue(), png)
    event("decompression_bomb", bomb.getvalue(), png)
    event("too_large", big, png)
    # Images by reference: only the folder named by INFERLOOP_STREAMS__IMAGE_URI_ROOTS may be read.
    allowed, secret = uri_folders(tmp_path)
    for reason, uri in [
        ("uri_unreadable", (allowed / "missing.png").as_uri()),
        ("uri_unreadable", (allowed / "pipe.png").as_uri()),  # a FIFO: would block a plain open()
        ("uri_not_allowed", secret.as_uri()),  # a valid digit, outside the folder
        ("uri_not_allowed", f"file://{allowed}/../{secret.name}"),
        ("uri_not_allowed", (allowed / "link.png").as_uri()),  # a symlink to the secret
        ("uri_not_allowed", "http://127.0.0.1:9/metadata"),
        ("uri_not_allowed", f"simplecache::file://{allowed}/good.png"),
    ]:
        event(reason, b"", png, ("image-uri", uri.encode()))
    return cases


def uri_folders(tmp_path: Path) -> tuple[Path, Path]:
    """An allowed image folder (a digit, a FIFO, a symlink leading out) and a readable digit outside it."""
    allowed = tmp_path / "shared-images"
    if not allowed.exists():
        allowed.mkdir()
        secret = tmp_path / "secret.png"
        secret.write_bytes(png_bytes(digits_images()[0][3]))
        (allowed / "good.png").write_bytes(png_bytes(digits_images()[0][4]))
        os.mkfifo(allowed / "pipe.png")
        (allowed / "link.png").symlink_to(secret)
    return allowed, tmp_path / "secret.png"


@pytest.mark.fuzz
def test_bad_events_are_dead_lettered_with_their_reason_and_the_worker_carries_on(stream: Stream) -> None:
    """27 hand-made bad records (14 reasons) through the real worker, mixed with good ones: no key, a key that is
    not UTF-8 or too long, missing, empty, duplicated, non-UTF-8 or over-long headers, an unknown schema version,
    33 metadata headers, an image inline and by reference at once, an empty value, the retired binary frame, TIFF,
    text, truncated images, a content-type mismatch, a decompression bomb, an oversized image, and image URIs that
    are missing, a FIFO, outside the allowed folder, traversing or symlinking out of it, HTTP, or chained: each is
    dead-lettered with its reason and its original key, value and headers, an allowed URI is predicted, the
    worker carries on, and a replayed dead letter comes back exactly (the same reason, not a missing header)."""
    stream.env["INFERLOOP_STREAMS__MAX_IMAGE_BYTES"] = "100000"
    stream.env["INFERLOOP_LOG_FORMAT"] = "json"  # as the chart runs it: checked at the end
    bad = bad_events(stream.tmp_path)
    allowed, _ = uri_folders(stream.tmp_path)
    stream.env["INFERLOOP_STREAMS__IMAGE_URI_ROOTS"] = json.dumps([str(allowed)])
    worker = stream.start_worker()
    good = labelled_digits(30)
    by_uri = uuid.uuid4().hex  # an allowed URI is read and predicted
    uri_event = encode_image_event(ImageEvent(by_uri, "image/png", image_uri=(allowed / "good.png").as_uri()))
    from kafka import KafkaProducer

    goods = [encode_image_event(ImageEvent(e, "image/png", data)) for e, data, _ in good]
    producer = KafkaProducer(bootstrap_servers=stream.settings.kafka.bootstrap, acks="all")
    topic = stream.settings.streams.images_topic
    sent: dict[int, BadCase] = {}  # by offset: two bad records have no usable key
    for n in range(max(len(bad), len(goods))):
        if n < len(bad):
            reason, key, value, headers = bad[n]
            offset = producer.send(topic, key=key, value=value, headers=list(headers), partition=0).get(30).offset
            sent[offset] = bad[n]
        if n < len(goods):
            m = goods[n]
            producer.send(topic, key=m.key, value=m.value, headers=list(m.headers), partition=0)
    producer.send(topic, key=uri_event.key, value=uri_event.value, headers=list(uri_event.headers))
    producer.flush()
    producer.close()

    predicted = stream.wait_predicted({e for e, _, _ in good} | {by_uri})
    assert next(p for p in predicted if p.event_id == by_uri).label == str(digits_images()[1][4])

    def all_dead_letters() -> list[DeadLetter] | None:
        letters = list(read_dead_letters(stream.settings, idle_timeout_s=0.5))
        return letters if len(letters) >= len(bad) else None

    letters = wait_for(all_dead_letters, 60, f"{len(bad)} dead letters")
    assert len(letters) == len(bad)
    assert {(letter.origin_partition, letter.origin_offset) for letter in letters} == {(0, o) for o in sent}
    for letter in letters:
        reason, key, value, headers = sent[letter.origin_offset]
        assert letter.reason == reason, (letter.reason, reason, letter.message)
        assert letter.message
        assert letter.origin_topic == topic
        try:
            expected_id = key.decode()[:200] if key else None  # a too-long key is cut, one not UTF-8 left out
        except UnicodeDecodeError:
            expected_id = None
        assert letter.event_id == expected_id, letter
        if len(value) <= stream.settings.streams.dead_letter_max_original_bytes:
            assert (letter.original, letter.original_key, letter.original_headers) == (value, key, headers)
    assert len(bad) >= 20 and len({r for r, *_ in bad}) >= 14, "about 20 kinds of bad input, many reasons"

    # Still alive and still predicting.
    assert pid_alive(stream.workers[0])
    late = labelled_digits(5, offset=500)
    publish(stream.settings, late)
    stream.wait_predicted({e for e, _, _ in late})
    assert stream.metric(worker, "inferloop_dead_letters_total") == len(bad)

    # The CLI lists them, and replays the ones asked for (still damaged: they come back with the same reason).
    listed = inferloop(stream.env, "dlq", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(line)["reason"] for line in listed.stdout.splitlines()) == sorted(r for r, *_ in bad)
    replay = inferloop(stream.env, "dlq", "replay", "--reason", "undecodable")
    assert replay.returncode == 0 and "replayed 1 dead letters" in replay.stderr, replay.stderr
    wait_for(lambda: stream.metric(worker, "inferloop_dead_letters_total", reason="undecodable") == 2, 60, "the replay")

    # INFERLOOP_LOG_FORMAT=json: every line the worker wrote is one JSON object, its banner and faust's included
    # (the launcher's own "==== inferloop: starting worker ... ====" marker aside)
    lines = [line for line in worker.log_path.read_text().splitlines() if line.strip() and not line.startswith("====")]
    records = [json.loads(line) for line in lines]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert records[0]["logger"] == "inferloop.cli" and records[0]["message"].startswith("worker: ")


@pytest.mark.faults
def test_triton_down_for_ten_seconds_loses_nothing(
    stream: Stream, bootstrapped: dict[str, str], triton_backends: Path, tmp_path: Path
) -> None:
    """Triton SIGKILLed mid-stream (its whole process group, backend stubs included), down for 10 s, then
    restarted: the worker retries with back-off, holding its batch; all 400 events predicted, none
    dead-lettered."""
    # A Triton of this test's own, serving a copy of the bootstrapped repository.
    repository = copy_bootstrapped_repository(bootstrapped, tmp_path / "models")
    http, grpc, metrics = free_ports(3)

    def server() -> TritonServer:
        return TritonServer(
            model_repository=repository,
            backend_dir=triton_backends,
            log_path=tmp_path / "triton-own.log",
            http_port=http,
            grpc_port=grpc,
            metrics_port=metrics,
            load_models=("digits",),
        )

    SERVER_LOGS["triton (own)"] = tmp_path / "triton-own.log"
    shm_before = set(Path("/dev/shm").iterdir())
    triton = start(server())
    stream.env |= {"INFERLOOP_TRITON__GRPC_PORT": str(grpc), "INFERLOOP_TRITON__HTTP_PORT": str(http)}
    worker = stream.start_worker()
    first, second = labelled_digits(200), labelled_digits(200, offset=200)
    publish(stream.settings, first)
    stream.wait_predicted({e for e, _, _ in first})

    kill_pid(triton.pid)
    for region in set(Path("/dev/shm").iterdir()) - shm_before:  # what the killed server's python backend left
        region.unlink(missing_ok=True)
    publish(stream.settings, second)  # arrives while Triton is down
    wait_for(lambda: stream.metric(worker, "inferloop_triton_retries_total") > 0, 30, "the worker to retry")
    threading.Event().wait(10)
    triton = start(server())
    try:
        predictions = stream.wait_predicted({e for e, _, _ in first + second})
        assert {p.event_id for p in predictions} == {e for e, _, _ in first + second}
        assert list(read_dead_letters(stream.settings, idle_timeout_s=0.5)) == []
    finally:
        stop_pid(triton.pid)


def predicted_past_the_commit(stream: Stream) -> int:
    """How many predictions on the topic are of events at or past the worker group's committed offsets: those a
    restarted worker reads and predicts again (at least once)."""
    from kafka import KafkaConsumer, TopicPartition

    s = stream.settings
    consumer = KafkaConsumer(**kafka_options(s.kafka), group_id=s.streams.app_id, enable_auto_commit=False)
    try:  # an offset fetch alone: this consumer never joins the group
        committed = {
            n: consumer.committed(TopicPartition(s.streams.images_topic, n)) or 0 for n in range(s.streams.partitions)
        }
    finally:
        consumer.close(autocommit=False)
    return sum(p.image_offset >= committed.get(p.image_partition, 0) for p in stream.predictions())  # type: ignore[operator]


@pytest.mark.faults
def test_worker_killed_mid_stream_loses_nothing_and_duplicates_are_identical(stream: Stream) -> None:
    """The worker SIGKILLed mid-stream, with predictions out whose offsets it had not committed yet, and a new one
    started: all 6,000 events predicted, those outputs predicted again, identically. (A kill that lands exactly on
    a commit leaves nothing to redeliver: the test then kills the next worker too, up to three times.)"""
    items = labelled_digits(6000)  # enough that the kill lands mid-stream at a few thousand images/s
    publish(stream.settings, items)  # a backlog first: the worker is busy, never caught up and committed, when killed
    for _ in range(3):
        worker = stream.start_worker()
        wait_for(lambda w=worker: stream.metric(w, "inferloop_predictions_total") >= 200, 60, "200 predictions")
        kill_pid(stream.workers[-1])
        done_before = {p.event_id for p in stream.predictions()}
        assert len(done_before) < len(items), "the kill came too late to test anything"
        if predicted_past_the_commit(stream) > 0:
            break
    else:
        raise AssertionError("three kills, each right after a commit: nothing to redeliver")

    stream.start_worker()
    predictions = stream.wait_predicted({e for e, _, _ in items}, timeout_s=180)
    assert_each_event_once_or_identically(predictions, {e for e, _, _ in items}, duplicates_expected=True)


def test_cli_produces_files_folders_and_large_images_by_uri(stream: Stream) -> None:
    stream.env["INFERLOOP_STREAMS__INLINE_MAX_BYTES"] = "20000"
    stream.env["INFERLOOP_STREAMS__IMAGE_URI_ROOTS"] = json.dumps([str(stream.tmp_path)])
    stream.start_worker()
    images, labels = digits_images()
    folder = stream.tmp_path / "incoming"
    for n in range(12):
        (folder / str(labels[n])).mkdir(parents=True, exist_ok=True)
        (folder / str(labels[n]) / f"d{n}.png").write_bytes(png_bytes(images[n]))
    large = stream.tmp_path / "large.png"
    big = np.kron(images[0], np.ones((50, 50), dtype=np.uint8))  # 400x400, the same digit
    noise = np.random.default_rng(1).integers(0, 8, big.shape, dtype=np.uint8)
    large.write_bytes(png_bytes(big.clip(0, 247) + noise))  # noise keeps the PNG large
    assert large.stat().st_size > 20000
    huge = stream.tmp_path / "huge.png"  # over the 1 MB record limit: it can only travel by URI
    huge.write_bytes(noise_png(1100))
    assert huge.stat().st_size > stream.settings.streams.max_request_bytes
    ids_file = stream.tmp_path / "ids.tsv"
    result = inferloop(stream.env, "produce", str(folder), str(large), str(huge), "--ids-out", str(ids_file))
    assert result.returncode == 0, result.stderr
    sent = dict(line.split("\t") for line in ids_file.read_text().splitlines())
    assert len(sent) == 14
    predictions = {p.event_id: p for p in stream.wait_predicted(set(sent))}
    large_id = next(e for e, path in sent.items() if path.endswith("large.png"))
    assert predictions[large_id].label == str(labels[0]), "the image read through its file:// URI"
    listed = inferloop(stream.env, "predictions", "--json", "--limit", "5")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 5
    missing = inferloop(stream.env, "produce", str(stream.tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file" in missing.stderr


def noise_png(side: int) -> bytes:
    """A PNG of random grey pixels: it barely compresses (side 1100 is about 1.2 MB)."""
    return png_bytes(np.random.default_rng(side).integers(0, 256, (side, side), dtype=np.uint8))


@pytest.mark.fuzz
def test_an_event_over_the_record_limit_is_refused_by_the_producer(stream: Stream) -> None:
    """An image over the 1 MB Kafka record limit with no image URI root: the producer refuses it before sending,
    naming the file, its size and the setting to change; the CLI publishes the other files and exits 1; the topic
    itself refuses such a record from a producer that skips the check; nothing partial reaches the topic."""
    from kafka import KafkaProducer
    from kafka.errors import MessageSizeTooLargeError

    from inferloop.kafka.errors import EventTooLarge
    from inferloop.kafka.producers import ImageProducer
    from inferloop.kafka.readers import end_offsets

    settings = stream.settings
    limit = settings.streams.max_request_bytes
    huge = noise_png(1100)
    assert len(huge) > limit
    with ImageProducer(settings, source="test") as producer, pytest.raises(EventTooLarge) as refused:
        producer.publish_bytes(huge, "image/png")
    message = str(refused.value)
    assert f"{refused.value.size} bytes" in message and f"{limit}-byte" in message
    assert "INFERLOOP_STREAMS__MAX_REQUEST_BYTES" in message and "IMAGE_URI_ROOTS" in message

    folder = stream.tmp_path / "mixed"
    folder.mkdir()
    (folder / "huge.png").write_bytes(huge)
    (folder / "small.png").write_bytes(png_bytes(digits_images()[0][0]))
    result = inferloop(stream.env, "produce", str(folder), "--json")
    assert result.returncode == 1
    assert "refused:" in result.stderr and str(folder / "huge.png") in result.stderr
    assert [p["path"] for p in json.loads(result.stdout)] == [str(folder / "small.png")]

    raw = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap, max_request_size=4 * limit)
    try:
        with pytest.raises(MessageSizeTooLargeError):
            raw.send(settings.streams.images_topic, value=huge).get(timeout=30)
    finally:
        raw.close()
    assert sum(end_offsets(settings, settings.streams.images_topic).values()) == 1, "only the small image"


def test_with_topic_creation_off_a_missing_topic_stops_the_worker_and_the_cli_creates_them(stream: Stream) -> None:
    """Managed clusters (the chart): the worker creates no topic and stops naming the missing ones;
    `inferloop topics create` creates the eight of the test's prefix (the joiner's changelog, the shadow
    predictions and the trusted feedback included) with the configured min.insync.replicas and the brokers'
    default replication, compacting the training log and the changelog; the promotions topic (shared, never
    prefixed: it belongs with the model repository) already exists, compacted, one partition."""
    env = {**stream.env, "INFERLOOP_KAFKA__CREATE_TOPICS": "false", "INFERLOOP_KAFKA__MIN_INSYNC_REPLICAS": "1"}
    settings = settings_from_env(env)
    refused = inferloop(env, "worker", timeout_s=60)
    assert (
        refused.returncode == 1 and "topics missing" in refused.stderr and "inferloop topics create" in refused.stderr
    )
    assert settings.streams.images_topic in refused.stderr
    before = json.loads(inferloop(env, "topics", "--json").stdout)
    promotions = settings.model.promotions_topic
    assert len(before) == 9 and {t["topic"] for t in before if t["exists"]} == {promotions}
    assert inferloop(env, "topics", "create").returncode == 0
    after = json.loads(inferloop(env, "topics", "--json").stdout)
    assert all(t["exists"] for t in after)
    admin = KafkaAdminClient(**kafka_options(settings.kafka))
    try:
        shared_resource = ConfigResource(ConfigResourceType.TOPIC, promotions, {"cleanup.policy": None})
        shared = admin.describe_configs([shared_resource], config_filter="all")["topic"]
        assert shared[promotions]["cleanup.policy"]["value"] == "compact"
        assert len(admin.describe_topics([promotions])[0]["partitions"]) == 1
        names = [t["topic"] for t in after if t["topic"] != promotions]
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, n, {"cleanup.policy": None, "min.insync.replicas": None})
            for n in names
        ]
        configs = admin.describe_configs(resources, config_filter="all")["topic"]
        described = {t["name"]: t for t in admin.describe_topics(names)}
    finally:
        admin.close()
    assert {n: configs[n]["min.insync.replicas"]["config_source"] for n in names} == dict.fromkeys(
        names, "DYNAMIC_TOPIC_CONFIG"
    )
    compacted = {n for n in names if configs[n]["cleanup.policy"]["value"] == "compact"}
    assert compacted == {settings.feedback.training_log_topic, join_changelog_topic(settings)}
    assert all(len(described[n]["partitions"]) == settings.streams.partitions for n in names)
    assert all(len(p["replica_nodes"]) == 1 for n in names for p in described[n]["partitions"])  # broker default


def test_dlq_replay_writes_only_to_the_images_and_open_feedback_topics(stream: Stream) -> None:
    """A dead letter names its origin itself, so anyone who can write the dead-letter topic could forge one whose
    origin is the trusted feedback topic (or the training log): replay sends the images topic's and the open
    feedback topic's letters back, confirmed, and skips the others; nothing reaches the trusted topic. A record
    on the dead-letter topic that is no letter is passed over, not a reason to stop."""
    from kafka import KafkaProducer

    from inferloop.events import encode_dead_letter
    from inferloop.kafka.readers import read_topic, replay_dead_letters
    from inferloop.kafka.topics import ensure_topics

    settings = settings_from_env(stream.env)
    ensure_topics(settings)
    origins = [
        settings.streams.images_topic,
        settings.feedback.topic,
        settings.feedback.trusted_topic,
        settings.feedback.training_log_topic,
    ]
    producer = KafkaProducer(**kafka_options(settings.kafka), acks="all")
    try:
        for n, origin in enumerate(origins):
            letter = DeadLetter("forged", "m", origin, 0, n, f"e{n}", f"payload-{n}".encode())
            producer.send(settings.streams.dead_letter_topic, key=f"e{n}".encode(), value=encode_dead_letter(letter))
        # a record that is no dead letter at all: passed over (logged), never a reason to stop the replay
        producer.send(settings.streams.dead_letter_topic, key=b"junk", value=b"not a dead letter")
        producer.flush(timeout=30)
    finally:
        producer.close()
    assert replay_dead_letters(settings, "forged") == (2, 3), "two replayed; two letters and the junk skipped"
    got = {t: [r.value for r in read_topic(settings, t, idle_timeout_s=2.0)] for t in origins}
    assert got == {origins[0]: [b"payload-0"], origins[1]: [b"payload-1"], origins[2]: [], origins[3]: []}
