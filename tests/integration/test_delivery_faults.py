"""Fault injection on the learning loop's and the worker's delivery paths, against the real broker and Triton
(marker ``faults``): the joiner failing or killed mid-batch, hostile records on its topics, the trainer's reader
of the training log, and a Triton outage that outlasts the poll interval. Each compares exact sets of event ids.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from dataclasses import replace

import numpy as np
import pytest
from kafka import KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from PIL import Image

from inferloop.events import (
    Feedback,
    LabelledExample,
    Message,
    encode_feedback,
    encode_labelled_example,
    now_ms,
)
from inferloop.images.preprocess import InputSpec
from inferloop.kafka.errors import ReadIncomplete
from inferloop.kafka.options import kafka_options
from inferloop.kafka.producers import send_feedback
from inferloop.kafka.readers import read_dead_letters, read_topic, read_training_log
from inferloop.kafka.topics import ensure_topics, join_changelog_topic
from inferloop.settings import Settings
from infra.local.triton_server import TritonServer
from infra.local.worker import JoinerProcess
from streams.joiner.feedback_join import Entry
from streams.worker.memory_plan import memory_plan
from tests.helpers import inferloop, wait_for
from tests.integration.conftest import (
    Stream,
    TcpProxy,
    assert_each_event_once_or_identically,
    labelled_digits,
    publish,
    served_copy,
    with_malformed_labels,
)
from trainer.training_log import TrainingLogReader

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]
DIGITS = tuple(str(d) for d in range(10))


def logged(settings: Settings) -> dict[str, LabelledExample]:
    """The newest training-log example of each event id."""
    return {e.event_id: e for _, e in read_training_log(settings, idle_timeout_s=0.5)}


def dead_letters(settings: Settings) -> dict[str | None, str]:
    return {d.event_id: d.reason for d in read_dead_letters(settings, idle_timeout_s=0.5)}


def set_topic_config(settings: Settings, topic: str, **configs: str) -> None:
    admin = KafkaAdminClient(**kafka_options(settings.kafka))
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        admin.close()


def produce_raw(settings: Settings, topic: str, records: list[tuple[bytes, bytes] | Message]) -> None:
    """Records as another writer (any Kafka client) might send them: ``(key, value)`` or a whole message."""
    producer = KafkaProducer(**kafka_options(settings.kafka), acks="all")
    try:
        for record in records:
            m = record if isinstance(record, Message) else Message(*record)
            producer.send(topic, key=m.key, value=m.value, headers=list(m.headers), timestamp_ms=m.timestamp_ms)
        producer.flush()
    finally:
        producer.close()


def test_an_unexpected_error_in_the_joiner_stops_it_before_any_commit(
    stream: Stream, triton_server: TritonServer
) -> None:
    """30 events predicted by a model whose config then turns malformed (labels not JSON): the joiner, checking
    each label against the model's, raises an error no step declares and exits (code 70) with nothing logged or
    dead-lettered; with the config fixed, a restarted joiner logs all 30 labels."""
    with served_copy(triton_server, "m-joiner-bad-labels", stream.settings) as (repo, good, control):
        stream.env["INFERLOOP_MODEL__NAME"] = repo.name
        stream.start_worker()
        items = labelled_digits(30)
        ids = {e for e, _, _ in items}
        publish(stream.settings, items)
        stream.wait_predicted(ids)
        repo.write_config(with_malformed_labels(good))
        control.load(repo.name)
        stream.start(JoinerProcess)
        send_feedback(stream.settings, [(e, label, None) for e, _, label in items])
        assert stream.processes[-1].wait(timeout=90) == 70, "the joiner went on (or died otherwise) after the error"
        assert not ids & set(logged(stream.settings)), "an example was logged by a joiner that then failed"
        assert not ids & set(dead_letters(stream.settings))
        repo.write_config(good)
        control.load(repo.name)
        stream.start(JoinerProcess)  # as Kubernetes restarts it: the uncommitted feedback comes again

        def all_logged() -> dict[str, LabelledExample] | None:
            got = logged(stream.settings)
            return got if ids <= set(got) else None

        examples = wait_for(all_logged, 90, "every label in the training log")
        assert {e: examples[e].label for e in ids} == {e: label for e, _, label in items}


def test_a_joiner_that_dies_between_its_table_and_the_training_log_loses_no_label(stream: Stream) -> None:
    """20 labels sent before their predictions wait in the joiner's table; the predictions come and the table (its
    changelog) records the joins, but the training log refuses the examples (its max.message.bytes lowered to 200)
    and the joiner dies right there (exit 70, before any commit). With the topic fixed, a restarted joiner logs
    all 20 labels: the recovered table still held them, and the redelivered predictions joined them again."""
    settings = stream.settings
    ensure_topics(settings)
    set_topic_config(settings, settings.feedback.training_log_topic, **{"max.message.bytes": "200"})
    joiner = stream.start(JoinerProcess)
    items = labelled_digits(20)
    ids = {e for e, _, _ in items}
    send_feedback(settings, [(e, label, None) for e, _, label in items])
    wait_for(
        lambda: stream.metric(joiner, "inferloop_feedback_outcomes_total", outcome="waiting") >= 20,
        60,
        "the 20 labels waiting for their predictions",
    )
    stream.start_worker()
    publish(settings, items)
    assert stream.processes[0].wait(timeout=90) == 70, "the joiner went on (or died otherwise) after the refusal"

    entries = {
        (r.key or b"").decode(): Entry.decode(r.value)
        for r in read_topic(settings, join_changelog_topic(settings), idle_timeout_s=0.5)
        if r.value
    }
    joined = {e for e in ids if e in entries and entries[e].predicted is not None}
    assert joined, "no join reached the changelog before the joiner died: the fault missed its moment"
    assert not ids & set(logged(settings)), "the training log took an example over its size limit"
    set_topic_config(settings, settings.feedback.training_log_topic, **{"max.message.bytes": "1000000"})
    stream.start(JoinerProcess)

    def all_logged() -> dict[str, LabelledExample] | None:
        got = logged(settings)
        return got if ids <= set(got) else None

    examples = wait_for(all_logged, 120, "every label in the training log after the restart")
    assert {e: examples[e].label for e in ids} == {e: label for e, _, label in items}
    assert not ids & set(dead_letters(settings)), "a label was dead-lettered instead of logged"


def noise_png(side: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_malformed_predictions_oversized_examples_and_feedback_are_dead_lettered(stream: Stream) -> None:
    """Records the joiner cannot use, each dead-lettered with its reason while the rest is logged: a prediction
    with no scores (another writer's), feedback with a 300-character source (over the documented 256), and an
    image whose labelled example would not fit a record of the joiner's size limit."""
    settings = stream.settings
    stream.start_worker()
    small = labelled_digits(5)
    big = noise_png(128, seed=3)
    big_id = uuid.uuid4().hex
    publish(settings, [*small, (big_id, big, "")])
    stream.wait_predicted({e for e, _, _ in small} | {big_id})
    bad_prediction = {
        "event_id": "bad-prediction",
        "model_name": "digits",
        "model_version": 1,
        "labels": [],
        "scores": [],
        "produced_at_ms": 1,
        "received_at_ms": 1,
        "predicted_at_ms": 1,
        "schema_version": 1,
    }
    produce_raw(
        settings, settings.streams.predictions_topic, [(b"bad-prediction", json.dumps(bad_prediction).encode())]
    )
    long_source = small[1][0]
    produce_raw(
        settings,
        settings.feedback.topic,
        [(long_source.encode(), encode_feedback(Feedback(long_source, small[1][2], source="x" * 300)))],
    )
    # the joiner's records may be at most 700 bytes larger than the big image: its image event fits (the header
    # is ~150 bytes), its labelled example (~350 bytes of header, plus the record's framing) does not
    stream.env["INFERLOOP_STREAMS__MAX_REQUEST_BYTES"] = str(len(big) + 700)
    stream.start(JoinerProcess)
    send_feedback(settings, [(e, label, None) for e, _, label in small if e != long_source] + [(big_id, "3", None)])
    logged_ids = {e for e, _, _ in small if e != long_source}
    expected_dead = {"bad-prediction": "bad_prediction", long_source: "bad_field", big_id: "example_too_large"}

    def settled() -> tuple[dict[str, LabelledExample], dict[str | None, str]] | None:
        got, dead = logged(settings), dead_letters(settings)
        return (got, dead) if logged_ids <= set(got) and set(expected_dead) <= set(dead) else None

    examples, dead = wait_for(settled, 90, "the examples logged and the rest dead-lettered")
    assert set(examples) == logged_ids
    assert dead == expected_dead


def example(event_id: str, label: str, png: bytes) -> LabelledExample:
    return LabelledExample(event_id, label, "image/png", png, label, 0.9, "digits", 1, "test", 1, 1, now_ms())


def test_training_log_records_with_wrong_field_types_are_skipped_and_counted(stream: Stream) -> None:
    """The trainer reads the training log up to a cursor: records with a list label, a key that is not UTF-8, or
    no training-example header at all are left out and counted, the 12 good ones read; a later read from that
    cursor gets exactly the 3 logged after it; and a cursor past what the broker returns fails the read instead
    of ending it early (a cursor never moves past labels that were not read)."""
    settings = stream.settings
    ensure_topics(settings)
    topic = settings.feedback.training_log_topic
    digits = labelled_digits(15)
    good = [example(e, label, png) for e, png, label in digits[:12]]
    record = encode_labelled_example(example("list-label", "3", digits[0][1]))
    headers = dict(record.headers)
    metadata = json.loads(headers["training-example"])
    bad = [
        replace(
            record,
            headers=(*record.headers[:2], ("training-example", json.dumps({**metadata, "label": ["3"]}).encode())),
        ),
        replace(record, key=b"\xff\xfe"),  # not UTF-8 (a compacted topic refuses records without a key)
        (b"no-header", b"not a labelled example"),
    ]
    produce_raw(settings, topic, [*[encode_labelled_example(e) for e in good[:6]], *bad])
    produce_raw(settings, topic, [encode_labelled_example(e) for e in good[6:]])
    reader = TrainingLogReader(settings, InputSpec(1, 28, 28), idle_timeout_s=3.0)
    cursor = reader.cursor()
    first = reader.read(DIGITS, after=None, until=cursor)
    assert set(first.ids) == {f"event:{e.event_id}" for e in good}
    assert sum(reader.skipped.values()) == 3, reader.skipped
    later = [example(e, label, png) for e, png, label in digits[12:]]
    produce_raw(settings, topic, [encode_labelled_example(e) for e in later])
    second = reader.read(DIGITS, after=cursor, until=reader.cursor())
    assert set(second.ids) == {f"event:{e.event_id}" for e in later} and not reader.skipped
    assert cursor is not None
    beyond = json.loads(cursor)
    beyond["offsets"] = {p: o + 5 for p, o in beyond["offsets"].items()}
    with pytest.raises(ReadIncomplete):
        reader.read(DIGITS, after=cursor, until=json.dumps(beyond))


def group_members(settings: Settings, group: str) -> int:
    admin = KafkaAdminClient(**kafka_options(settings.kafka))
    try:
        return len(admin.describe_groups([group])[group]["members"])
    finally:
        admin.close()


def members_until_exit(stream: Stream, settings: Settings) -> tuple[int | None, list[int], float]:
    """The newest worker's exit code, its group's member count sampled each second while it ran, and how long
    it ran from now."""
    process, members, tick, started = stream.processes[-1], [], threading.Event(), time.monotonic()
    while process.poll() is None and len(members) < 60:
        members.append(group_members(settings, settings.streams.app_id))
        tick.wait(1.0)
    return process.poll(), members, time.monotonic() - started


def test_a_triton_outage_longer_than_the_poll_interval_never_evicts_a_worker_that_holds_a_batch(
    stream: Stream,
) -> None:
    """Triton cut off (behind a proxy) for longer than the poll interval (15 s) and the session timeout (6 s), with
    a 6 s outage budget and a backlog of 500 events (more than the worker buffers, so its fetching stops): the
    worker waits, a member of its group all along, then exits (code 75) with nothing committed, before the poll
    interval could evict it while it still held the batch; restarted while Triton is still down (as Kubernetes
    would), the next one does the same. With Triton back, a third worker predicts all 520 events, the 20 from
    before the outage once each."""
    stream.env |= {
        "INFERLOOP_STREAMS__SESSION_TIMEOUT_S": "6",
        "INFERLOOP_STREAMS__OUTAGE_TIMEOUT_S": "6",
        "INFERLOOP_STREAMS__MAX_POLL_INTERVAL_S": "15",
        "INFERLOOP_STREAMS__TRITON_TIMEOUT_S": "3",
        "INFERLOOP_STREAMS__RETRY_MAX_S": "1",
    }
    settings = stream.settings
    with TcpProxy(int(stream.env["INFERLOOP_TRITON__GRPC_PORT"])) as proxy:
        stream.env["INFERLOOP_TRITON__GRPC_PORT"] = str(proxy.port)
        stream.start_worker()
        before, during = labelled_digits(20), labelled_digits(500, offset=20)
        plan = memory_plan(settings.streams)
        held = plan.events_in_flight + plan.poll_records + plan.buffered
        assert len(during) > held, "the worker could buffer them all"
        publish(settings, before)
        stream.wait_predicted({e for e, _, _ in before})
        proxy.cut()
        cut_at = time.monotonic()
        publish(settings, during)
        for attempt in ("first", "restarted"):
            code, members, waited_s = members_until_exit(stream, settings)
            assert code == 75, f"the {attempt} worker did not give up after its outage budget"
            assert members and all(n == 1 for n in members), f"the {attempt} worker left its group: {members}"
            assert waited_s < settings.streams.max_poll_interval_s, f"the {attempt} worker held on {waited_s:.0f} s"
            # the exited member's session expires (it never left: os._exit), so that the next one is alone
            wait_for(lambda: group_members(settings, settings.streams.app_id) == 0, 30, "the session to expire")
            if attempt == "first":
                stream.start_worker()
                wait_for(lambda: group_members(settings, settings.streams.app_id) == 1, 60, "the restart to join")
        outage_s = time.monotonic() - cut_at
        assert outage_s > settings.streams.max_poll_interval_s, f"the outage ({outage_s:.0f} s) was too short"
        assert not {e for e, _, _ in during} & {p.event_id for p in stream.predictions()}
        proxy.restore()
        stream.start_worker()
        ids = {e for e, _, _ in before + during}
        predictions = stream.wait_predicted(ids)
    assert_each_event_once_or_identically(predictions, ids)
    assert len(predictions) == len(ids), "an event predicted before the outage was predicted again"


def test_a_joiner_refuses_to_start_when_a_topic_it_joins_has_another_partition_count(stream: Stream) -> None:
    """The joiner places its table and judges where feedback belongs by INFERLOOP_STREAMS__PARTITIONS: a feedback
    topic created by other tooling with 2 partitions instead of 4 would have every label dead-lettered as
    misplaced (or, before that check, never meet its prediction), so the joiner exits 1 at once, naming the topic,
    its count and the variable, before joining anything."""
    from kafka.admin import NewTopic

    settings = stream.settings
    admin = KafkaAdminClient(**kafka_options(settings.kafka))
    try:
        admin.create_topics([NewTopic(settings.feedback.topic, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    result = inferloop(stream.env, "joiner", timeout_s=120)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert f"{settings.feedback.topic} has 2" in result.stderr and "INFERLOOP_STREAMS__PARTITIONS=4" in result.stderr
