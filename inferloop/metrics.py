"""Prometheus metrics of the worker and the joiner, built against an injected registry.

Units in seconds; counters get ``_total`` from the client library.
"""

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
        self.announced_version = Gauge(
            "inferloop_announced_model_version",
            "The version the promotions topic announces, as this worker read it (what its next inference names).",
            ["model"],
            registry=registry,
        )
        self.announced_shadow_version = Gauge(
            "inferloop_announced_shadow_version",
            "The candidate in shadow the promotions topic announces, as this worker read it (0: none).",
            ["model"],
            registry=registry,
        )
        self.shadow_predictions = Counter(
            "inferloop_shadow_predictions",
            "Predictions of the candidate in shadow written to the shadow-predictions topic (acknowledged).",
            ["model", "version"],
            registry=registry,
        )
        self.shadow_failures = Counter(
            "inferloop_shadow_failures",
            "Shadow inferences that failed (the events' predictions are unaffected).",
            ["model"],
            registry=registry,
        )
        self.consumer_lag = consumer_lag_gauge(registry)


class JoinerMetrics:
    """Everything the feedback joiner reports, online quality included."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.feedback_received = Counter(
            "inferloop_feedback_received", "Feedback records taken from the feedback topic.", registry=registry
        )
        self.predictions_seen = Counter(
            "inferloop_join_predictions", "Predictions the joiner took into its table.", registry=registry
        )
        self.shadow_predictions_seen = Counter(
            "inferloop_join_shadow_predictions",
            "Shadow predictions (the candidate in shadow) the joiner took into its table.",
            registry=registry,
        )
        self.examples_logged = Counter(
            "inferloop_training_examples_logged",
            "Labelled examples written to the training log (corrections included).",
            ["model", "version"],
            registry=registry,
        )
        self.feedback_outcomes = Counter(
            "inferloop_feedback_outcomes",
            "What became of feedback: joined, correction, duplicate, waiting (for its prediction), outranked (open "
            "feedback for an event whose label came from the trusted topic).",
            ["outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "inferloop_feedback_dead_letters",
            "Feedback routed to the dead-letter topic.",
            ["reason"],
            registry=registry,
        )
        self.table_entries = Gauge(
            "inferloop_join_table_entries", "Event ids the joiner holds (predictions, waiting feedback, markers).",
            registry=registry,
        )  # fmt: skip
        self.online_accuracy = Gauge(
            "inferloop_online_accuracy",
            "Share of a version's last labelled predictions (rolling window) whose top label was right.",
            ["model", "version"],
            registry=registry,
        )
        self.online_labelled = Gauge(
            "inferloop_online_labelled_predictions",
            "Labelled predictions in the online-accuracy window.",
            ["model", "version"],
            registry=registry,
        )
        self.confidence = Gauge(
            "inferloop_prediction_confidence",
            "Mean top-1 score of a version's last predictions (rolling window).",
            ["model", "version"],
            registry=registry,
        )
        self.consumer_lag = consumer_lag_gauge(registry)
        self.confidence_drift = Gauge(
            "inferloop_confidence_drift",
            "Mean top-1 score of a version's first window of predictions minus that of its last window.",
            ["model", "version"],
            registry=registry,
        )


def consumer_lag_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "inferloop_consumer_lag",
        "Records in a partition this process owns that it has not consumed yet (high watermark - position).",
        ["app", "topic", "partition"],
        registry=registry,
    )


async def export_consumer_lag(app: object, app_id: str, gauge: Gauge, topics: set[str]) -> None:
    """Set ``gauge`` from a Faust app's consumer: one series per assigned partition of ``topics``."""
    consumer = app.consumer  # type: ignore[attr-defined]
    gauge.clear()
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        position = await consumer.position(tp)
        highwater = consumer.highwater(tp)
        if position is None or highwater is None:
            continue
        gauge.labels(app_id, tp.topic, str(tp.partition)).set(max(0, highwater - position))


class TrainerMetrics:
    """What ``inferloop trainer`` reports: runs by outcome, pending labels, the last publication."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.runs = Counter(
            "inferloop_trainer_runs",
            "Trainer checks by outcome: published (a candidate verified and in shadow), shadow (waiting for live "
            "labels), promoted, rejected (by the gate or in shadow), skipped (no trigger), failed.",
            ["model", "outcome"],
            registry=registry,
        )
        self.shadow_labels = Gauge(
            "inferloop_trainer_shadow_live_labels",
            "Live labels on events both the serving version and the candidate in shadow answered (0: none in shadow).",
            ["model"],
            registry=registry,
        )
        self.new_labels = Gauge(
            "inferloop_trainer_new_labels",
            "Labelled examples logged since the serving version was trained.",
            ["model"],
            registry=registry,
        )
        self.serving_created = Gauge(
            "inferloop_model_version_created_timestamp_seconds",
            "When the serving version was trained (Unix time, from its model card).",
            ["model"],
            registry=registry,
        )
        self.serving_version = Gauge(
            "inferloop_trainer_serving_version",
            "The version serving after the last check.",
            ["model"],
            registry=registry,
        )
        self.training_seconds = Gauge(
            "inferloop_trainer_training_seconds", "Duration of the last training run.", ["model"], registry=registry
        )


def scrape(url: str, name: str, timeout_s: float = 5.0) -> list[tuple[dict[str, str], float]]:
    """The samples of metric ``name`` (labels, value) on a ``/metrics`` endpoint, read with the client's parser."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own endpoint
        text = response.read().decode()
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]
