"""Creating inferloop's topics with the configured partitions (before anything auto-creates them with one)."""

from __future__ import annotations

import contextlib

from inferloop.kafka.errors import BrokerUnavailable
from inferloop.kafka.options import kafka_options
from inferloop.settings import Settings


def topic_names(settings: Settings) -> list[str]:
    s, f = settings.streams, settings.feedback
    return [s.images_topic, s.predictions_topic, s.dead_letter_topic, f.topic, f.training_log_topic]


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """Per-topic broker configs: the training log is compacted (the latest label per event id, kept forever)."""
    if name == settings.feedback.training_log_topic:
        return {"cleanup.policy": "compact", "max.message.bytes": str(settings.streams.max_request_bytes)}
    return {"max.message.bytes": str(settings.streams.max_request_bytes)}


def ensure_topics(settings: Settings, names: list[str] | None = None) -> list[str]:
    """Create the topics that do not exist yet; returns those created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    bootstrap = settings.kafka.bootstrap
    try:
        admin = KafkaAdminClient(**kafka_options(settings.kafka), client_id="inferloop-admin", request_timeout_ms=15000)
    except KafkaError as exc:
        raise BrokerUnavailable(bootstrap, str(exc)) from exc
    try:
        existing = set(admin.list_topics())
        missing = [n for n in (names or topic_names(settings)) if n not in existing]
        if missing:
            topics = [
                NewTopic(
                    n,
                    num_partitions=settings.streams.partitions,
                    replication_factor=1,
                    topic_configs=topic_configs(settings, n),
                )
                for n in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
                admin.create_topics(topics)
        return missing
    finally:
        admin.close()
