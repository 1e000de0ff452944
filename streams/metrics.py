"""Prometheus metrics of the worker, built against an injected registry (units in seconds, counters _total)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class WorkerMetrics:
    """Everything the classify agent reports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_received = Counter(
            "inferloop_events_received", "Image events taken from the images topic.", registry=registry
        )
        self.predictions = Counter(
            "inferloop_predictions",
            "Predictions produced (acknowledged by the broker).",
            ["model", "version"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "inferloop_dead_letters", "Events routed to the dead-letter topic.", ["reason"], registry=registry
        )
        self.batch_size = Histogram(
            "inferloop_batch_size", "Events per batch the agent processed.", buckets=BATCH_BUCKETS, registry=registry
        )
        self.triton_latency = Histogram(
            "inferloop_triton_request_seconds",
            "Duration of one inference call to Triton.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "inferloop_end_to_end_latency_seconds",
            "From the event's produced_at to its prediction being acknowledged.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.in_flight = Gauge(
            "inferloop_events_in_flight", "Events taken but not yet predicted or dead-lettered.", registry=registry
        )
        self.retries = Counter(
            "inferloop_triton_retries",
            "Inference calls retried after a retryable failure.",
            ["reason"],
            registry=registry,
        )
        self.serving_version = Gauge(
            "inferloop_serving_model_version", "Model version that answered last.", ["model"], registry=registry
        )
