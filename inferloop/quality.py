"""Online quality: accuracy per model version from feedback, and a confidence-drift signal, over rolling windows.

* **online accuracy** of a version: the share of its last ``window`` labelled predictions whose top label was
  the true one (from the training log, so only predictions that got feedback count);
* **confidence**: the mean top-1 score of its last ``window`` predictions; its **reference** is the mean over
  the version's first ``window`` predictions, and **confidence drift** is reference minus current: it grows
  when inputs move away from what the model knows, before any feedback arrives.

The joiner keeps one of these live and exports it as Prometheus gauges; ``inferloop models`` builds one from
the tails of the training log and the predictions topic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from inferloop.errors import EventDecodeError
from inferloop.events import LabelledExample, decode_prediction
from inferloop.kafka.readers import end_offsets, latest_examples, read_topic
from inferloop.settings import Settings


@dataclass(frozen=True)
class VersionQuality:
    model: str
    version: int
    labelled: int  # labelled predictions in the window
    accuracy: float | None
    predictions: int  # predictions in the confidence window
    confidence: float | None
    confidence_reference: float | None

    @property
    def confidence_drift(self) -> float | None:
        if self.confidence is None or self.confidence_reference is None:
            return None
        return round(self.confidence_reference - self.confidence, 6)


class _Rolling:
    def __init__(self, window: int) -> None:
        self.window = window
        self.correct: deque[bool] = deque(maxlen=window)
        self.confidence: deque[float] = deque(maxlen=window)
        self.reference: list[float] = []

    def add_confidence(self, score: float) -> None:
        self.confidence.append(score)
        if len(self.reference) < self.window:
            self.reference.append(score)


class RollingQuality:
    """Rolling accuracy and confidence per (model, version); with ``max_versions``, for at most that many versions
    of a model, the least recently updated forgotten first (the joiner's: versions come from records anyone who
    can write the predictions topic may forge, so neither its memory nor its metric labels may grow with them)."""

    def __init__(self, window: int, max_versions: int | None = None) -> None:
        self.window, self.max_versions = window, max_versions
        self._by_version: dict[tuple[str, int], _Rolling] = {}  # least recently updated first

    def _of(self, model: str, version: int) -> _Rolling:
        key = (model, version)
        rolling = self._by_version.pop(key, None)
        if rolling is None:
            rolling = _Rolling(self.window)
            versions = [k for k in self._by_version if k[0] == model]
            for old in versions[: max(0, len(versions) - self.max_versions + 1)] if self.max_versions else []:
                del self._by_version[old]
        self._by_version[key] = rolling
        return rolling

    def record_prediction(self, model: str, version: int, top_score: float) -> None:
        self._of(model, version).add_confidence(top_score)

    def record_label(self, model: str, version: int, correct: bool) -> None:
        self._of(model, version).correct.append(correct)

    def get(self, model: str, version: int) -> VersionQuality:
        r = self._by_version.get((model, version)) or _Rolling(self.window)
        return VersionQuality(
            model=model,
            version=version,
            labelled=len(r.correct),
            accuracy=round(sum(r.correct) / len(r.correct), 6) if r.correct else None,
            predictions=len(r.confidence),
            confidence=round(sum(r.confidence) / len(r.confidence), 6) if r.confidence else None,
            # the reference is only meaningful once it saw a whole window
            confidence_reference=round(sum(r.reference) / len(r.reference), 6)
            if len(r.reference) >= self.window
            else None,
        )

    def snapshot(self) -> list[VersionQuality]:
        return [self.get(model, version) for model, version in sorted(self._by_version)]


def label_quality(examples: Iterable[LabelledExample], model: str, window: int) -> RollingQuality:
    """Online accuracy of ``model``'s versions from labelled examples, in the order they were logged: how
    ``inferloop models`` and the trainer's accuracy trigger compute it from the log (the joiner feeds the same
    :class:`RollingQuality` live, one example at a time)."""
    quality = RollingQuality(window)
    for e in sorted(examples, key=lambda e: e.logged_at_ms):
        if e.model_name == model:
            quality.record_label(model, e.model_version, e.correct)
            if e.shadow_version is not None:  # the candidate in shadow, on the same event
                quality.record_label(model, e.shadow_version, bool(e.shadow_correct))
    return quality


def read_online_quality(settings: Settings, model: str) -> dict[int, VersionQuality]:
    """Online quality of ``model``'s versions from the tails of the training log and the predictions topic."""
    window = settings.feedback.online_window
    quality = label_quality(latest_examples(settings, idle_timeout_s=3.0).values(), model, window)
    ends = end_offsets(settings, settings.streams.predictions_topic)
    start = {p: max(0, end - window) for p, end in ends.items()}
    predictions = []
    for record in read_topic(settings, settings.streams.predictions_topic, start=start, idle_timeout_s=3.0):
        try:
            predictions.append(decode_prediction(record.value))
        except EventDecodeError:
            continue
    for p in sorted(predictions, key=lambda p: p.predicted_at_ms):
        if p.model_name == model:
            quality.record_prediction(model, p.model_version, p.scores[0])
    return {q.version: q for q in quality.snapshot()}
