"""How many records the worker may hold, from a byte budget: faust and aiokafka count records, not bytes.

A record is counted at its largest (``streams.max_request_bytes``), so the plan holds whatever the images
weigh. Records live in four places: aiokafka's prefetched fetch per assigned partition (bounded by
``max_partition_fetch_bytes``, and counted twice: the raw response and the records parsed from it), the records
one poll hands faust (``max_poll_records``), faust's stream buffer (``stream_buffer_maxsize``) and the batches
in flight (``streams.batches_in_flight`` of them: the agent takes the next batch while one waits on Triton, and
no more). Decoding needs room too: two images at the pixel limit, as 32-bit
pixels. The budget is split so that all of it stays within it; measured with near-limit images under a slow
Triton (tests/integration/test_faults.py), RSS grows by less than the budget. Not counted: the model inputs of
the batches in flight (each event's preprocessed tensor, stacked per request and serialised for Triton: about
three copies of batch x input size), small for the digits model (3 KB an event) but not for a large input
(224x224x3 floats: 600 KB an event): lower ``streams.max_batch`` or raise the memory limit accordingly.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferloop.errors import ConfigurationError
from inferloop.settings import StreamsSettings

MIB = 1024 * 1024


@dataclass(frozen=True)
class MemoryPlan:
    batch: int  # events per batch
    in_flight: int  # batches worked on at once (streams.batches_in_flight)
    poll_records: int  # records one poll hands faust
    buffered: int  # faust's stream buffer, in records
    partition_fetch_bytes: int  # aiokafka's prefetch per assigned partition

    @property
    def events_in_flight(self) -> int:
        return self.batch * self.in_flight

    def worst_case_bytes(self, partitions: int, record_bytes: int, decode_bytes: int) -> int:
        records = (self.events_in_flight + self.poll_records + self.buffered) * record_bytes
        return records + 2 * partitions * self.partition_fetch_bytes + decode_bytes


def decode_bytes(s: StreamsSettings) -> int:
    """Room for decoding: two images at the pixel limit, 4 bytes a pixel."""
    return 2 * 4 * s.max_image_pixels


def memory_plan(s: StreamsSettings) -> MemoryPlan:
    """Batch and buffer sizes whose worst case (every record ``max_request_bytes``) fits ``memory_budget_mb``;
    never a batch over ``max_batch``, nor a buffer over four batches (latency, not memory, bounds it then)."""
    budget, record = s.memory_budget_mb * MIB, s.max_request_bytes
    partition_fetch = max(record, budget // (8 * s.partitions))  # a quarter of the budget to prefetching
    records = (budget - 2 * s.partitions * partition_fetch - decode_bytes(s)) // record
    shares = s.batches_in_flight + 2  # the batches in flight, one poll, the stream buffer
    if records < shares:
        least = (shares * record + 2 * s.partitions * record + decode_bytes(s)) // MIB + 1
        raise ConfigurationError(
            f"streams.memory_budget_mb ({s.memory_budget_mb}) cannot hold {shares} {record}-byte records (one per "
            f"batch in flight, a poll and the buffer), the prefetch of {s.partitions} partitions and the decoding of "
            f"{s.max_image_pixels}-pixel images: give it {least} or more, or lower streams.max_request_bytes, "
            "streams.max_image_pixels or streams.batches_in_flight"
        )
    batch = max(1, min(s.max_batch, records // shares))
    return MemoryPlan(
        batch=batch,
        in_flight=s.batches_in_flight,
        poll_records=batch,
        buffered=max(1, min(4 * s.max_batch, records - (s.batches_in_flight + 1) * batch)),
        partition_fetch_bytes=partition_fetch,
    )
