"""The real Kafka broker: round trips with both Python clients, and durability across a restart."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from infra.local.kafka_broker import KafkaBroker
from infra.local.process import pid_alive, pid_cmdline

pytestmark = pytest.mark.integration


def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    finally:
        admin.close()


def _produce_sync(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, value in messages:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consume_sync(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
    )
    got: list[tuple[bytes, bytes]] = []
    try:
        for record in consumer:
            got.append((record.key, record.value))
            if len(got) >= expected:
                break
    finally:
        consumer.close()
    return got


def _messages(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), uuid.uuid4().bytes * (i % 5 + 1)) for i in range(n)]


def test_broker_is_the_real_kafka_process(kafka_broker: KafkaBroker) -> None:
    pids = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    brokers = [int(p.name) for p in pids if str(kafka_broker.config_path) in pid_cmdline(int(p.name))]
    assert brokers, "no process runs with this broker's server.properties"
    cmdline = pid_cmdline(brokers[0])
    assert "kafka.Kafka" in cmdline
    assert pid_alive(brokers[0])


def test_round_trip_with_kafka_python(kafka_broker: KafkaBroker, topic_name: str) -> None:
    _create_topic(kafka_broker.bootstrap_servers, topic_name)
    sent = _messages(50)
    _produce_sync(kafka_broker.bootstrap_servers, topic_name, sent)
    assert _consume_sync(kafka_broker.bootstrap_servers, topic_name, len(sent)) == sent


def test_round_trip_with_aiokafka(kafka_broker: KafkaBroker, topic_name: str) -> None:
    sent = _messages(50)

    async def run() -> list[tuple[bytes, bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for key, value in sent:
                await producer.send_and_wait(topic_name, value=value, key=key)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic_name,
            bootstrap_servers=kafka_broker.bootstrap_servers,
            group_id=f"g-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[tuple[bytes, bytes]] = []
        try:
            async with asyncio.timeout(30):
                async for record in consumer:
                    got.append((record.key, record.value))
                    if len(got) >= len(sent):
                        break
        finally:
            await consumer.stop()
        return got

    assert asyncio.run(run()) == sent


def test_data_survives_a_broker_restart(kafka_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "durable"
    first = kafka_factory(data_dir)
    broker = first.service
    assert isinstance(broker, KafkaBroker)
    _create_topic(broker.bootstrap_servers, "durable", partitions=2)
    sent = _messages(30)
    _produce_sync(broker.bootstrap_servers, "durable", sent)

    assert first.stop(), "the broker did not stop cleanly on SIGTERM"
    assert not pid_alive(first.pid)
    assert "shut down completely" in broker.log_path.read_text()

    second = kafka_factory(data_dir, (broker.port, broker.controller_port))
    assert second.pid != first.pid
    got = _consume_sync(broker.bootstrap_servers, "durable", len(sent))
    assert sorted(got) == sorted(sent)
    # The storage was formatted once: the second start reused it.
    assert broker.log_path.read_text().count("Formatting") <= 1


def test_a_cluster_id_that_starts_with_a_dash_formats(
    kafka_libs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One random cluster id in 64 starts with "-" (URL-safe base64): the storage format must still take it."""
    import infra.local.kafka_broker as kafka_broker

    monkeypatch.setattr(kafka_broker, "new_cluster_id", lambda: "-8ZSSkfVT3u3VAP3q4qKHQ")
    broker = KafkaBroker(
        libs_dir=kafka_libs, data_dir=tmp_path, log_path=tmp_path / "kafka.log", port=1, controller_port=2
    )
    broker.prepare()
    assert "cluster.id=-8ZSSkfVT3u3VAP3q4qKHQ" in (broker.log_dirs / "meta.properties").read_text()
