"""The worker's view of the promotions topic, fed records directly (the integration tests read a real topic)."""

from __future__ import annotations

import asyncio

from inferloop.events import Promotion, encode_promotion
from inferloop.settings import Settings
from streams.promotions import PromotionWatcher


def test_the_latest_good_record_of_each_model_wins_and_bad_ones_are_skipped() -> None:
    seen: list[Promotion] = []
    watcher = PromotionWatcher(Settings(), on_change=seen.append)
    watcher._apply(b"digits", encode_promotion(Promotion("digits", 1)), 0)
    watcher._apply(b"digits", encode_promotion(Promotion("digits", 2, 3, "shadow")), 1)
    watcher._apply(b"digits", b"{not json", 2)  # another writer's bytes: skipped, the state stands
    watcher._apply(b"other", encode_promotion(Promotion("digits", 9)), 3)  # keyed for another model: skipped
    watcher._apply(b"digits", None, 4)  # a tombstone: ignored
    watcher._apply(b"cats", encode_promotion(Promotion("cats", 5)), 5)
    assert [(p.model_name, p.serving, p.shadow) for p in seen] == [
        ("digits", 1, None),
        ("digits", 2, 3),
        ("cats", 5, None),
    ]
    assert watcher._state["digits"] == Promotion("digits", 2, 3, "shadow", announced_at_ms=seen[1].announced_at_ms)


def test_nothing_is_known_before_the_topic_was_read_to_its_end() -> None:
    """A worker that has not read the whole topic yet knows no state (it waits) rather than a stale one."""

    async def scenario() -> tuple[Promotion | None, Promotion | None]:
        watcher = PromotionWatcher(Settings(kafka={"bootstrap_servers": "127.0.0.1:1"}))  # type: ignore[arg-type]
        watcher._apply(b"digits", encode_promotion(Promotion("digits", 1)), 0)
        before = watcher.current("digits")  # starts following (no broker here: it keeps retrying)
        watcher._caught_up.set()
        after = watcher.current("digits")
        await watcher.close()
        return before, after

    before, after = asyncio.run(scenario())
    assert before is None and after is not None and after.serving == 1
