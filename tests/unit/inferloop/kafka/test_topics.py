"""The topics inferloop needs: every one, its partitions and configs (the broker calls are integration tests)."""

from __future__ import annotations

from inferloop.kafka.topics import join_changelog_topic, topic_specs
from inferloop.settings import Settings


def test_every_topic_and_the_joiners_changelog_with_their_configs() -> None:
    settings = Settings(kafka={"min_insync_replicas": 2}, streams={"partitions": 6})  # type: ignore[arg-type]
    specs = {t.name: t for t in topic_specs(settings)}
    assert set(specs) == {
        "inferloop.images",
        "inferloop.predictions",
        "inferloop.dead-letters",
        "inferloop.feedback",
        "inferloop.trusted-feedback",
        "inferloop.training-log",
        "inferloop-joiner-join-changelog",
        "inferloop.shadow-predictions",
        "inferloop.promotions",
    }
    assert join_changelog_topic(settings) == "inferloop-joiner-join-changelog"
    assert specs.pop("inferloop.promotions").partitions == 1, "one order of announcements"
    assert {t.partitions for t in specs.values()} == {6}
    assert all(t.configs["min.insync.replicas"] == "2" for t in specs.values())
    compacted = {t.name for t in topic_specs(settings) if t.configs.get("cleanup.policy") == "compact"}
    assert compacted == {"inferloop.training-log", "inferloop-joiner-join-changelog", "inferloop.promotions"}
    assert "min.insync.replicas" not in topic_specs(Settings())[0].configs  # unset: the broker's default
