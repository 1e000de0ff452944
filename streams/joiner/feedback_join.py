"""The feedback join: predictions and feedback in, by event id; what to log, what to dead-letter, what to ignore.

Pure logic over a key-value store (a Faust table in the joiner, a dict in unit tests), so that every edge case
is decided in one place:

* a **shadow prediction** (the candidate in shadow on the same event) is kept beside the prediction and goes
  into the example, so that the training log scores both versions on the same labels;
* feedback for a prediction the joiner holds is **joined** (the app then reads the input image back and logs
  the labelled example);
* feedback that arrives **before** its prediction waits up to ``wait_s``; if no prediction comes it is
  dead-lettered as ``unknown_event``;
* feedback stays in its entry (``pending``) until the app reports it logged (:meth:`FeedbackJoin.mark_logged`)
  or dead-lettered (:meth:`FeedbackJoin.mark_settled`): a joiner that dies in between finds it in the recovered
  table, and the redelivered prediction (or, failing that, the sweep) joins it again;
* **duplicate** feedback (the label already logged for that event) is ignored, so it is idempotent;
* a **correction** (another label for an event already logged) is logged again: the training log is keyed by
  event id and its readers keep the latest record, so the later label wins;
* feedback from the **trusted** topic outranks the open topic's: once a trusted label is logged (or waits to
  be), open feedback for that event is ignored (``outranked``), so writing to the open topic cannot overwrite
  trusted evidence; a trusted label equal to an open one already logged is logged again, as trusted;
* predictions stay joinable for ``retention_s`` (counted from when the joiner saw them); after that only a small
  marker remains, for another ``retention_s``, so that late feedback is dead-lettered as ``expired_event``
  rather than waiting in vain.

Entries are JSON in the store; a small in-memory index of deadlines keeps the periodic sweep cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

from inferloop.errors import PoisonError
from inferloop.events import Feedback, Prediction
from streams.errors import FeedbackRejected


@dataclass(frozen=True)
class Origin:
    """Where a record came from, for dead letters."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Predicted:
    """What the joiner keeps of a prediction."""

    model_name: str
    model_version: int
    label: str
    score: float
    predicted_at_ms: int
    image_topic: str | None
    image_partition: int | None
    image_offset: int | None

    @staticmethod
    def of(prediction: Prediction) -> Predicted:
        return Predicted(
            prediction.model_name,
            prediction.model_version,
            prediction.labels[0],
            prediction.scores[0],
            prediction.predicted_at_ms,
            prediction.image_topic,
            prediction.image_partition,
            prediction.image_offset,
        )


@dataclass(frozen=True)
class PendingFeedback:
    label: str
    source: str
    at_ms: int
    origin: Origin
    original: bytes
    received_at_s: float
    trusted: bool = False  # from the trusted feedback topic


@dataclass(frozen=True)
class Shadowed:
    """What the joiner keeps of a shadow prediction: the candidate's version and top label."""

    model_version: int
    label: str


@dataclass
class Entry:
    """The joiner's state for one event id."""

    predicted: Predicted | None = None
    seen_at_s: float = 0.0  # when the prediction (or the shadow prediction) reached the joiner
    pending: PendingFeedback | None = None
    logged_label: str | None = None
    expired: bool = False
    shadow: Shadowed | None = None
    logged_trusted: bool = False  # the logged label came from the trusted topic

    def encode(self) -> bytes:
        raw: dict[str, Any] = {"seen_at_s": self.seen_at_s, "expired": self.expired, "logged_label": self.logged_label}
        if self.logged_trusted:
            raw["logged_trusted"] = True
        if self.shadow is not None:
            raw["shadow"] = asdict(self.shadow)
        if self.predicted is not None:
            raw["predicted"] = asdict(self.predicted)
        if self.pending is not None:
            pending = asdict(self.pending)
            pending["original"] = self.pending.original.decode("utf-8", "replace")
            del pending["trusted"]  # beside it, so that a joiner from before the trusted topic recovers the entry
            if self.pending.trusted:
                raw["pending_trusted"] = True
            raw["pending"] = pending
        return json.dumps(raw, separators=(",", ":")).encode()

    @staticmethod
    def decode(value: bytes) -> Entry:
        raw = json.loads(value)
        pending = raw.get("pending")
        if pending:
            pending = {**pending, "trusted": pending.get("trusted", raw.get("pending_trusted", False))}
        return Entry(
            predicted=Predicted(**raw["predicted"]) if raw.get("predicted") else None,
            seen_at_s=raw["seen_at_s"],
            pending=(
                PendingFeedback(
                    **{**pending, "origin": Origin(**pending["origin"]), "original": pending["original"].encode()}
                )
                if pending
                else None
            ),
            logged_label=raw.get("logged_label"),
            expired=raw.get("expired", False),
            shadow=Shadowed(**raw["shadow"]) if raw.get("shadow") else None,
            logged_trusted=raw.get("logged_trusted", False),
        )

    def deadline(self, retention_s: float, wait_s: float) -> float:
        """When this entry next needs the sweep's attention."""
        times = []
        if self.pending is not None:
            times.append(self.pending.received_at_s + wait_s)
        if self.predicted is not None or self.expired or self.shadow is not None:
            times.append(self.seen_at_s + (2 if self.expired else 1) * retention_s)
        return min(times) if times else 0.0


@dataclass(frozen=True)
class Join:
    """Feedback matched with its prediction: log it (``correction`` when another label was logged before)."""

    event_id: str
    label: str
    feedback_source: str
    feedback_at_ms: int
    predicted: Predicted
    origin: Origin
    original: bytes
    correction: bool
    shadow: Shadowed | None = None
    trusted: bool = False


@dataclass(frozen=True)
class Reject:
    """Feedback that cannot be joined: dead-letter it with ``error``'s reason."""

    event_id: str
    error: PoisonError
    origin: Origin
    original: bytes

    @property
    def reason(self) -> str:
        return self.error.reason


@dataclass(frozen=True)
class Outranked:
    """Open feedback for an event whose label comes from the trusted topic: ignored (and counted)."""

    event_id: str


class FeedbackJoin:
    """Decides the join over ``store`` (event id bytes → encoded :class:`Entry`)."""

    def __init__(self, store: MutableMapping[bytes, bytes], retention_s: float, wait_s: float) -> None:
        self.store, self.retention_s, self.wait_s = store, retention_s, wait_s
        self._deadlines: dict[bytes, float] = {}

    # -- the store --------------------------------------------------------------------------------------------

    def get(self, event_id: str) -> Entry | None:
        value = self.store.get(event_id.encode())
        return Entry.decode(value) if value else None

    def _put(self, key: bytes, entry: Entry) -> None:
        self.store[key] = entry.encode()
        self._deadlines[key] = entry.deadline(self.retention_s, self.wait_s)

    def _delete(self, key: bytes) -> None:
        self.store.pop(key, None)
        self._deadlines.pop(key, None)

    def __len__(self) -> int:
        return len(self.store)

    # -- the inputs -------------------------------------------------------------------------------------------

    def on_prediction(self, prediction: Prediction, now_s: float) -> Join | None:
        """Keep the prediction; a join when feedback was waiting for it (or joined but never logged)."""
        key = prediction.event_id.encode()
        entry = self.get(prediction.event_id) or Entry()
        if entry.predicted is not None and not entry.expired:
            # a redelivered prediction: the first one stays (the same answer, or one of the same model's versions);
            # feedback still pending was joined before a crash that kept it from the log: join it again
            return self._join(prediction.event_id, entry, entry.pending) if entry.pending is not None else None
        entry.predicted, entry.seen_at_s, entry.expired = Predicted.of(prediction), now_s, False
        self._put(key, entry)
        if entry.pending is None:
            return None
        return self._join(prediction.event_id, entry, entry.pending)

    def on_shadow(self, prediction: Prediction, now_s: float) -> None:
        """Keep the candidate's answer beside the prediction (before or after it arrives; the newest version's
        wins). An event already logged keeps its example: a shadow prediction that comes later is not scored."""
        if prediction.model_version < 1:
            return
        key = prediction.event_id.encode()
        entry = self.get(prediction.event_id) or Entry(seen_at_s=now_s)
        if entry.expired or (entry.shadow is not None and entry.shadow.model_version > prediction.model_version):
            return
        entry.shadow = Shadowed(prediction.model_version, prediction.labels[0])
        self._put(key, entry)

    def on_feedback(
        self, feedback: Feedback, origin: Origin, original: bytes, now_s: float, trusted: bool = False
    ) -> Join | Reject | Outranked | None:
        """A join, a rejection, open feedback outranked by a trusted label, or None (a duplicate, or waiting for
        the prediction). ``trusted``: it came from the trusted feedback topic."""
        key = feedback.event_id.encode()
        entry = self.get(feedback.event_id) or Entry()
        pending = PendingFeedback(feedback.label, feedback.source, feedback.at_ms, origin, original, now_s, trusted)
        if entry.expired:
            message = (
                f"the prediction for event {feedback.event_id} is older than the join retention "
                f"({self.retention_s:g} s)"
            )
            return Reject(feedback.event_id, FeedbackRejected("expired_event", message), origin, original)
        if not trusted and (
            (entry.logged_label is not None and entry.logged_trusted)
            or (entry.pending is not None and entry.pending.trusted)
        ):
            return Outranked(feedback.event_id)
        same = entry.predicted is not None and entry.logged_label == feedback.label
        if same and (entry.logged_trusted or not trusted):
            return None
        entry.pending = pending  # kept until logged; a later label replaces an earlier one
        self._put(key, entry)
        if entry.predicted is None:
            return None  # waits for the prediction
        return self._join(feedback.event_id, entry, pending)

    def _join(self, event_id: str, entry: Entry, pending: PendingFeedback) -> Join:
        assert entry.predicted is not None
        return Join(
            event_id,
            pending.label,
            pending.source,
            pending.at_ms,
            entry.predicted,
            pending.origin,
            pending.original,
            correction=entry.logged_label is not None,
            shadow=entry.shadow,
            trusted=pending.trusted,
        )

    def mark_logged(self, join: Join) -> None:
        """Record that ``join`` is in the training log (call only once the broker has acknowledged it)."""
        key = join.event_id.encode()
        entry = self.get(join.event_id)
        if entry is None:  # swept meanwhile: keep the fact that it was logged
            entry = Entry(predicted=join.predicted)
        entry.logged_label, entry.logged_trusted = join.label, join.trusted
        if entry.pending is not None and entry.pending.origin == join.origin:
            entry.pending = None  # a label that came later stays pending
        self._put(key, entry)

    def mark_settled(self, reject: Reject) -> None:
        """Record that ``reject`` is dead-lettered (once acknowledged): its feedback no longer waits."""
        key = reject.event_id.encode()
        entry = self.get(reject.event_id)
        if entry is None or entry.pending is None or entry.pending.origin != reject.origin:
            return
        entry.pending = None
        if entry.predicted is None and not entry.expired and entry.logged_label is None:
            self._delete(key)
        else:
            self._put(key, entry)

    # -- expiry -----------------------------------------------------------------------------------------------

    def _index(self) -> Iterator[tuple[bytes, float]]:
        if len(self._deadlines) != len(self.store):  # recovered from the changelog, or rebalanced: rebuild
            self._deadlines = {
                key: Entry.decode(value).deadline(self.retention_s, self.wait_s) for key, value in self.store.items()
            }
        return iter(list(self._deadlines.items()))

    def sweep(
        self, now_s: float, owns: Callable[[bytes], bool] = lambda key: True, most: int = 256
    ) -> tuple[list[Join], list[Reject]]:
        """What is due, of the keys this instance ``owns`` (another joiner sweeps the rest; a rebalance can leave
        their entries here), at most ``most`` joins and rejects a call: feedback that waited too long for its
        prediction (rejects, settled by the caller once dead-lettered), feedback joined but never logged (joins
        again), predictions past retention, old markers."""
        joins: list[Join] = []
        rejects: list[Reject] = []
        for key, deadline in self._index():
            if deadline > now_s or not owns(key):
                continue
            if len(joins) + len(rejects) >= most:
                break
            value = self.store.get(key)
            if not value:
                self._deadlines.pop(key, None)
                continue
            entry = Entry.decode(value)
            if entry.pending is not None:
                p = entry.pending
                if entry.predicted is not None:
                    joins.append(self._join(key.decode(), entry, p))
                else:
                    message = f"no prediction for event {key.decode()} arrived within {self.wait_s:g} s of its feedback"
                    rejects.append(
                        Reject(key.decode(), FeedbackRejected("unknown_event", message), p.origin, p.original)
                    )
                self._deadlines[key] = now_s + self.wait_s  # not again before the caller had time to settle it
                continue
            if entry.expired and entry.seen_at_s + 2 * self.retention_s <= now_s:
                self._delete(key)
                continue
            if entry.predicted is not None and entry.seen_at_s + self.retention_s <= now_s:
                entry = Entry(
                    seen_at_s=entry.seen_at_s,
                    expired=True,
                    logged_label=entry.logged_label,
                    logged_trusted=entry.logged_trusted,
                )
            elif entry.predicted is None and entry.shadow is not None and entry.seen_at_s + self.retention_s > now_s:
                self._put(key, entry)  # a shadow prediction waiting for its prediction
                continue
            if entry.predicted is None and not entry.expired:
                self._delete(key)
            else:
                self._put(key, entry)
        return joins, rejects
