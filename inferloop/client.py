"""inferloop's Python client: publish images, read predictions and dead letters, send feedback.

What the core install (``pip install inferloop``, no extras) gives a producer or consumer of the streams, in one
place, with names that stay: the settings, the events, the producers and readers, and the errors they raise. The
modules these come from are the implementation; import from here. Nothing heavy is imported (kafka-python,
pydantic only; ``lint-imports`` checks it)::

    from inferloop.client import ImageProducer, PredictionSubscriber, load_settings, send_feedback

    settings = load_settings()  # INFERLOOP_KAFKA__BOOTSTRAP_SERVERS=broker:9092, ...
    with ImageProducer(settings, source="scanner-3") as producer:
        event_id = producer.publish_bytes(png, "image/png")
    # leaving the block flushed: the broker has the event
    with PredictionSubscriber(settings, group="billing") as subscriber:
        for prediction in subscriber:  # committed batch by batch, as they are handled
            ...
    send_feedback(settings, [(event_id, "7", None)], source="reviewer")
"""

from inferloop.errors import ConfigurationError, EventDecodeError, InferloopError
from inferloop.events import DeadLetter, Feedback, ImageEvent, Prediction
from inferloop.kafka.errors import BrokerUnavailable, CommitFailed, DeliveryRefused, EventTooLarge, FeedbackError
from inferloop.kafka.producers import (
    FeedbackProducer,
    ImageProducer,
    Published,
    expand_paths,
    publish_files,
    send_feedback,
)
from inferloop.kafka.readers import read_dead_letters, read_predictions, replay_dead_letters
from inferloop.kafka.subscriber import PredictionSubscriber
from inferloop.settings import Settings, load_settings

__all__ = [
    "BrokerUnavailable",
    "CommitFailed",
    "ConfigurationError",
    "DeadLetter",
    "DeliveryRefused",
    "EventDecodeError",
    "EventTooLarge",
    "Feedback",
    "FeedbackError",
    "FeedbackProducer",
    "ImageEvent",
    "ImageProducer",
    "InferloopError",
    "Prediction",
    "PredictionSubscriber",
    "Published",
    "Settings",
    "expand_paths",
    "load_settings",
    "publish_files",
    "read_dead_letters",
    "read_predictions",
    "replay_dead_letters",
    "send_feedback",
]
