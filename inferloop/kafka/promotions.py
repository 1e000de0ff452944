"""The promotions topic: which version of each model serves, and which is scored in shadow, announced durably.

One partition, compacted, keyed by model name: its records are in the order they were announced and the latest
of a model is that model's state (:class:`~inferloop.events.Promotion`). The trainer's publisher and the CLI
announce and read it here (:class:`PromotionLog`, synchronous, every announcement acknowledged by all in-sync
replicas); each worker follows it with :class:`streams.promotions.PromotionWatcher`.
"""

from __future__ import annotations

import logging

from inferloop.errors import EventDecodeError
from inferloop.events import Promotion, decode_promotion, encode_promotion
from inferloop.kafka.errors import BrokerUnavailable
from inferloop.kafka.options import kafka_options
from inferloop.kafka.readers import read_topic
from inferloop.kafka.topics import ensure_topics
from inferloop.settings import Settings

log = logging.getLogger(__name__)


class PromotionLog:
    """Announces promotions and reads the latest one of a model (synchronous: the trainer and the CLI)."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        self.settings, self.topic, self.timeout_s = settings, settings.model.promotions_topic, timeout_s

    def latest(self, model: str) -> Promotion | None:
        """The last announcement of ``model`` (None: never announced); the whole topic is read, or this raises
        :class:`~inferloop.kafka.errors.ReadIncomplete`. A record that does not decode is skipped, logged."""
        from kafka.errors import KafkaError

        latest: Promotion | None = None
        try:
            for record in read_topic(self.settings, self.topic, idle_timeout_s=self.timeout_s, complete=True):
                if record.key != model.encode() or record.value is None:
                    continue
                try:
                    promotion = decode_promotion(record.value)
                except EventDecodeError as exc:
                    log.warning("skipping %s@%d: %s", self.topic, record.offset, exc)
                    continue
                if promotion.model_name == model:  # the workers skip a record keyed for another model too
                    latest = promotion
        except KafkaError as exc:
            raise BrokerUnavailable(self.settings.kafka.bootstrap, f"reading {self.topic}: {exc}") from exc
        return latest

    def announce(self, promotion: Promotion) -> None:
        """Write ``promotion`` and wait until the broker has it (:class:`BrokerUnavailable` if it does not)."""
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        ensure_topics(self.settings)
        try:
            producer = KafkaProducer(**kafka_options(self.settings.kafka), acks="all", client_id="inferloop-promoter")
        except KafkaError as exc:
            raise BrokerUnavailable(self.settings.kafka.bootstrap, str(exc)) from exc
        try:
            future = producer.send(self.topic, key=promotion.model_name.encode(), value=encode_promotion(promotion))
            future.get(timeout=self.timeout_s)
        except KafkaError as exc:
            raise BrokerUnavailable(self.settings.kafka.bootstrap, f"announcing {promotion}: {exc}") from exc
        finally:
            producer.close(timeout=5)
