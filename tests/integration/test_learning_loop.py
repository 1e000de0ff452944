"""The learning loop with the real services: feedback joined by the joiner (a Faust app), the training log, the
trainer reading it, triggers, online quality, candidates scored in shadow on live traffic, promotions and
rollbacks the workers follow."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferloop.events import DeadLetter, LabelledExample, Prediction
from inferloop.kafka.producers import FeedbackProducer, ImageProducer
from inferloop.kafka.readers import read_dead_letters, read_training_log
from inferloop.metrics import scrape
from inferloop.triton.control import TritonControl
from infra.local.kafka_broker import KafkaBroker
from infra.local.process import stop_pid
from infra.local.settings import LocalSettings
from infra.local.triton_server import TritonServer
from infra.local.worker import JoinerProcess, WorkerProcess
from tests.helpers import inferloop, isolated_env, settings_from_env, wait_for
from tests.integration.conftest import Stream, announced
from tests.schemas import assert_valid
from trainer.card import ModelCard
from trainer.data import digits_images, in_holdout, png_bytes
from trainer.jobs.context import publisher as publisher_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Loop(Stream):
    """One test's topics, model, worker and joiner processes."""

    def publish(self, items: list[tuple[str, bytes]]) -> None:
        with ImageProducer(self.settings, source="test") as producer:
            for event_id, data in items:
                producer.publish_bytes(data, "image/png", event_id=event_id)

    def wait_predicted_by_id(self, ids: set[str], timeout_s: float = 120) -> dict[str, Prediction]:
        return {p.event_id: p for p in self.wait_predicted(ids, timeout_s)}

    def log(self) -> list[LabelledExample]:
        return [e for _, e in read_training_log(self.settings, idle_timeout_s=0.5)]

    def dead(self) -> list[DeadLetter]:
        return list(read_dead_letters(self.settings, idle_timeout_s=0.5))


@pytest.fixture
def loop(
    bootstrapped: dict[str, str],
    kafka_broker: KafkaBroker,
    triton_server: TritonServer,
    base_settings: LocalSettings,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Loop]:
    """Topics and a model of this test's own; the model's version 1 is the session's bootstrapped digits model."""
    model = "loop-" + "".join(c for c in request.node.name if c.isalnum())[-30:]
    env = isolated_env(tmp_path, base_settings.cache_dir, triton_server, kafka_broker, INFERLOOP_MODEL__NAME=model)
    source = triton_server.model_repository / "digits" / "1"
    card = ModelCard.read(source)
    card.model_name = model
    settings = settings_from_env(env)
    control = TritonControl(triton_server.grpc_url)
    publisher_of(settings, control).publish(source, card)
    running = Loop(env, tmp_path)
    yield running
    running.stop()
    control.unload(model)


def digit_items(indices: list[int], invert: bool = False) -> list[tuple[str, bytes, str]]:
    images, labels = digits_images()
    return [
        (uuid.uuid4().hex, png_bytes(255 - images[i] if invert else images[i]), str(int(labels[i]))) for i in indices
    ]


def test_feedback_edge_cases(loop: Loop) -> None:
    loop.env |= {
        "INFERLOOP_FEEDBACK__WAIT_S": "4",
        "INFERLOOP_FEEDBACK__RETENTION_S": "12",
        "INFERLOOP_FEEDBACK__SWEEP_INTERVAL_S": "0.5",
    }
    loop.start(WorkerProcess)
    loop.start(JoinerProcess)
    items = digit_items(list(range(8)))
    ids = [event_id for event_id, _, _ in items]
    truth = {event_id: label for event_id, _, label in items}
    early, plain, dup, corrected, wrong_label, expired, cli_one, cli_file = ids
    loop.publish([(e, d) for e, d, _ in items if e != early])
    predicted = loop.wait_predicted_by_id(set(ids) - {early})
    unknown = uuid.uuid4().hex
    settings = loop.settings
    with FeedbackProducer(settings, source="test") as feedback:
        feedback.send(early, truth[early])  # before its prediction exists
        feedback.send(plain, truth[plain])
        feedback.send(dup, truth[dup])
        feedback.send(dup, truth[dup])
        feedback.send(corrected, "0" if truth[corrected] != "0" else "1")
        feedback.send(wrong_label, "banana")
        feedback.send(unknown, "3")
    loop.publish([(e, d) for e, d, _ in items if e == early])
    result = inferloop(loop.env, "feedback", cli_one, truth[cli_one], "--source", "person", "--trusted")
    assert result.returncode == 0, result.stderr
    csv = loop.tmp_path / "labels.csv"
    csv.write_text(f"event_id,label\n{cli_file},{truth[cli_file]}\n")
    assert inferloop(loop.env, "feedback", "--file", str(csv)).returncode == 0
    with FeedbackProducer(settings) as feedback:  # a raw record that is not feedback at all
        feedback._producer.send(settings.feedback.topic, key=b"junk", value=b"\xff not json")

    def logged() -> dict[str, LabelledExample] | None:
        by_id = {e.event_id: e for e in loop.log()}
        return by_id if {early, plain, dup, corrected, cli_one, cli_file} <= set(by_id) else None

    wait_for(logged, 60, "the joined examples in the training log")
    with FeedbackProducer(settings, source="test") as feedback:
        feedback.send(corrected, truth[corrected])  # the correction: the later label wins

    def reasons() -> dict[str, str] | None:
        got = {d.event_id or "": d.reason for d in loop.dead()}
        return got if {"unknown_event", "unknown_label", "not_feedback"} <= set(got.values()) else None

    dead = wait_for(reasons, 30, "dead letters for unknown event, unknown label and junk")
    assert dead[unknown] == "unknown_event"
    assert dead[wrong_label] == "unknown_label"
    assert dead["junk"] == "not_feedback"

    # expiry: past the retention, feedback for a known event is dead-lettered as expired
    time.sleep(12 + 2)
    with FeedbackProducer(settings, source="test") as feedback:
        feedback.send(expired, truth[expired])
    dead = wait_for(
        lambda: (d := {x.event_id: x.reason for x in loop.dead()}) and expired in d and d, 30, "the expired dead letter"
    )
    assert dead[expired] == "expired_event"

    log = loop.log()
    by_id: dict[str, list[LabelledExample]] = {}
    for e in log:
        by_id.setdefault(e.event_id, []).append(e)
    assert len(by_id[dup]) == 1, "duplicate feedback was logged twice"
    assert [e.label for e in by_id[corrected]][-1] == truth[corrected] and len(by_id[corrected]) == 2
    assert expired not in by_id and unknown not in by_id and wrong_label not in by_id
    for event_id in (early, plain, dup, cli_one, cli_file):
        (example,) = by_id[event_id]
        assert example.label == truth[event_id]
        assert example.image == next(d for e, d, _ in items if e == event_id), "not the input image"
        assert example.model_version == 1
        if event_id in predicted:
            assert example.predicted_label == predicted[event_id].label
    assert by_id[cli_one][0].feedback_source == "person"
    # trust comes from the topic: `feedback --trusted` is logged as trusted, everything from the open topic not
    assert {e: by_id[e][-1].feedback_trusted for e in (early, plain, dup, corrected, cli_one, cli_file)} == {
        early: False,
        plain: False,
        dup: False,
        corrected: False,
        cli_one: True,
        cli_file: False,
    }

    from inferloop.images.preprocess import InputSpec
    from trainer.training_log import TrainingLogReader

    reader = TrainingLogReader(settings, InputSpec(1, 28, 28))
    examples = reader.read(tuple(str(d) for d in range(10)), after=None)
    labels = dict(zip(examples.ids, examples.y, strict=True))
    assert str(labels[f"event:{corrected}"]) == truth[corrected], "the correction did not win"
    assert len(examples) == 6
    assert reader.open_ids == {f"event:{e}" for e in (early, plain, dup, corrected, cli_file)}
    assert loop.joiner is not None
    accuracy = scrape(f"http://127.0.0.1:{loop.joiner.metrics_port}/metrics", "inferloop_online_accuracy")
    assert accuracy, "no online accuracy exported"
    assert all(0.0 <= v <= 1.0 for _, v in accuracy)


def split_indices(holdout: bool, n: int, seed: int = 0) -> list[int]:
    images, _ = digits_images()
    chosen = [i for i in range(len(images)) if in_holdout(f"sklearn-digits:{i}", 0.2) == holdout]
    return [int(i) for i in np.random.default_rng(seed).permutation(chosen)[:n]]


def send_feedback(loop: Loop, items: list[tuple[str, bytes, str]], trusted: bool = True) -> None:
    """Labels as an operator sends them: on the trusted topic (the only labels that count as shadow evidence)."""
    with FeedbackProducer(loop.settings, source="test", trusted=trusted) as feedback:
        for event_id, _, label in items:
            feedback.send(event_id, label)


def shadow_predictions(loop: Loop) -> list[Prediction]:
    from inferloop.events import decode_prediction
    from inferloop.kafka.readers import read_topic

    topic = loop.settings.streams.shadow_predictions_topic
    records = list(read_topic(loop.settings, topic, idle_timeout_s=0.5))
    for record in records:  # as the worker wrote them, against the published schema
        assert_valid("shadow-prediction", record.value)
    return [decode_prediction(r.value) for r in records]


def test_drift_feedback_retrain_shadow_promotion_and_recovery(loop: Loop) -> None:
    """v1 serves; drifted images with feedback → the trainer (online-accuracy trigger) fine-tunes v2 on exactly
    the logged examples and puts it in shadow; live drifted traffic is scored by both, feedback joins both
    answers, the trainer's promoter promotes v2 on that evidence, the workers follow, and accuracy recovers."""
    loop.env |= {
        "INFERLOOP_TRAINER__PROMOTION_MIN_LABELS": "100",
        # fine-tuning on inverted digits costs the clean holdout up to ~1.5 points (0.9853 against v1's 0.9970 in
        # one CI run: the split of the logged examples follows their random ids); this test is about the drift
        # loop, the best-ever gate has its own (test_model_lifecycle, tests/unit/trainer/test_evaluate.py)
        "INFERLOOP_TRAINER__BEST_TOLERANCE": "0.03",
    }
    worker = loop.start(WorkerProcess)
    loop.start(JoinerProcess)
    labelled = digit_items(split_indices(holdout=False, n=300), invert=True)
    loop.publish([(e, d) for e, d, _ in labelled])
    loop.wait_predicted({e for e, _, _ in labelled})
    send_feedback(loop, labelled)
    wait_for(lambda: len(loop.log()) >= 300, 60, "300 labelled examples in the training log")

    holdout_indices = split_indices(holdout=True, n=150, seed=1)
    before_items = digit_items(holdout_indices, invert=True)
    loop.publish([(e, d) for e, d, _ in before_items])
    before = loop.wait_predicted_by_id({e for e, _, _ in before_items})
    assert {before[e].model_version for e, _, _ in before_items} == {1}
    accuracy_before = np.mean([before[e].label == label for e, _, label in before_items])

    models = inferloop(loop.env, "models", "--json")
    assert models.returncode == 0, models.stderr
    (v1_row,) = [r for r in json.loads(models.stdout) if r["version"] == 1]
    assert v1_row["online"]["labelled"] == 200 and v1_row["online"]["accuracy"] < 0.5  # the window: last 200

    trainer_env = {
        "INFERLOOP_TRAINER__MIN_NEW_LABELS": "100000",  # only the accuracy trigger can fire
        "INFERLOOP_TRAINER__MIN_ONLINE_ACCURACY": "0.8",
        "INFERLOOP_TRAINER__MIN_LABELS_PER_RUN": "50",
    }
    result = inferloop(loop.env | trainer_env, "trainer", "--every", "1s", "--max-runs", "1")
    assert result.returncode == 0, result.stderr
    assert "retraining: online accuracy" in result.stderr and "published v2 (in shadow)" in result.stderr
    assert announced(loop.settings) == (1, 2)

    card = ModelCard.read(loop.settings.model_repository / loop.settings.model.name / "2")
    logged_ids = {f"event:{e}" for e, _, _ in labelled}
    assert set(card.lineage.new_examples) | set(card.lineage.feedback_holdout) == logged_ids
    assert not set(card.lineage.new_examples) & set(card.lineage.feedback_holdout)
    assert card.parent == 1 and card.lineage.reader_cursor is not None

    # In shadow: live drifted traffic is still answered by v1; v2 answers the same events on the shadow topic.
    shadowed = [(uuid.uuid4().hex, d, label) for _, d, label in digit_items(split_indices(False, 200, 2), True)]
    loop.publish([(e, d) for e, d, _ in shadowed])
    during = loop.wait_predicted_by_id({e for e, _, _ in shadowed})
    assert {during[e].model_version for e, _, _ in shadowed} == {1}, "a candidate in shadow answered traffic"
    wanted = {e for e, _, _ in shadowed}

    def all_shadowed() -> dict[str, Prediction] | None:
        got = {p.event_id: p for p in shadow_predictions(loop)}
        return got if wanted <= set(got) else None

    shadow = wait_for(all_shadowed, 60, "shadow predictions for every live event")
    assert {shadow[e].model_version for e, _, _ in shadowed} == {2}
    send_feedback(loop, shadowed)
    wait_for(
        lambda: sum(e.shadow_version == 2 for e in loop.log()) >= 100, 60, "100 labels on events v2 scored in shadow"
    )
    result = inferloop(loop.env | trainer_env, "trainer", "--every", "1s", "--max-runs", "1")
    assert result.returncode == 0, result.stderr
    assert "promoted v2: on " in result.stderr, result.stderr
    assert announced(loop.settings) == (2, None)
    card = ModelCard.read(loop.settings.model_repository / loop.settings.model.name / "2")
    evidence = card.shadow_evidence or {}
    assert evidence["shadow_live_labels"] >= 100 and evidence["serving_version"] == 1
    assert evidence["candidate_live_accuracy"] >= evidence["serving_live_accuracy"] + 0.2

    after_items = [(uuid.uuid4().hex, d, label) for _, d, label in before_items]  # the same images, new events
    wait_for(lambda: loop.metric(worker, "inferloop_announced_model_version") == 2, 30, "the worker follows v2")
    loop.publish([(e, d) for e, d, _ in after_items])
    after = loop.wait_predicted_by_id({e for e, _, _ in after_items})
    assert {after[e].model_version for e, _, _ in after_items} == {2}, "predictions did not switch to v2"
    accuracy_after = np.mean([after[e].label == label for e, _, label in after_items])
    assert accuracy_after - accuracy_before >= 0.20, (accuracy_before, accuracy_after)


def worse_artifact(source: Path, folder: Path, name: str) -> ModelCard:
    """Version 1 with its output rows rolled by one: it answers the next digit, confidently (a worse model that
    loads, answers pinned requests like its own artifact, and passes the smoke test)."""
    import torch

    from inferloop.images.preprocess import InputSpec
    from trainer.data import load_digits_dataset
    from trainer.export import load_weights, write_artifact

    card = ModelCard.read(source)
    model = load_weights(source, card.input_spec, len(card.classes))
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.copy_(torch.roll(last.weight, 1, dims=0))
        last.bias.copy_(torch.roll(last.bias, 1, dims=0))
    card.model_name, card.parent, card.candidate_id = name, 1, "c-worse"
    write_artifact(model, card, folder, load_digits_dataset(InputSpec()).x[:32])
    return ModelCard.read(folder)


def test_a_worse_candidate_is_scored_in_shadow_and_never_promoted(loop: Loop, tmp_path: Path) -> None:
    loop.env |= {"INFERLOOP_TRAINER__PROMOTION_MIN_LABELS": "60"}
    loop.start(WorkerProcess)
    loop.start(JoinerProcess)
    settings = loop.settings
    control = TritonControl(settings.triton.grpc_url)
    publisher = publisher_of(settings, control)
    card = worse_artifact(publisher.repo.version_dir(1), tmp_path / "worse", settings.model.name)
    assert publisher.publish(tmp_path / "worse", card) == 2
    assert announced(settings) == (1, 2)
    items = digit_items(split_indices(holdout=True, n=120, seed=4))
    loop.publish([(e, d) for e, d, _ in items])
    predicted = loop.wait_predicted_by_id({e for e, _, _ in items})
    send_feedback(loop, items)
    wait_for(lambda: sum(e.shadow_version == 2 for e in loop.log()) >= 60, 60, "60 labels scored in shadow")
    result = inferloop(loop.env, "trainer", "--every", "1s", "--max-runs", "1")
    assert result.returncode == 0, result.stderr
    assert "rejected: on " in result.stderr and "less accurate live" in result.stderr, result.stderr
    assert announced(settings) == (1, None)
    assert {p.model_version for p in loop.predictions()} == {1}, "the worse candidate answered live traffic"
    assert {p.model_version for p in predicted.values()} == {1}
    assert {p.model_version for p in shadow_predictions(loop)} == {2}, "it was scored in shadow"
    from inferloop.kafka.readers import read_topic

    promotions = list(read_topic(settings, settings.model.promotions_topic, idle_timeout_s=0.5))
    assert len(promotions) >= 2, "the shadow announcement and the rejection"
    for record in promotions:  # as the publisher wrote them, against the published schema
        assert_valid("promotion", record.value)
    statuses = {r["version"]: r["status"] for r in json.loads(inferloop(loop.env, "models", "--json").stdout)}
    assert statuses == {1: "serving", 2: "rejected"}
    assert [v.version for v in control.index(settings.model.name) if v.state == "READY"] == [1], "unloaded"


def test_every_worker_follows_a_promotion_and_a_rollback_at_its_next_prediction(
    loop: Loop, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two workers; v2 (verified, in shadow) is promoted, then rolled back: after each announcement every worker
    reports the announced version (its next inference names it) and every later prediction carries it. How long
    the workers took is reported, not asserted."""
    workers = [loop.start(WorkerProcess), loop.start(WorkerProcess)]
    settings = loop.settings
    publisher = publisher_of(settings, TritonControl(settings.triton.grpc_url))
    assert publisher.publish(publisher.repo.version_dir(1), publisher.repo.card(1)) == 2
    warm = digit_items(list(range(40)))
    loop.publish([(e, d) for e, d, _ in warm])
    loop.wait_predicted({e for e, _, _ in warm})
    for action, version in (("promote", 2), ("rollback", 1)):
        began = time.monotonic()
        publisher.promote(version) if action == "promote" else publisher.rollback()
        for w in workers:
            wait_for(
                lambda w=w, v=version: loop.metric(w, "inferloop_announced_model_version") == v, 30, f"{action} seen"
            )
        took = time.monotonic() - began
        with capsys.disabled():
            print(f"\n{action} to v{version}: both workers followed within {took:.2f} s of the announcement")
        items = digit_items(list(range(40, 120)))
        loop.publish([(e, d) for e, d, _ in items])
        got = loop.wait_predicted_by_id({e for e, _, _ in items})
        assert {got[e].model_version for e, _, _ in items} == {version}, action
    # the rollback survives a worker restart: one that starts now reads the topic from its start and follows it
    stop_pid(loop.workers[0], timeout_s=20)
    late = loop.start(WorkerProcess)
    wait_for(lambda: loop.metric(late, "inferloop_announced_model_version") == 1, 60, "a new worker follows v1")
    items = digit_items(list(range(120, 160)))
    loop.publish([(e, d) for e, d, _ in items])
    got = loop.wait_predicted_by_id({e for e, _, _ in items})
    assert {got[e].model_version for e, _, _ in items} == {1}
