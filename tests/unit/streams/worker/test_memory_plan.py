"""The worker's memory plan: batch and buffer sizes whose worst case fits the byte budget."""

from __future__ import annotations

import pytest

from inferloop.errors import ConfigurationError
from inferloop.settings import StreamsSettings
from streams.worker.memory_plan import MIB, decode_bytes, memory_plan


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"memory_budget_mb": 128},
        {"memory_budget_mb": 64, "partitions": 12},
        {"max_request_bytes": 64 * 1024},
        {"max_request_bytes": 8 * MIB, "memory_budget_mb": 256, "max_batch": 1000},
        {"batches_in_flight": 4},
        {"batches_in_flight": 8, "memory_budget_mb": 128},
    ],
)
def test_the_worst_case_fits_the_budget_and_no_batch_exceeds_max_batch(options: dict[str, int]) -> None:
    s = StreamsSettings(**options)  # type: ignore[arg-type]
    plan = memory_plan(s)
    assert plan.worst_case_bytes(s.partitions, s.max_request_bytes, decode_bytes(s)) <= s.memory_budget_mb * MIB
    assert 1 <= plan.batch <= s.max_batch and plan.buffered >= 1
    assert plan.events_in_flight == plan.batch * s.batches_in_flight
    assert plan.partition_fetch_bytes >= s.max_request_bytes, "a partition could not fetch its largest record"


def test_near_limit_records_shrink_the_batch_and_small_ones_keep_it() -> None:
    assert memory_plan(StreamsSettings(memory_budget_mb=128)).batch < 256  # type: ignore[call-arg]
    assert memory_plan(StreamsSettings(max_request_bytes=64 * 1024)).batch == 256  # type: ignore[call-arg]


def test_a_budget_too_small_for_the_limits_is_refused_with_what_would_do() -> None:
    with pytest.raises(ConfigurationError, match="memory_budget_mb"):
        memory_plan(StreamsSettings(memory_budget_mb=16))  # type: ignore[call-arg]
