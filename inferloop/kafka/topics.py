"""The topics inferloop uses, with their partitions, replication and configs, created before anything
auto-creates them (with one partition and whatever the broker defaults to).

Replication factor and ``min.insync.replicas`` are settings (``kafka.replication_factor``, -1: the broker's
default; ``kafka.min_insync_replicas``, unset: the broker's); the joiner's faust changelog is created here too,
so that it gets them as well. With ``kafka.create_topics`` off (managed clusters) nothing is created:
:func:`ensure_topics` checks that every topic exists and names those missing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from inferloop.errors import ConfigurationError
from inferloop.kafka.errors import BrokerUnavailable
from inferloop.kafka.options import kafka_options
from inferloop.settings import Settings

RECORD_OVERHEAD_BYTES = 512  # a record batch's framing around one key and value, with room to spare


class TopicsMissing(ConfigurationError):
    """Topic creation is off and topics inferloop needs do not exist."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"topics missing: {', '.join(missing)} (kafka.create_topics is off: create them with "
            "`inferloop topics create` or the cluster's tooling)"
        )
        self.missing = missing


class TopicsNotCreated(ConfigurationError):
    """The brokers refused to create topics (a replication factor over the broker count, an ACL, a bad config)."""

    def __init__(self, failed: dict[str, str]) -> None:
        super().__init__("topics not created: " + "; ".join(f"{name}: {why}" for name, why in sorted(failed.items())))
        self.failed = failed


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    configs: dict[str, str]


def join_changelog_topic(settings: Settings) -> str:
    """The changelog of the joiner's table, as faust names it (``<app_id>-<table>-changelog``)."""
    return f"{settings.feedback.app_id}-join-changelog"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic inferloop needs. The training log, the join changelog and the promotions topic (one
    partition) are compacted (the latest record per key, kept forever); every topic takes records up to
    ``streams.max_request_bytes``."""
    s, f, k = settings.streams, settings.feedback, settings.kafka
    common = {"max.message.bytes": str(s.max_request_bytes)}
    if k.min_insync_replicas is not None:
        common["min.insync.replicas"] = str(k.min_insync_replicas)
    compacted = {**common, "cleanup.policy": "compact"}
    return [
        TopicSpec(s.images_topic, s.partitions, common),
        TopicSpec(s.predictions_topic, s.partitions, common),
        TopicSpec(s.dead_letter_topic, s.partitions, common),
        TopicSpec(s.shadow_predictions_topic, s.partitions, common),
        TopicSpec(f.topic, s.partitions, common),
        TopicSpec(f.trusted_topic, s.partitions, common),
        TopicSpec(f.training_log_topic, s.partitions, compacted),
        TopicSpec(join_changelog_topic(settings), s.partitions, compacted),
        TopicSpec(settings.model.promotions_topic, 1, compacted),  # one partition: one order of announcements
    ]


@contextlib.contextmanager
def _admin(settings: Settings) -> Iterator[Any]:
    """A kafka-python admin client of the settings' cluster, closed afterwards."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(**kafka_options(settings.kafka), client_id="inferloop-admin", request_timeout_ms=15000)
    except KafkaError as exc:
        raise BrokerUnavailable(settings.kafka.bootstrap, str(exc)) from exc
    try:
        yield admin
    finally:
        admin.close()


def existing_topics(settings: Settings) -> set[str]:
    """The names of the topics the cluster has."""
    with _admin(settings) as admin:
        return set(admin.list_topics())


def delete_topics_with_prefix(settings: Settings, prefix: str) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a bench's or a demo's own); returns their names."""
    with _admin(settings) as admin:
        names = sorted(name for name in admin.list_topics() if name.startswith(prefix))
        for start in range(0, len(names), 50):
            admin.delete_topics(names[start : start + 50], timeout_ms=30000)
    return names


def ensure_topics(settings: Settings, create: bool | None = None) -> list[str]:
    """Create the topics that do not exist yet (``create``: ``kafka.create_topics`` unless given); returns those
    created. Without creation, raises :class:`TopicsMissing` when any is missing."""
    from kafka.errors import TopicAlreadyExistsError

    create = settings.kafka.create_topics if create is None else create
    with _admin(settings) as admin:
        existing = set(admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing and not create:
            raise TopicsMissing([spec.name for spec in missing])
        if missing:
            topics = {
                spec.name: {
                    "num_partitions": spec.partitions,
                    "replication_factor": settings.kafka.replication_factor,  # -1: the broker's default
                    "configs": spec.configs,
                }
                for spec in missing
            }
            response = admin.create_topics(topics, raise_errors=False)
            failed = {
                t["name"]: t.get("error_message") or f"error {t['error_code']}"
                for t in response.get("topics", [])
                if t["error_code"] not in (0, TopicAlreadyExistsError.errno)  # 36: another process won the race
            }
            if failed:
                raise TopicsNotCreated(failed)
        return [spec.name for spec in missing]


def check_partitions(settings: Settings, names: list[str]) -> None:
    """:class:`ConfigurationError` naming each of these topics whose partition count is not
    ``streams.partitions``: the joiner places its table and judges where feedback belongs by that number, so a topic
    created (or grown) with another count would have feedback and predictions of one event meet nowhere."""
    with _admin(settings) as admin:
        described = admin.describe_topics(names)
    wrong = {
        t["name"]: len(t["partitions"])
        for t in described
        if t.get("error_code", 0) == 0 and len(t["partitions"]) != settings.streams.partitions
    }
    if wrong:
        counts = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise ConfigurationError(
            f"the joiner needs every topic it joins with INFERLOOP_STREAMS__PARTITIONS={settings.streams.partitions} "
            f"partitions, and {counts}: set the variable to the topics' count, or recreate them"
        )


def restrict_trusted_feedback(settings: Settings, writers: list[str], readers: list[str]) -> list[str]:
    """Make ``feedback.trusted_topic`` writable by ``writers`` only: Kafka ACLs allowing WRITE to these principals
    and READ to ``readers`` (the joiner's principal) on that topic, and to no one else. On a cluster whose
    authorizer allows what no ACL mentions (``allow.everyone.if.no.acl.found=true``), a topic with ACLs admits only
    what they allow; on a default-deny cluster the other topics need their own ACLs anyway. Principals are
    ``User:<name>``. Returns the ACLs created, as text. Needs the cluster's ALTER permission (a super user).

    First checks every ACL that applies to the topic (literal, prefixed, wildcard): one that lets another principal
    write it (``WRITE`` or ``ALL``, say a prefix granted to the workers) makes it fail with
    :class:`ConfigurationError` naming it, before anything is changed, since the topic would not be trusted."""
    from kafka.admin import (
        ACL,
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourcePatternFilter,
        ResourceType,
    )
    from kafka.errors import ClusterAuthorizationFailedError, KafkaError, SecurityDisabledError

    if not writers:
        raise ConfigurationError("name at least one principal that may write the trusted feedback topic")
    for principal in (*writers, *readers):
        if not principal.startswith("User:") or len(principal) <= len("User:"):
            raise ConfigurationError(f"{principal!r} is not a Kafka principal (User:<name>)")
    topic = ResourcePattern(ResourceType.TOPIC, settings.feedback.trusted_topic)
    grants = [(p, ACLOperation.WRITE) for p in writers] + [(p, ACLOperation.READ) for p in readers]
    acls = [ACL(p, "*", operation, ACLPermissionType.ALLOW, topic) for p, operation in grants]
    applying = ACLFilter(
        None,
        None,
        ACLOperation.ANY,
        ACLPermissionType.ALLOW,
        ResourcePatternFilter(ResourceType.TOPIC, settings.feedback.trusted_topic, ACLResourcePatternType.MATCH),
    )
    with _admin(settings) as admin:
        try:
            found, _ = admin.describe_acls(applying)  # first: nothing is changed when the check fails
            others = sorted(
                f"{acl.principal} {acl.operation.name} ({acl.resource_pattern.pattern_type.name} "
                f"{acl.resource_pattern.resource_name})"
                for acl in found
                if acl.operation in (ACLOperation.WRITE, ACLOperation.ALL) and acl.principal not in writers
            )
            if others:
                raise ConfigurationError(
                    f"other principals may also write {settings.feedback.trusted_topic}: {', '.join(others)}; remove "
                    "those ACLs (or narrow them), or its labels are not to be trusted (nothing was changed)"
                )
            result = admin.create_acls(acls)
        except (ClusterAuthorizationFailedError, SecurityDisabledError) as exc:
            raise ConfigurationError(f"the cluster does not let these credentials manage ACLs: {exc}") from exc
        except KafkaError as exc:
            raise BrokerUnavailable(settings.kafka.bootstrap, f"managing ACLs: {exc}") from exc
    failed = result.get("failed") or []
    if failed:
        raise ConfigurationError(f"the broker refused ACLs on {topic.resource_name}: {failed}")
    return [f"{p} {operation.name} {settings.feedback.trusted_topic}" for p, operation in grants]
