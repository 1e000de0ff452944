"""What a subscriber makes of the records it polls, without a broker (tests/integration/test_core_install.py runs it
in a group against the real one)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from inferloop.events import encode_prediction
from inferloop.kafka.subscriber import PredictionSubscriber, decode_predictions
from inferloop.settings import Settings
from tests.fakes import prediction


@dataclass(frozen=True)
class _Polled:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def test_records_that_are_not_predictions_are_counted_and_their_offsets_taken_too() -> None:
    good, later = prediction("e1"), prediction("e2", label="7")
    records = [
        _Polled("p", 0, 4, encode_prediction(good)),
        _Polled("p", 1, 9, b"not json"),
        _Polled("p", 0, 5, None),  # a tombstone
        _Polled("p", 1, 10, encode_prediction(later)),
    ]
    skipped: Counter[str] = Counter()
    taken: dict[tuple[str, int], int] = {}
    assert decode_predictions(records, skipped, taken) == [good, later]
    assert sum(skipped.values()) == 2  # by reason; never raised
    assert taken == {("p", 0): 6, ("p", 1): 11}  # the next offset of each partition: bad records are not read again


def test_a_subscriber_needs_a_group() -> None:
    with pytest.raises(ValueError, match="group"):
        PredictionSubscriber(Settings(), " ")
