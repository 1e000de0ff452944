"""The six wire formats of :mod:`inferloop.events` as fuzzing sees them: for each, a strategy of its own records
(mostly well framed, their fields then damaged), an oracle that tells whether a value gets past the framing (magic,
version, header length, JSON object, ``schema_version``) into the decoder's field checks, and the reasons the
decoder may give on either side of that line.

Valid field values come from each dataclass's type annotations (overridden where a decoder bounds a field further),
so a field added to a dataclass is generated, dropped and damaged without a change here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import re
import struct
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

from hypothesis import strategies as st

from inferloop import events as ev


@contextlib.contextmanager
def without_project_constants() -> Iterator[None]:
    """Hypothesis draws now and then a literal found in the project's own modules that are loaded (not tests): which
    those are depends on what the run imported and on every edit to product code, so a derandomized run would try
    other cases (and report other figures) after any such edit, or run alone rather than with the suite. Inside
    this block it draws none: the cases depend on the strategies and the test alone."""
    from hypothesis.internal.conjecture import providers  # no public switch; fails loudly if this moves
    from hypothesis.internal.constants_ast import Constants

    with mock.patch.object(providers, "_get_local_constants", Constants):
        providers.CONSTANTS_CACHE.cache.clear()  # the constants allowed per kind of draw, from earlier tests
        try:
            yield
        finally:
            providers.CONSTANTS_CACHE.cache.clear()


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 flips a byte, 1 inserts one, 2 deletes one, 3 truncates."""
    out = bytearray(data)
    for kind, position, byte in edits:
        if not out:
            break
        at = position % len(out)
        if kind == 0:
            out[at] ^= byte or 1
        elif kind == 1:
            out.insert(at, byte)
        elif kind == 2:
            del out[at]
        else:
            del out[at:]
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=8)


# -- JSON with values nested deeper than the interpreter's recursion limit ---------------------------------------


@dataclass(frozen=True)
class Nested:
    """A JSON value nested ``depth`` levels deep (``[[[...]]]`` or ``{"a":{"a":...}}``), spliced in as text."""

    depth: int
    brace: bool = False

    def text(self) -> str:
        return '{"a":' * self.depth + "1" + "}" * self.depth if self.brace else "[" * self.depth + "]" * self.depth


_NESTED = re.compile(r'"\\u0000nested:(\d+):([01])\\u0000"')


def dumps(document: Any) -> bytes:
    """``document`` as compact JSON (any :class:`Nested` inside written out)."""

    def placeholder(value: Any) -> str:
        if isinstance(value, Nested):
            return f"\0nested:{value.depth}:{int(value.brace)}\0"
        raise TypeError(f"{type(value).__name__} is not JSON")

    text = json.dumps(document, separators=(",", ":"), default=placeholder)
    return _NESTED.sub(lambda m: Nested(int(m[1]), m[2] == "1").text(), text).encode()


# -- field values --------------------------------------------------------------------------------------------------

IDS = st.one_of(st.text(min_size=1, max_size=24), st.sampled_from(["a" * ev.MAX_ID_CHARS, "digits", "7", "é"]))
COUNTS = st.one_of(st.integers(0, 2**53), st.sampled_from([0, 1, 2**63]))
NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53))
LONG_TEXTS = [
    "a" * n for n in (ev.MAX_ID_CHARS + 1, ev.MAX_TOPIC_CHARS + 1, ev.MAX_SOURCE_CHARS + 1, ev.MAX_METADATA_CHARS + 1)
] + ["a" * ev.MAX_FEEDBACK_BYTES, "x" * (ev.MAX_HEADER_BYTES + 1)]
# What a mutation writes into a field: every JSON type, wrong signs and sizes, booleans for numbers, texts just over
# each bound, values nested past the recursion limit.
JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([-1, 0, 1, -(2**63), 2**63, 2**64, 10**400, 1.5, -0.0]),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(LONG_TEXTS),
    st.lists(st.one_of(st.integers(), st.text(max_size=4), st.none()), max_size=3),
    st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=4), st.booleans()), max_size=3),
    st.builds(Nested, st.sampled_from([3, 1_500, 5_000]), st.booleans()),
)


def valid_values(hint: Any) -> st.SearchStrategy[Any]:
    """Values of type ``hint`` that any decoder accepts in a field so annotated (texts non-empty and short,
    integers non-negative); a decoder's narrower bounds are its format's ``overrides``."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        others = [a for a in args if a is not type(None)]
        assert len(others) == 1, f"no strategy for {hint!r}: add an override"
        return st.none() | valid_values(others[0])
    if hint is str:
        return IDS
    if hint is bool:
        return st.booleans()
    if hint is int:
        return COUNTS
    if hint is float:
        return NUMBERS
    if hint is bytes:
        return st.binary(min_size=1, max_size=64)
    if typing.get_origin(hint) is list:
        return st.lists(valid_values(args[0]), min_size=1, max_size=3)
    if typing.get_origin(hint) is dict:
        return st.dictionaries(st.text(max_size=8), valid_values(args[1]), max_size=3)
    raise TypeError(f"no strategy for {hint!r}: add an override")


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type ``hint`` (an int is a float; a bool is neither)."""
    args = typing.get_args(hint)
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(conforms(v, args[0]) for v in value)
    if typing.get_origin(hint) is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    return isinstance(value, hint)


# -- the formats ---------------------------------------------------------------------------------------------------


class Case:
    """One value for a decoder; ``intact`` is the record it encodes when nothing was damaged."""

    def __init__(self, kind: str, value: bytes | None, intact: Any = None) -> None:
        self.kind, self.value, self.intact = kind, value, intact

    def __repr__(self) -> str:  # what hypothesis shows of a failing case: a value nested 1,500 deep is long
        if self.value is None:
            return f"Case({self.kind}: None)"
        shown = self.value if len(self.value) <= 400 else self.value[:400] + b"..."
        return f"Case({self.kind}, {len(self.value):,} bytes: {shown!r})"


DROP, SET, PAYLOAD = "drop", "set", "<payload>"
RAW = st.none() | st.binary(max_size=512)
EXTRA_KEYS = ("schema_version", "image", "unknown", "", "__class__")
# How often each kind of case comes, in tenths: records well framed with 1-3 fields damaged, records intact, frames
# or documents damaged around their fields, valid encodings damaged byte by byte, arbitrary bytes.
KINDS = ("record", "raw", "record", "envelope", "record", "bytes", "record", "intact", "record", "raw")


@dataclass(frozen=True)
class Format:
    """One wire format: its dataclass, codec, field strategies, framing and the reasons its decoder gives."""

    name: str
    cls: type
    decode: Callable[[bytes | None], Any]
    encode: Callable[[Any], bytes]
    shallow_reasons: frozenset[str]  # refusals of the frame or document around the fields
    deep_reasons: frozenset[str]  # refusals of the fields themselves
    overrides: dict[str, st.SearchStrategy[Any]] = dataclasses.field(default_factory=dict)
    joint: tuple[tuple[str, ...], st.SearchStrategy[dict[str, Any]]] | None = None  # fields bound to each other
    magic: bytes | None = None  # a frame's; None: a JSON document
    max_bytes: int | None = None  # the decoder refuses longer values before parsing them
    checks_schema: bool = True  # the decoder refuses a schema_version other than 1
    check: Callable[[Any], None] | None = None  # more that must hold of a decoded record

    @functools.cached_property
    def records(self) -> st.SearchStrategy[Any]:
        """Valid records: every field from the dataclass's annotations or this format's overrides."""
        hints = typing.get_type_hints(self.cls)
        joint_names, joint = self.joint or ((), st.just({}))
        names = [
            f.name for f in dataclasses.fields(self.cls) if f.name != "schema_version" and f.name not in joint_names
        ]
        fields = st.fixed_dictionaries({n: self._valid(n, hints[n]) for n in names})
        return st.builds(lambda a, b: self.cls(**a, **b), fields, joint)

    @functools.cached_property
    def mutations(self) -> st.SearchStrategy[list[tuple[str, str, Any]]]:
        """1-3 edits of a record's document: a key (a field, one of a few more, or for a frame the payload after
        the header) dropped or set to junk."""
        keys = sorted({f.name for f in dataclasses.fields(self.cls)} | set(EXTRA_KEYS))
        keys += [PAYLOAD] if self.magic is not None else []
        edit = st.tuples(st.sampled_from([DROP, SET, SET]), st.sampled_from(keys), JUNK)
        return st.lists(edit, min_size=1, max_size=3)

    def _valid(self, name: str, hint: Any) -> st.SearchStrategy[Any]:
        return self.overrides[name] if name in self.overrides else valid_values(hint)

    # framing: from an encoded record to its document (and payload) and back, and the oracle
    def unpack(self, value: bytes) -> tuple[dict[str, Any], bytes]:
        if self.magic is None:
            return json.loads(value), b""
        (length,) = struct.unpack_from(">I", value, 4)
        return json.loads(value[8 : 8 + length]), value[8 + length :]

    def pack(self, document: Any, payload: bytes = b"", version: int = 1, length: int | None = None) -> bytes:
        raw = dumps(document)
        if self.magic is None:
            return raw
        return struct.pack(">3sBI", self.magic, version, len(raw) if length is None else length) + raw + payload

    def reaches_fields(self, value: bytes | None) -> bool:
        """Whether ``value`` is well framed (what the decoder checks before any field), whatever its fields."""
        if self.magic is None:
            if self.max_bytes is not None and (not value or len(value) > self.max_bytes):
                return False
            document = _json(value or b"")
            if not isinstance(document, dict):
                return False
            version = document.get("schema_version")
            return not self.checks_schema or (type(version) is int and version == 1)  # not true, not 1.0
        if not value or len(value) < 8 or value[:3] != self.magic:
            return False
        _, version, length = struct.unpack_from(">3sBI", value)
        if version != 1 or length > ev.MAX_HEADER_BYTES or 8 + length > len(value):
            return False
        return isinstance(_json(value[8 : 8 + length]), dict)

    def cases(self) -> st.SearchStrategy[Case]:
        """Values for this format's decoder, of each of :data:`KINDS`."""
        return _cases(self)

    def damage_envelope(self, document: dict[str, Any], payload: bytes, which: int, at: int) -> bytes:
        """The record's document whole, its frame or envelope damaged: damage ``which``, at or with ``at``."""
        whole = self.pack(document, payload)
        not_object = [[document], "text", 3, None, True][at % 5]
        common = [
            whole[: at % max(len(whole), 1)],  # truncated
            self.pack(not_object, payload),
            whole[:8] + b"\xff\xfe" + whole[10:],  # a frame's header (or a document) not UTF-8
            self.pack({**document, "pad": "x" * max(self.max_bytes or 0, ev.MAX_HEADER_BYTES)}, payload),  # oversize
        ]
        if self.magic is None:
            version = [0, 2, "1", None, 1.5, [1], DROP][at % 7]
            unversioned = {k: v for k, v in document.items() if k != "schema_version"}
            versioned = self.pack(unversioned | ({} if version == DROP else {"schema_version": version}))
            return [*common, versioned, b"\xff" + whole][which % 6]
        header = len(dumps(document))
        magic = [m for m in (b"ILE", b"ILX", b"ile", b"\0\0\0", b'{"e') if m != self.magic][at % 4]
        version = [0, 2, 255][at % 3]
        length = [header - 1, header + 1, 0, ev.MAX_HEADER_BYTES + 1, 2**32 - 1][at % 5]
        return [
            *common,
            magic + whole[3:],
            self.pack(document, payload, version=version),
            self.pack(document, payload, length=length),
        ][which % 7]


def _json(value: bytes) -> Any:
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return None


@st.composite
def _cases(draw: st.DrawFn, fmt: Format) -> Case:
    kind = draw(st.sampled_from(KINDS))
    if kind == "raw":
        return Case(kind, draw(RAW | st.binary(max_size=64).map((fmt.magic or b"{").__add__)))
    record = draw(fmt.records)
    encoded = fmt.encode(record)
    if kind == "bytes":
        return Case(kind, mutate(encoded, draw(EDITS)))
    if kind == "intact":
        return Case(kind, encoded, record)
    document, payload = fmt.unpack(encoded)
    if kind == "envelope":
        return Case(kind, fmt.damage_envelope(document, payload, draw(st.integers(0, 6)), draw(st.integers(0, 2**16))))
    for op, key, value in draw(fmt.mutations):
        if key == PAYLOAD:
            payload = b"" if op == DROP else value.encode() if isinstance(value, str) else dumps(value)
        elif op == DROP:
            document.pop(key, None)
        else:
            document[key] = value
    return Case(kind, fmt.pack(document, payload))


def _serving_and_shadow(serving: int) -> st.SearchStrategy[dict[str, Any]]:
    shadow = st.none() | st.integers(1, 2**31).filter(lambda v: v != serving)
    return st.fixed_dictionaries({"serving": st.just(serving), "shadow": shadow})


def _labels_and_scores(n: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"labels": st.lists(IDS, min_size=n, max_size=n), "scores": st.lists(NUMBERS, min_size=n, max_size=n)}
    )


URIS = st.sampled_from(["file:///images/a.png", "s3://bucket/a.png", "::", "file:///etc/passwd"]) | IDS
FIELD_REASONS = frozenset({"missing_field", "bad_field"})
FORMATS = [
    Format(
        "image_event",
        ev.ImageEvent,
        ev.decode_image_event,
        ev.encode_image_event,
        frozenset({"empty_value", "not_an_image_event", "unknown_schema_version", "bad_header"}),
        FIELD_REASONS | {"missing_image"},
        overrides={"content_type": st.sampled_from(["image/png", "image/jpeg", "text/plain"]) | IDS},
        joint=(
            ("image", "image_uri"),
            st.fixed_dictionaries({"image": st.binary(min_size=1, max_size=64), "image_uri": st.none() | URIS})
            | st.fixed_dictionaries({"image": st.just(b""), "image_uri": URIS}),
        ),
        magic=ev.IMAGE_MAGIC,
        check=ev.check_image_event,  # what the worker decodes, a producer's own check accepts
    ),
    Format(
        "prediction",
        ev.Prediction,
        ev.decode_prediction,
        ev.encode_prediction,
        frozenset({"bad_prediction", "unknown_schema_version"}),
        FIELD_REASONS | {"bad_prediction"},  # labels and scores, and the dataclass's own refusals
        joint=(("labels", "scores"), st.integers(1, 4).flatmap(_labels_and_scores)),
    ),
    Format(
        "dead_letter",
        ev.DeadLetter,
        ev.decode_dead_letter,
        ev.encode_dead_letter,
        frozenset({"bad_dead_letter", "unknown_schema_version"}),
        FIELD_REASONS | {"bad_dead_letter"},  # the dataclass's own refusals
    ),
    Format(
        "feedback",
        ev.Feedback,
        ev.decode_feedback,
        ev.encode_feedback,
        frozenset({"empty_value", "bad_field", "not_feedback", "unknown_schema_version"}),  # bad_field: too long
        FIELD_REASONS,
        max_bytes=ev.MAX_FEEDBACK_BYTES,
    ),
    Format(
        "labelled_example",
        ev.LabelledExample,
        ev.decode_labelled_example,
        ev.encode_labelled_example,
        frozenset({"empty_value", "not_a_labelled_example", "unknown_schema_version", "bad_header"}),
        FIELD_REASONS,
        joint=(
            ("shadow_version", "shadow_label"),
            st.fixed_dictionaries({"shadow_version": st.none(), "shadow_label": st.just("")})
            | st.fixed_dictionaries({"shadow_version": COUNTS, "shadow_label": IDS}),
        ),
        magic=ev.EXAMPLE_MAGIC,
    ),
    Format(
        "promotion",
        ev.Promotion,
        ev.decode_promotion,
        ev.encode_promotion,
        frozenset({"bad_promotion", "unknown_schema_version"}),
        FIELD_REASONS | {"bad_promotion"},  # the dataclass's own refusals
        overrides={
            "action": st.sampled_from(ev.PROMOTION_ACTIONS),
            "evidence": st.dictionaries(
                st.text(max_size=8), st.none() | NUMBERS | st.text(max_size=20), max_size=ev.MAX_EVIDENCE_ENTRIES
            ),
        },
        joint=(("serving", "shadow"), st.integers(1, 2**31).flatmap(_serving_and_shadow)),
    ),
]
