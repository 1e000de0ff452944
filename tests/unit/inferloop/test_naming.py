"""The naming convention of docs/events.md ("Naming"), written once and used everywhere: topic names and the
settings that hold them, the Helm values that render those settings, record headers, JSON fields."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from inferloop import events as ev
from inferloop.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
EVENTS_MD = (ROOT / "docs" / "events.md").read_text()
TOPIC_NAME = re.compile(r"^inferloop\.[a-z]+(-[a-z]+)*$")
HEADER_NAME = re.compile(r"^[a-z]+(-[a-z]+)*-?$")  # a trailing hyphen: the meta- prefix
SNAKE = re.compile(r"^[a-z]+(_[a-z0-9]+)*$")


def _topics(settings: Settings) -> dict[str, str]:
    """Each topic setting's environment variable and its default."""
    found = {}
    for section in ("streams", "feedback", "model"):
        for name, value in getattr(settings, section).model_dump().items():
            if name == "topic" or name.endswith("_topic"):
                found[f"INFERLOOP_{section.upper()}__{name.upper()}"] = value
    return found


def test_every_topic_follows_the_convention_and_is_documented_with_its_setting() -> None:
    topics = _topics(Settings())
    assert len(topics) == 8, topics  # images, predictions, shadow, dead letters, feedback x2, log, promotions
    for variable, default in topics.items():
        assert TOPIC_NAME.match(default), default
        assert f"`{variable}` | `{default}`" in EVENTS_MD, f"docs/events.md does not list {variable} = {default}"


def test_the_chart_renders_the_same_topic_names_into_the_same_settings() -> None:
    values = yaml.safe_load((ROOT / "helm" / "inferloop" / "values.yaml").read_text())["topics"]
    helpers = (ROOT / "helm" / "inferloop" / "templates" / "_helpers.tpl").read_text()
    rendered = dict(
        re.findall(r"^(INFERLOOP_\w+_TOPIC|INFERLOOP_FEEDBACK__TOPIC): \{\{ \.Values\.topics\.(\w+) ", helpers, re.M)
    )
    topics = _topics(Settings())
    assert set(rendered) == set(topics), "a topic setting the chart does not set, or one it invents"
    for variable, key in rendered.items():
        assert values[key] == topics[variable], (
            f"topics.{key} is {values[key]!r}, the setting's default {topics[variable]!r}"
        )


def test_record_headers_and_json_fields_follow_the_convention_and_are_documented() -> None:
    headers = [
        ev.CONTENT_TYPE_HEADER,
        ev.SOURCE_HEADER,
        ev.IMAGE_URI_HEADER,
        ev.SCHEMA_VERSION_HEADER,
        ev.METADATA_HEADER_PREFIX,
        ev.EXAMPLE_HEADER,
    ]
    for name in headers:
        assert HEADER_NAME.match(name), name
        assert f"`{name}" in EVENTS_MD, f"header {name} is not in docs/events.md"
    for cls in (ev.Prediction, ev.DeadLetter, ev.Feedback, ev.LabelledExample, ev.Promotion):
        for name in cls.__dataclass_fields__:
            assert SNAKE.match(name), f"{cls.__name__}.{name}"
            if name.endswith("_ms"):
                assert name == "at_ms" or name.endswith("_at_ms"), f"{cls.__name__}.{name}: times are *_at_ms"
