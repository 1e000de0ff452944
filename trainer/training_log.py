"""The training log as the trainer's source of new labels (:class:`~trainer.data.LabelledExampleReader`).

The log is a compacted Kafka topic keyed by event id (see ``docs/model-lifecycle.md``): every record is one
labelled example, image included. A cursor is the topic's end offsets, as JSON; a model card stores the
cursor its training read up to, so the next retraining reads only what was logged after it, and a read up to
a cursor either reaches it or fails (it never ends early on an idle broker, which would skip labels for good).
Within what is read, the latest record of an event id wins (a correction), exactly as compaction will
eventually decide; records are decoded, checked and preprocessed one at a time.
Example ids are ``event:<event_id>``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter

import numpy as np
from numpy.typing import NDArray

from inferloop.events import LabelledExample
from inferloop.images.decode import ImageLimits, decode_image
from inferloop.images.errors import ImageRejected
from inferloop.images.preprocess import InputSpec, to_model_input
from inferloop.kafka.readers import end_offsets, iter_training_log, latest_examples
from inferloop.settings import Settings
from trainer.data import ExampleSet

log = logging.getLogger(__name__)
EXAMPLE_ID_PREFIX = "event:"


def example_id(event_id: str) -> str:
    return EXAMPLE_ID_PREFIX + event_id


class TrainingLogReader:
    """Reads labelled examples from the training-log topic, incrementally by cursor."""

    def __init__(self, settings: Settings, spec: InputSpec, idle_timeout_s: float = 30.0) -> None:
        """``idle_timeout_s``: how long a read up to a cursor waits for the broker before it fails."""
        self.settings, self.spec, self.idle_timeout_s = settings, spec, idle_timeout_s
        self.topic = settings.feedback.training_log_topic
        s = settings.streams
        self.limits = ImageLimits(max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels)
        self.skipped: Counter[str] = Counter()  # why examples were left out, from the last read
        self.open_ids: frozenset[str] = frozenset()  # examples of the last read labelled on the open topic

    def _offsets(self, cursor: str | None) -> dict[int, int] | None:
        if cursor is None:
            return None
        try:
            raw = json.loads(cursor)
        except json.JSONDecodeError:
            log.warning("ignoring cursor %r: not a training-log cursor", cursor)
            return None
        if not isinstance(raw, dict) or raw.get("topic") != self.topic:
            return None  # a cursor of another log (another folder or topic): read this one from its start
        return {int(p): int(o) for p, o in raw.get("offsets", {}).items()}

    def cursor(self) -> str | None:
        ends = end_offsets(self.settings, self.topic)
        if not any(ends.values()):
            return None
        return json.dumps({"topic": self.topic, "offsets": {str(p): o for p, o in sorted(ends.items())}})

    def latest(self, after: str | None = None, until: str | None = None) -> dict[str, LabelledExample]:
        """The newest record of each event id between the cursors."""
        self.skipped = Counter()
        return latest_examples(self.settings, self._offsets(after), self._offsets(until), self.skipped)

    def read(self, classes: tuple[str, ...], after: str | None, until: str | None = None) -> ExampleSet:
        """The examples logged between the cursors, each event id's newest record, preprocessed as they stream
        in (the log is never held whole). Reads up to ``until`` or raises
        :class:`~inferloop.kafka.errors.ReadIncomplete`: a cursor never moves past records that were not read.
        Records that cannot be used (undecodable, a label the model does not have, an image that does not
        decode) are left out, counted by reason in :attr:`skipped` and logged."""
        index = {c: i for i, c in enumerate(classes)}
        self.skipped = Counter()
        # event id -> (position, model input and class, or the reason its newest record is unusable, trusted)
        newest: dict[str, tuple[tuple[int, int], tuple[NDArray[np.float32], int] | str, bool]] = {}
        for record, example in iter_training_log(
            self.settings,
            self._offsets(after),
            self._offsets(until),
            self.skipped,
            idle_timeout_s=self.idle_timeout_s,
            complete=until is not None,
        ):
            position = (record.partition, record.offset)
            known = newest.get(example.event_id)
            if known is not None and known[0] > position:
                continue
            newest[example.event_id] = (position, self._usable(example, index), example.feedback_trusted)
        ids, xs, ys, open_ids = [], [], [], set()
        for event_id, (_, usable, trusted) in sorted(newest.items()):
            if isinstance(usable, str):
                self.skipped[usable] += 1
                continue
            ids.append(example_id(event_id))
            if not trusted:
                open_ids.add(example_id(event_id))
            xs.append(usable[0])
            ys.append(usable[1])
        self.open_ids = frozenset(open_ids)
        if self.skipped:
            log.warning("training log: left out %s", dict(self.skipped))
        if not ids:
            return ExampleSet.empty(self.spec, classes)
        return ExampleSet(tuple(ids), np.stack(xs), np.asarray(ys, dtype=np.int64), classes)

    def _usable(self, example: LabelledExample, index: dict[str, int]) -> tuple[NDArray[np.float32], int] | str:
        if example.label not in index:
            return "unknown_label"
        try:
            image = decode_image(example.image, example.content_type, self.limits)
        except ImageRejected as exc:
            return exc.reason
        return to_model_input(image, self.spec), index[example.label]
