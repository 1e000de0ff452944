"""The six wire formats of :mod:`inferloop.events` as fuzzing sees them. Four are JSON documents (prediction, dead
letter, feedback, promotion); two are Kafka records in the image events' convention (image event, training-log
example: the key the event id, the value the image, the rest in headers). For each format: a strategy of its own
values (mostly well formed, their fields then damaged), an oracle that tells whether a value gets past its envelope
into the decoder's field checks, and the reasons the decoder may give on either side of that line.

The envelope of a JSON document is the document itself: a JSON object (strict: no NaN or infinities, no nesting
past the parser's limit), within the decoder's size bound if it has one, whose ``schema_version`` is the integer 1.
The envelope of a record is what its decoder checks before any field: a key that is an event id (UTF-8, 1-200
characters), at most ``MAX_HEADERS`` headers, each header of the convention (``content-type``, ``source``,
``image-uri``, ``schema-version``, ``training-example``, ``meta-*``; names without regard to case) UTF-8 of at most
``MAX_HEADER_BYTES`` and none twice, a ``schema-version`` header absent or exactly ``1``, and for a training-log
record, which has no metadata field, its ``meta-*`` headers within the metadata bounds and a ``training-example``
header holding a JSON object. The oracle implements these rules itself,
from the public constants of :mod:`inferloop.events`; it never calls the decoders' helpers.

Valid field values come from each dataclass's type annotations (overridden where a decoder bounds a field further),
so a field added to a dataclass is generated without a change here, and dropped and damaged too when it travels in
a JSON document (a document format, or a training-log record's ``training-example`` header).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import re
import string
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


def refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def strict_json(data: bytes) -> Any:
    """The JSON document in ``data`` as a strict reader takes it (no ``NaN``, no infinities, none nested past the
    parser's recursion limit); ``None`` when there is none."""
    try:
        return json.loads(data, parse_constant=refuse_constant, parse_float=finite_float)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


# -- field values --------------------------------------------------------------------------------------------------

IDS = st.one_of(st.text(min_size=1, max_size=24), st.sampled_from(["a" * ev.MAX_ID_CHARS, "digits", "7", "é"]))
COUNTS = st.one_of(st.integers(0, 2**53), st.sampled_from([0, 1, 2**63 - 1]))  # a Java long holds them
NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53))
LONG_TEXTS = [
    "a" * (n + 1)
    for n in (ev.MAX_ID_CHARS, ev.MAX_TOPIC_CHARS, ev.MAX_SOURCE_CHARS, ev.MAX_METADATA_CHARS, ev.MAX_URI_CHARS)
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
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return st.lists(valid_values(args[0]), max_size=3).map(tuple)
    if typing.get_origin(hint) is tuple:
        return st.tuples(*(valid_values(a) for a in args))
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
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return isinstance(value, tuple) and all(conforms(v, args[0]) for v in value)
    if typing.get_origin(hint) is tuple:
        return (
            isinstance(value, tuple)
            and len(value) == len(args)
            and all(conforms(v, a) for v, a in zip(value, args, strict=True))
        )
    if typing.get_origin(hint) is dict:
        return isinstance(value, dict) and all(conforms(k, args[0]) and conforms(v, args[1]) for k, v in value.items())
    return isinstance(value, hint)


URIS = st.sampled_from(["file:///images/a.png", "s3://bucket/a.png", "::", "file:///etc/passwd"]) | IDS


# -- record headers ------------------------------------------------------------------------------------------------

# The headers of the image events' convention, which both record decoders read (a name without regard to case),
# and the prefix of a metadata header; any other header is left alone.
CONVENTION = (
    ev.CONTENT_TYPE_HEADER,
    ev.SOURCE_HEADER,
    ev.IMAGE_URI_HEADER,
    ev.SCHEMA_VERSION_HEADER,
    ev.EXAMPLE_HEADER,
)
META = ev.METADATA_HEADER_PREFIX
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def header_name(name: str) -> str:
    """A header's name as the convention compares it: without regard to case."""
    return name.translate(_ASCII_LOWER)


def spell(name: str, mask: int) -> str:
    """``name`` with each character whose bit is set in ``mask`` in upper case (the same header to the decoders)."""
    return "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate(name))


def spellings(name: str) -> st.SearchStrategy[str]:
    """``name`` in any mix of cases."""
    return st.integers(0, 2 ** len(name) - 1).map(functools.partial(spell, name))


# metadata headers: the prefix in any case, then a name (empty, over its bound, or any text)
METADATA_NAMES = st.tuples(
    spellings(META), st.sampled_from(["", "camera", "Camera", "k" * (ev.MAX_METADATA_CHARS + 1)]) | st.text(max_size=8)
).map("".join)
# any of the convention's names in any case, a metadata name, or any text (mostly an unknown header)
HEADER_NAMES = st.one_of(st.sampled_from(CONVENTION).flatmap(spellings), METADATA_NAMES, st.text(max_size=12))
# What a mutation writes into a header: junk bytes (mostly not UTF-8), junk text, texts just over each bound (one
# over MAX_HEADER_BYTES), any JSON value (what a training-example header holds), nested ones too.
HEADER_JUNK = st.one_of(
    st.binary(max_size=16),
    st.text(max_size=16).map(str.encode),
    st.sampled_from(LONG_TEXTS).map(str.encode),
    JUNK.map(dumps),
)
# schema-version headers other than 1 (or 1 with spaces around it, or none)
SCHEMA_VERSIONS = (b"2", b"0", b"", b"01", b"1.0", b"v1", "\uff11".encode(), b"\xff", b"11", b"-1", b" 1", b"1\n", None)
KEYS = st.sampled_from([None, b"", b"\xff\xfe", b"e\xc3", ("a" * (ev.MAX_ID_CHARS + 1)).encode()]) | IDS.map(str.encode)


def arbitrary_records(max_value: int = 256, max_headers: int = 8) -> st.SearchStrategy[ev.Message]:
    """Records of anything: any key (or none), any value (or none), 0-``max_headers`` headers with any of the
    convention's names in any case, metadata or unknown names, and any values, any timestamp (or none)."""
    return st.builds(
        ev.Message,
        key=st.none() | st.binary(max_size=32) | IDS.map(str.encode),
        value=st.none() | st.binary(max_size=max_value),
        headers=st.lists(st.tuples(HEADER_NAMES, st.binary(max_size=32) | HEADER_JUNK), max_size=max_headers).map(
            tuple
        ),
        timestamp_ms=st.none() | st.integers(-(2**63), 2**63 - 1),
    )


def damage_bytes(message: ev.Message, part: int, edits: list[tuple[int, int, int]]) -> ev.Message:
    """``message`` with one part damaged byte by byte (:func:`mutate`): ``part`` 0 the key, 1 the value, 2 and on
    a header's value."""
    if part == 0:
        return dataclasses.replace(message, key=mutate(message.key or b"", edits))
    if part == 1:
        return dataclasses.replace(message, value=mutate(message.value or b"", edits))
    headers = list(message.headers)
    name, raw = headers[(part - 2) % len(headers)]
    headers[(part - 2) % len(headers)] = (name, mutate(raw, edits))
    return dataclasses.replace(message, headers=tuple(headers))


# -- the formats ---------------------------------------------------------------------------------------------------


def _shown(value: bytes | None, limit: int = 400) -> str:
    if value is None:
        return "None"
    return f"{len(value):,} bytes: {value if len(value) <= limit else value[:limit] + b'...'!r}"


class Case:
    """One value for a decoder (a document's bytes, or a record); ``intact`` is the record it encodes when nothing
    was damaged."""

    def __init__(self, kind: str, value: bytes | ev.Message | None, intact: Any = None) -> None:
        self.kind, self.value, self.intact = kind, value, intact

    def __repr__(self) -> str:  # what hypothesis shows of a failing case: a value nested 1,500 deep is long
        if not isinstance(self.value, ev.Message):
            return f"Case({self.kind}, {_shown(self.value)})"
        m = self.value
        headers = ", ".join(f"{name[:80]!r}: {_shown(raw, 80)}" for name, raw in m.headers[:70])
        return (
            f"Case({self.kind}, key {_shown(m.key, 80)}, value {_shown(m.value)}, {len(m.headers)} headers "
            f"{{{headers}}}, timestamp {m.timestamp_ms})"
        )


DROP, SET = "drop", "set"
RAW = st.none() | st.binary(max_size=512)
EXTRA_KEYS = ("schema_version", "image", "unknown", "", "__class__")
# How often each kind of case comes, in tenths: values well formed with 1-3 fields damaged, intact, damaged around
# their fields (the envelope), valid encodings damaged byte by byte, arbitrary values.
KINDS = ("record", "raw", "record", "envelope", "record", "bytes", "record", "intact", "record", "raw")


def edit_document(document: dict[str, Any], edits: list[tuple[str, str, Any]]) -> dict[str, Any]:
    """``document`` with (op, key, junk) edits applied: a key dropped or set to junk."""
    for op, key, value in edits:
        if op == DROP:
            document.pop(key, None)
        else:
            document[key] = value
    return document


@dataclass(frozen=True)
class Format:
    """One wire format: its dataclass, codec, field strategies and the reasons its decoder gives on either side of
    its envelope (:meth:`reaches_fields`)."""

    name: str
    cls: type
    decode: Callable[[Any], Any]
    encode: Callable[[Any], Any]
    shallow_reasons: frozenset[str]  # refusals of the envelope around the fields
    deep_reasons: frozenset[str]  # refusals of the fields themselves
    overrides: dict[str, st.SearchStrategy[Any]] = dataclasses.field(default_factory=dict)
    joint: tuple[tuple[str, ...], st.SearchStrategy[dict[str, Any]]] | None = None  # fields bound to each other
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
    def document_mutations(self) -> st.SearchStrategy[list[tuple[str, str, Any]]]:
        """1-3 edits of a JSON document: a key (a field, or one of a few more) dropped or set to junk."""
        keys = sorted({f.name for f in dataclasses.fields(self.cls)} | set(EXTRA_KEYS))
        return st.lists(
            st.tuples(st.sampled_from([DROP, SET, SET]), st.sampled_from(keys), JUNK), min_size=1, max_size=3
        )

    def _valid(self, name: str, hint: Any) -> st.SearchStrategy[Any]:
        return self.overrides[name] if name in self.overrides else valid_values(hint)

    def reaches_fields(self, value: Any) -> bool:
        """Whether ``value`` gets past the envelope (what the decoder checks before any field), whatever its fields."""
        raise NotImplementedError

    def cases(self) -> st.SearchStrategy[Case]:
        """Values for this format's decoder, of each of :data:`KINDS`."""
        raise NotImplementedError


@dataclass(frozen=True)
class DocumentFormat(Format):
    """A format whose Kafka value is one JSON document."""

    max_bytes: int | None = None  # the decoder refuses longer values before parsing them
    checks_schema: bool = True  # the decoder refuses a schema_version other than 1

    def reaches_fields(self, value: bytes | None) -> bool:
        """Within the size bound, a strict JSON object, its ``schema_version`` the integer 1 (not true, not 1.0)."""
        if self.max_bytes is not None and (not value or len(value) > self.max_bytes):
            return False
        document = strict_json(value or b"")
        if not isinstance(document, dict):
            return False
        version = document.get("schema_version")
        return not self.checks_schema or (type(version) is int and version == 1)

    def cases(self) -> st.SearchStrategy[Case]:
        return _document_cases(self)

    def damage_envelope(self, document: dict[str, Any], which: int, at: int) -> bytes:
        """The record's document whole, damaged around its fields: damage ``which``, at or with ``at``."""
        whole = dumps(document)
        if which % 6 == 0:  # truncated
            return whole[: at % max(len(whole), 1)]
        if which % 6 == 1:  # not an object
            return dumps([[document], "text", 3, None, True][at % 5])
        if which % 6 == 2:  # not UTF-8
            return whole[:8] + b"\xff\xfe" + whole[10:]
        if which % 6 == 3:  # oversized (only feedback is bounded: the others take it)
            return dumps({**document, "pad": "x" * max(self.max_bytes or 0, ev.MAX_HEADER_BYTES)})
        if which % 6 == 4:  # schema_version other than the integer 1, or absent
            version = [0, 2, "1", None, 1.5, [1], True, DROP][at % 8]
            unversioned = {k: v for k, v in document.items() if k != "schema_version"}
            return dumps(unversioned | ({} if version == DROP else {"schema_version": version}))
        return b"\xff" + whole


@st.composite
def _document_cases(draw: st.DrawFn, fmt: DocumentFormat) -> Case:
    kind = draw(st.sampled_from(KINDS))
    if kind == "raw":
        return Case(kind, draw(RAW | st.binary(max_size=64).map(b"{".__add__)))
    record = draw(fmt.records)
    encoded = fmt.encode(record)
    if kind == "bytes":
        return Case(kind, mutate(encoded, draw(EDITS)))
    if kind == "intact":
        return Case(kind, encoded, record)
    document = json.loads(encoded)
    if kind == "envelope":
        return Case(kind, fmt.damage_envelope(document, draw(st.integers(0, 5)), draw(st.integers(0, 2**16))))
    return Case(kind, dumps(edit_document(document, draw(fmt.document_mutations))))


@dataclass(frozen=True)
class RecordFormat(Format):
    """A format whose Kafka record is in the image events' convention: key, value, headers and timestamp."""

    headers: tuple[str, ...] = ()  # the convention's headers its records carry: what field damage aims at
    document_header: str | None = None  # the header holding the rest of its fields, a JSON object

    @property
    def has_metadata(self) -> bool:
        """Whether its ``meta-`` headers are a field (a record without one only bounds them, with its envelope)."""
        return "metadata" in {f.name for f in dataclasses.fields(self.cls)}

    def reaches_fields(self, value: ev.Message) -> bool:
        """The key an event id (UTF-8, 1-200 characters); at most MAX_HEADERS headers; each header of the convention
        and each metadata header UTF-8 of at most MAX_HEADER_BYTES, none twice (a name of the convention without
        regard to case, a metadata name after its prefix as written); for a format without metadata, the metadata
        within its bounds; schema-version absent or exactly 1; and the document header, if the format has one, a
        strict JSON object."""
        try:
            event_id = (value.key or b"").decode("utf-8")
        except UnicodeDecodeError:
            return False
        if not event_id or len(event_id) > ev.MAX_ID_CHARS or len(value.headers) > ev.MAX_HEADERS:
            return False
        texts: dict[str, str] = {}
        metadata: dict[str, str] = {}
        for name, raw in value.headers:
            lowered = header_name(name)
            if lowered in CONVENTION:
                table, slot = texts, lowered
            elif lowered.startswith(META):
                table, slot = metadata, name[len(META) :]
            else:
                continue  # not the convention's: ignored, whatever its value
            if slot in table or len(raw) > ev.MAX_HEADER_BYTES:
                return False
            try:
                table[slot] = raw.decode("utf-8")
            except UnicodeDecodeError:
                return False
        if not self.has_metadata and not metadata_within_bounds(metadata):
            return False
        version = texts.get(ev.SCHEMA_VERSION_HEADER)
        if version is not None and version != "1":
            return False
        return self.document_header is None or isinstance(
            strict_json(texts.get(self.document_header, "").encode()), dict
        )

    def cases(self) -> st.SearchStrategy[Case]:
        return _record_cases(self)

    @functools.cached_property
    def record_mutations(self) -> st.SearchStrategy[list[tuple[str, Any, Any]]]:
        """1-3 edits of a record: a header of the convention (or a metadata one) dropped, set to junk or to a text
        just over a field's bound, or duplicated in another case; a metadata header added (empty, long or junk name
        and value), or an unknown one with a binary value; 1-72 headers added (unknown ones with binary values, or
        metadata ones); the key dropped, not UTF-8 or too long; the value emptied, dropped or set to junk; an
        image-uri beside an inline image; the timestamp dropped or negative; and, in a record with a document
        header, as often as all the others together, a field of the document dropped or set to junk."""
        named = st.sampled_from([*self.headers, META + "camera"]).flatmap(spellings)
        edits: list[st.SearchStrategy[tuple[str, Any, Any]]] = [
            st.tuples(st.just("drop"), named, st.none()),
            st.tuples(st.just("set"), named, HEADER_JUNK),
            st.tuples(st.just("set"), named, st.sampled_from(LONG_TEXTS[:-1]).map(str.encode)),  # over a field's bound
            st.tuples(st.just("twice"), named, st.none()),
            st.tuples(st.just("add"), METADATA_NAMES, HEADER_JUNK),
            st.tuples(st.just("add"), st.text(max_size=12), st.binary(max_size=32)),
            st.tuples(st.just("many"), st.integers(1, ev.MAX_HEADERS + 8), st.sampled_from(["x-filler-", META])),
            st.tuples(st.just("key"), KEYS, st.none()),
            st.tuples(st.just("value"), st.none() | st.just(b"") | st.binary(min_size=1, max_size=16), st.none()),
            st.tuples(st.just("both"), URIS.map(str.encode), st.binary(min_size=1, max_size=16)),
            st.tuples(st.just("timestamp"), st.none() | st.integers(-(2**63), -1), st.none()),
        ]
        edit = st.one_of(edits)
        if self.document_header is not None:  # as often, a field of the document header dropped or set to junk
            keys = sorted({f.name for f in dataclasses.fields(self.cls)} | set(EXTRA_KEYS))
            field = st.tuples(
                st.just("field"), st.tuples(st.sampled_from([DROP, SET, SET]), st.sampled_from(keys)), JUNK
            )
            edit = st.sampled_from([edit, field]).flatmap(lambda chosen: chosen)
        return st.lists(edit, min_size=1, max_size=3)

    def damage_fields(self, message: ev.Message, edits: list[tuple[str, Any, Any]]) -> ev.Message:
        """``message`` with ``edits`` applied: those of the document header's fields first, then the rest in turn."""
        key, value, timestamp = message.key, message.value, message.timestamp_ms
        headers = list(message.headers)
        if self.document_header is not None:
            at = next(i for i, (name, _) in enumerate(headers) if name == self.document_header)
            fields = [(op, name, junk) for kind, (op, name), junk in (e for e in edits if e[0] == "field")]
            headers[at] = (self.document_header, dumps(edit_document(json.loads(headers[at][1]), fields)))
        for kind, a, b in edits:
            others = [h for h in headers if header_name(h[0]) != header_name(a)] if isinstance(a, str) else headers
            if kind == "drop":
                headers = others
            elif kind == "set":
                headers = [*others, (a, b)]
            elif kind == "twice":
                same = [(name, raw) for name, raw in headers if header_name(name) == header_name(a)]
                if same:  # the first one again, its name in another case
                    headers.append((a if a != same[0][0] else a.upper(), same[0][1]))
                else:
                    headers += [(a, b"image/png"), (a.upper(), b"image/png")]
            elif kind == "add":
                headers.append((a, b))
            elif kind == "many":
                headers += [(f"{b}{n}", b"\xff\x00" if b != META else b"v") for n in range(a)]
            elif kind == "key":
                key = a
            elif kind == "value":
                value = a
            elif kind == "both":
                headers = [h for h in headers if header_name(h[0]) != ev.IMAGE_URI_HEADER] + [(ev.IMAGE_URI_HEADER, a)]
                value = value or b
            elif kind == "timestamp":
                timestamp = a
        return ev.Message(key, value, tuple(headers), timestamp)

    @property
    def envelope_damages(self) -> int:
        """How many kinds of damage :meth:`damage_envelope` does (two more for a record with a document header)."""
        return 6 if self.document_header is None else 8

    def damage_envelope(self, message: ev.Message, which: int, at: int) -> ev.Message:
        """``message`` whole, damaged around its fields (now and then changed only in a way its envelope allows):
        damage ``which``, at or with ``at``."""
        headers = list(message.headers)
        known = [i for i, (name, _) in enumerate(headers) if header_name(name) in CONVENTION]
        i = known[at % len(known)]  # the encoders always write content-type and schema-version
        name, raw = headers[i]
        damage = which % self.envelope_damages
        if damage == 0:  # the key: absent, empty, not UTF-8, one character too long, or just within the bound
            too_long, longest = "é" * (ev.MAX_ID_CHARS + 1), "é" * ev.MAX_ID_CHARS
            keys = [None, b"", b"\xff\xfe", b"e\xc3", ("a" * (ev.MAX_ID_CHARS + 1)).encode(), too_long.encode()]
            return dataclasses.replace(message, key=[*keys, longest.encode()][at % 7])
        if damage == 1:  # the header count: one under, at, one and two over MAX_HEADERS, far over
            extra = ev.MAX_HEADERS - len(headers) + [-1, 0, 1, 2, 50][at % 5]
            headers += [(f"x-filler-{n}", b"\xff\x00") for n in range(extra)]
        elif damage == 2:  # schema-version other than 1 (or 1 with spaces around it, or absent), in any case
            version = SCHEMA_VERSIONS[at % len(SCHEMA_VERSIONS)]
            headers = [h for h in headers if header_name(h[0]) != ev.SCHEMA_VERSION_HEADER]
            headers += [] if version is None else [(spell(ev.SCHEMA_VERSION_HEADER, at), version)]
        elif damage == 3:  # a header of the convention twice, in another spelling
            headers.insert(at % (len(headers) + 1), (spell(name, at | 1), raw))  # the encoders write lower case
        elif damage == 4:  # one not UTF-8
            headers[i] = (name, [b"\xff" + raw, raw + b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"][at % 4])
        elif damage == 5:  # one at or one byte over MAX_HEADER_BYTES, padded with spaces (JSON stays JSON)
            headers[i] = (name, raw + b" " * (ev.MAX_HEADER_BYTES + at % 2 - len(raw)))
        elif damage == 6:  # the document header absent, not JSON, nested too deep, not an object (or an empty one)
            d = next(n for n, (h, _) in enumerate(headers) if h == self.document_header)
            document = headers[d][1]
            variants = [
                *(b"", document[: len(document) // 2], b'{"label":NaN}', b'{"x":1e400}', dumps(Nested(5_000, True))),
                *(b"[" + document + b"]", b'"text"', b"3", b"null", b"true", b"{}", None),
            ]
            variant = variants[at % len(variants)]
            headers[d : d + 1] = [] if variant is None else [(headers[d][0], variant)]
        else:  # metadata (no field of this record) past its bounds: too many entries, an empty name, too long
            headers += [
                [(f"{META}m{n}", b"v") for n in range(ev.MAX_METADATA_ENTRIES + 1)],
                [(META, b"v")],
                [(META + "k" * (ev.MAX_METADATA_CHARS + 1), b"v")],
                [(META + "k", b"v" * (ev.MAX_METADATA_CHARS + 1))],
            ][at % 4]
        return dataclasses.replace(message, headers=tuple(headers))


def metadata_within_bounds(metadata: dict[str, str]) -> bool:
    """At most MAX_METADATA_ENTRIES entries, each named, name and value at most MAX_METADATA_CHARS."""
    return len(metadata) <= ev.MAX_METADATA_ENTRIES and all(
        0 < len(k) <= ev.MAX_METADATA_CHARS and len(v) <= ev.MAX_METADATA_CHARS for k, v in metadata.items()
    )


UNKNOWN_NAMES = st.text(max_size=12).filter(
    lambda name: header_name(name) not in CONVENTION and not header_name(name).startswith(META)
)


@st.composite
def rewritten(draw: st.DrawFn, message: ev.Message) -> ev.Message:
    """``message`` as another client may write the same record: the names of the convention's headers (and the
    prefix of metadata ones) in any case, 1-4 unknown headers with binary values among them, in any order."""
    headers = [
        (spell(name[: len(META)], mask) + name[len(META) :] if name.startswith(META) else spell(name, mask), raw)
        for (name, raw), mask in zip(
            message.headers, draw(st.lists(st.integers(0, 2**20), min_size=len(message.headers))), strict=False
        )
    ]
    headers += draw(st.lists(st.tuples(UNKNOWN_NAMES, st.binary(max_size=32)), min_size=1, max_size=4))
    return dataclasses.replace(message, headers=tuple(draw(st.permutations(headers))))


@st.composite
def _record_cases(draw: st.DrawFn, fmt: RecordFormat) -> Case:
    kind = draw(st.sampled_from(KINDS))
    if kind == "raw":
        return Case(kind, draw(arbitrary_records()))
    record = draw(fmt.records)
    message = fmt.encode(record)
    if kind == "intact":  # half as written, half as another client may write it: the same record
        return Case(kind, draw(st.just(message) | rewritten(message)), record)
    if kind == "bytes":  # the key, the value or a header's value
        return Case(kind, damage_bytes(message, draw(st.integers(0, len(message.headers) + 1)), draw(EDITS)))
    if kind == "envelope":
        return Case(
            kind,
            fmt.damage_envelope(message, draw(st.integers(0, fmt.envelope_damages - 1)), draw(st.integers(0, 2**16))),
        )
    return Case(kind, fmt.damage_fields(message, draw(fmt.record_mutations)))


def _serving_and_shadow(serving: int) -> st.SearchStrategy[dict[str, Any]]:
    shadow = st.none() | st.integers(1, 2**31).filter(lambda v: v != serving)
    return st.fixed_dictionaries({"serving": st.just(serving), "shadow": shadow})


def _labels_and_scores(n: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"labels": st.lists(IDS, min_size=n, max_size=n), "scores": st.lists(NUMBERS, min_size=n, max_size=n)}
    )


FIELD_REASONS = frozenset({"missing_field", "bad_field"})
KEY_REASONS = frozenset({"missing_key", "bad_key"})
FORMATS: list[Format] = [
    RecordFormat(
        "image_event",
        ev.ImageEvent,
        ev.decode_image_event,
        ev.encode_image_event,
        # the key; the header count, a header not UTF-8, over MAX_HEADER_BYTES or twice, and metadata past its
        # bounds (checked with the headers, before schema-version); schema-version
        KEY_REASONS | {"bad_header", "unknown_schema_version"},
        # content-type missing or too long, image-uri or source too long, an image inline and by URI, metadata
        # past its bounds; no image at all
        frozenset({"missing_header", "bad_header", "missing_image"}),
        overrides={
            "content_type": st.sampled_from(["image/png", "image/jpeg", "text/plain"]) | IDS,
            "source": st.sampled_from(["", "s" * ev.MAX_SOURCE_CHARS]) | IDS,
            "metadata": st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=16), max_size=4)
            | st.sampled_from(
                [
                    {f"k{n}": "" for n in range(ev.MAX_METADATA_ENTRIES)},
                    {"k" * ev.MAX_METADATA_CHARS: "v" * ev.MAX_METADATA_CHARS},
                ]
            ),
            "produced_at_ms": st.integers(0, 2**63 - 1),  # the record's timestamp: a signed 64-bit integer
        },
        joint=(
            ("image", "image_uri"),
            st.fixed_dictionaries({"image": st.binary(min_size=1, max_size=64), "image_uri": st.none()})
            | st.fixed_dictionaries({"image": st.just(b""), "image_uri": URIS}),
        ),
        check=ev.check_image_event,  # what the worker decodes, a producer's own check accepts
        headers=(ev.CONTENT_TYPE_HEADER, ev.SOURCE_HEADER, ev.IMAGE_URI_HEADER, ev.SCHEMA_VERSION_HEADER),
    ),
    DocumentFormat(
        "prediction",
        ev.Prediction,
        ev.decode_prediction,
        ev.encode_prediction,
        frozenset({"bad_prediction", "unknown_schema_version"}),
        FIELD_REASONS | {"bad_prediction"},  # labels and scores
        joint=(("labels", "scores"), st.integers(1, 4).flatmap(_labels_and_scores)),
    ),
    DocumentFormat(
        "dead_letter",
        ev.DeadLetter,
        ev.decode_dead_letter,
        ev.encode_dead_letter,
        frozenset({"bad_dead_letter", "unknown_schema_version"}),
        FIELD_REASONS,
        overrides={
            "original_headers": st.lists(st.tuples(st.text(max_size=12), st.binary(max_size=16)), max_size=4).map(tuple)
            | st.just(tuple((f"h{n}", b"") for n in range(ev.MAX_HEADERS))),
        },
    ),
    DocumentFormat(
        "feedback",
        ev.Feedback,
        ev.decode_feedback,
        ev.encode_feedback,
        frozenset({"empty_value", "bad_field", "not_feedback", "unknown_schema_version"}),  # bad_field: too long
        FIELD_REASONS,
        max_bytes=ev.MAX_FEEDBACK_BYTES,
    ),
    RecordFormat(
        "labelled_example",
        ev.LabelledExample,
        ev.decode_labelled_example,
        ev.encode_labelled_example,
        # as an image event's, and missing_header: content-type, checked before the training-example header, or
        # the training-example header itself
        KEY_REASONS | {"bad_header", "unknown_schema_version", "missing_header"},
        # content-type missing or too long; no image; the fields in the training-example header
        FIELD_REASONS | {"missing_header", "bad_header", "missing_image"},
        joint=(
            ("shadow_version", "shadow_label"),
            st.fixed_dictionaries({"shadow_version": st.none(), "shadow_label": st.just("")})
            | st.fixed_dictionaries({"shadow_version": COUNTS, "shadow_label": IDS}),
        ),
        headers=(ev.CONTENT_TYPE_HEADER, ev.SCHEMA_VERSION_HEADER, ev.EXAMPLE_HEADER),
        document_header=ev.EXAMPLE_HEADER,
    ),
    DocumentFormat(
        "promotion",
        ev.Promotion,
        ev.decode_promotion,
        ev.encode_promotion,
        frozenset({"bad_promotion", "unknown_schema_version"}),
        FIELD_REASONS,
        overrides={
            "action": st.sampled_from(ev.PROMOTION_ACTIONS),
            "evidence": st.dictionaries(
                st.text(max_size=8), st.none() | NUMBERS | st.text(max_size=20), max_size=ev.MAX_EVIDENCE_ENTRIES
            ),
        },
        joint=(("serving", "shadow"), st.integers(1, 2**31).flatmap(_serving_and_shadow)),
    ),
]
