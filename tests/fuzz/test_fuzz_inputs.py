"""Bad-input fuzzing (marker ``fuzz``): whatever records arrive on the images topic (any key, value and headers),
each becomes exactly one prediction or one dead letter with a known reason, never an unhandled exception;
decompression bombs are refused before they allocate; feedback and training-log decoders raise only their decode
error; hostile image URIs and model names never reach outside their folders.

Hypothesis, derandomized so that CI runs the same cases every time: 15,500 cases in all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from prometheus_client import CollectorRegistry

from inferloop.errors import EventDecodeError
from inferloop.events import (
    MAX_HEADER_NAME_CHARS,
    MAX_HEADERS,
    ImageEvent,
    Message,
    Promotion,
    decode_dead_letter,
    decode_feedback,
    decode_labelled_example,
    decode_prediction,
    decode_promotion,
    encode_image_event,
)
from inferloop.images.decode import ImageLimits, decode_image
from inferloop.images.errors import ImageRejected, UriUnreadable
from inferloop.images.preprocess import InputSpec, to_model_input
from inferloop.images.uris import ImageUriReader
from inferloop.metrics import WorkerMetrics
from inferloop.settings import Settings
from inferloop.uri_policy import ImageUriPolicy, UriNotAllowed
from streams.worker.classify_step import Classifier
from tests.fakes import FakeBroker, FakeTriton
from tests.fuzz.decoder_formats import (
    EDITS,
    HEADER_NAMES,
    KEYS,
    LONG_TEXTS,
    arbitrary_records,
    damage_bytes,
    header_name,
    spell,
    spellings,
)

pytestmark = [pytest.mark.fuzz]
FUZZ = settings(max_examples=3000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
KNOWN_REASONS = {
    "missing_key", "bad_key", "missing_header", "bad_header", "unknown_schema_version", "missing_image",
    "disallowed_content_type", "too_large", "empty_image", "not_an_image", "undecodable", "content_type_mismatch",
    "decompression_bomb", "uri_unreadable", "uri_not_allowed",
}  # fmt: skip
FEEDBACK_REASONS = {"empty_value", "bad_field", "not_feedback", "unknown_schema_version", "missing_field"}
LOG_REASONS = {
    "missing_key", "bad_key", "missing_header", "bad_header", "unknown_schema_version", "missing_image",
    "missing_field", "bad_field",
}  # fmt: skip
CONTENT_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff", "text/plain", ""]


def _png(width: int = 8, height: int = 8, value: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), value).save(buffer, format="PNG")
    return buffer.getvalue()


VALID_PNG = _png()
# key, value (the PNG), headers content-type, schema-version, source and meta-camera, timestamp
VALID_RECORD = encode_image_event(
    ImageEvent("seed", "image/png", VALID_PNG, source="fuzz", produced_at_ms=1, metadata={"camera": "north"})
)


class Harness:
    """One classifier over fakes (the real decoder, limits and dead-lettering; Triton and Kafka faked)."""

    def __init__(self) -> None:
        self.settings = Settings(streams={"max_image_bytes": 64 * 1024, "max_image_pixels": 1_000_000})  # type: ignore[arg-type]
        self.broker = FakeBroker()
        announced = Promotion("digits", 4)
        self.classifier = Classifier(
            self.settings,
            FakeTriton([]),  # type: ignore[arg-type]
            WorkerMetrics(CollectorRegistry()),
            self.broker.send,
            lambda model: announced,
        )
        self.loop = asyncio.new_event_loop()
        self.offset = 0

    def outputs_for(self, messages: list[Message]) -> list[tuple[str, Any]]:
        """The outputs of one batch of ``messages``, read at the next offsets of partition 0 of "images"."""
        self.broker.records.clear()
        batch = []
        for message in messages:
            self.offset += 1
            batch.append(message.at("images", 0, self.offset))
        self.loop.run_until_complete(self.classifier.process(batch))
        out: list[tuple[str, Any]] = []
        for topic, _, value in self.broker.records:
            if topic.endswith("predictions"):
                out.append(("prediction", decode_prediction(value)))
            else:
                out.append(("dead", decode_dead_letter(value)))
        return out


HARNESS = Harness()


def check_one_output_each(messages: list[Message]) -> list[tuple[str, Any]]:
    """Each input record (by its offset) has exactly one output: a prediction, or a dead letter with a known reason
    that names its origin and carries the record's value, key and headers back as they were when they come to at
    most ``streams.dead_letter_max_original_bytes`` in at most ``MAX_HEADERS`` headers of names at most
    ``MAX_HEADER_NAME_CHARS`` long (nothing of it otherwise).
    The outputs, in the records' order."""
    first = HARNESS.offset + 1
    outputs = HARNESS.outputs_for(messages)
    offsets = sorted(o.image_offset if kind == "prediction" else o.origin_offset for kind, o in outputs)
    assert offsets == list(range(first, first + len(messages))), "an event was dropped, duplicated or misattributed"
    by_offset = {o.image_offset if kind == "prediction" else o.origin_offset: (kind, o) for kind, o in outputs}
    keep = HARNESS.settings.streams.dead_letter_max_original_bytes
    for offset, message in enumerate(messages, first):
        kind, output = by_offset[offset]
        if kind == "dead":
            assert output.reason in KNOWN_REASONS, (output.reason, output.message)
            assert output.message
            assert (output.origin_topic, output.origin_partition) == ("images", 0)
            kept = (output.original, output.original_key, output.original_headers)
            keepable = len(message.headers) <= MAX_HEADERS and all(
                len(k) <= MAX_HEADER_NAME_CHARS for k, _ in message.headers
            )
            if message.value is not None and message.size <= keep and keepable:
                assert kept == (message.value, message.key, message.headers), "the dead letter changed the record"
            else:
                assert kept == (None, None, ()), "the dead letter kept a record over its limit"
    return [by_offset[offset] for offset in range(first, first + len(messages))]


@FUZZ
@given(st.lists(arbitrary_records(max_value=2048), min_size=1, max_size=4))
def test_any_records_give_a_prediction_or_a_dead_letter(messages: list[Message]) -> None:
    """3,000 batches of 1-4 arbitrary records (any key or none; any value of up to 2 KiB or none; 0-8 headers named
    as the convention's headers in any case, as metadata or anything else, with any values: junk bytes, junk text,
    texts over each bound, JSON; any timestamp or none) through the real decoder, limits and dead-lettering: each
    record becomes exactly one prediction or one dead letter with a known reason that names its offset and carries
    the record back as it was."""
    check_one_output_each(messages)


@FUZZ
@given(
    EDITS,
    st.sampled_from(["image", "image", "key", "header", "drop", "twice"]),
    st.integers(0, 3),
    st.integers(0, 2**16),
)
def test_damaged_records_and_images_give_a_prediction_or_a_dead_letter(
    edits: list[tuple[int, int, int]], damage: str, index: int, mask: int
) -> None:
    """3,000 valid image events (a PNG, with content-type, schema-version, source and meta-camera headers) damaged:
    a third by 1-8 byte flips, insertions, deletions and truncations of the PNG, a sixth each by such edits of the
    key or of a header's value, by a header dropped, or by a header duplicated in another case: each becomes exactly
    one prediction or one dead letter with a known reason that names its offset and carries the record back as it
    was."""
    headers = list(VALID_RECORD.headers)
    if damage in ("image", "key", "header"):  # byte edits of the value, the key or a header's value
        message = damage_bytes(VALID_RECORD, {"image": 1, "key": 0, "header": 2 + index}[damage], edits)
    elif damage == "drop":
        del headers[index]
        message = dataclasses.replace(VALID_RECORD, headers=tuple(headers))
    else:
        name, raw = headers[index]
        headers.insert(mask % (len(headers) + 1), (spell(name, mask | 1), raw))  # another case: the first letter
        message = dataclasses.replace(VALID_RECORD, headers=tuple(headers))
    check_one_output_each([message])


URIS = ["file:///etc/hostname", "file:///nonexistent", "s3://x/y", "::"]
# junk for any header: text, bytes (mostly not UTF-8), texts just over each bound (one over 64 KiB)
JUNK_VALUES = st.one_of(
    st.text(max_size=40).map(str.encode), st.binary(max_size=40), st.sampled_from(LONG_TEXTS).map(str.encode)
)


def _mostly(usual: st.SearchStrategy[bytes], junk: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Three values in four from ``usual``, the rest from ``junk``."""
    return st.sampled_from([usual, usual, usual, junk]).flatmap(lambda chosen: chosen)


# each header of the convention or none, named in any case, holding a value of its kind or junk
CONVENTION_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        name: st.tuples(spellings(name), _mostly(st.sampled_from(values).map(str.encode), JUNK_VALUES))
        for name, values in [
            ("content-type", CONTENT_TYPES),
            ("source", ["", "cam-3"]),
            ("image-uri", [*URIS, ""]),
            ("schema-version", ["0", "1", "2", "3", " 1", ""]),
            ("training-example", ["{}", '{"label":"3"}']),
        ]
    },
).map(lambda chosen: list(chosen.values()))
# any name (the convention's in any case, metadata, anything else) with any of those values
MORE_HEADERS = st.lists(
    st.tuples(HEADER_NAMES, _mostly(st.sampled_from([*CONTENT_TYPES, *URIS, "1", "2"]).map(str.encode), JUNK_VALUES)),
    max_size=4,
)


@FUZZ
@given(
    st.tuples(CONVENTION_HEADERS, MORE_HEADERS).map(lambda parts: parts[0] + parts[1]).flatmap(st.permutations),
    st.sampled_from([0] * 7 + [56, 60, 64]),
    st.just(b"event-1") | KEYS,
    st.sampled_from([None, b"", VALID_PNG, _png(2000, 2000), b"GIF89a\x00\x00", b"\x00" * 64]),
)
def test_arbitrary_headers_give_a_prediction_or_a_dead_letter(
    headers: list[tuple[str, bytes]], filler: int, key: bytes | None, image: bytes | None
) -> None:
    """3,000 records with arbitrary header sets, in any order: each of the convention's headers (content-type,
    source, image-uri, schema-version, training-example) or none, named in any case, holding a value of its kind
    three times in four (content types; hostile image URIs file:///etc/hostname, file:///nonexistent, s3://x/y and
    "::"; schema versions 0-3) or junk (text, binary bytes, texts over each bound); 0-4 more headers of any name
    (the convention's again, metadata with an empty, long or any name, anything else) with such values; in three
    records of ten 56, 60 or 64 more unknown headers with binary values (around the 64-header limit); a valid key,
    or none, an empty, non-UTF-8 or over-long one; and a choice of images (none, empty, a PNG, a 4-Mpx PNG, a GIF
    header, zero bytes). Each becomes exactly one prediction or one dead letter with a known reason that names its
    offset and carries the record back as it was; a record naming an image URI is never predicted (no URI root is
    allowed)."""
    headers += [(f"x-filler-{n}", b"\xff\x00") for n in range(filler)]
    message = Message(key, image, tuple(headers), 1)
    [(kind, _)] = check_one_output_each([message])
    if any(header_name(name) == "image-uri" and raw for name, raw in headers):
        assert kind == "dead", "a record naming an image URI was predicted"


@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512), arbitrary_records(max_value=512))
def test_feedback_and_log_decoders_raise_only_their_decode_error(value: bytes, record: Message) -> None:
    """1,500 arbitrary byte strings as feedback values, and 1,500 arbitrary records (any key or none, any value of
    up to 512 bytes or none, 0-8 headers named as the convention's in any case, as metadata or anything else, with
    any values) as training-log records: the decoders raise only their decode error, with one of their reasons."""
    for decode, reasons in (
        (lambda: decode_feedback(value), FEEDBACK_REASONS),
        (lambda: decode_labelled_example(record), LOG_REASONS),
    ):
        try:
            decode()
        except EventDecodeError as exc:
            assert exc.reason in reasons, (exc.reason, str(exc))


JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
PROMOTION_FIELDS = (
    "model_name", "serving", "shadow", "action", "reason", "evidence", "announced_at_ms", "schema_version"
)  # fmt: skip


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(PROMOTION_FIELDS), JSON_VALUES, max_size=8))
def test_the_promotion_decoder_accepts_only_whole_promotions(raw: dict[str, object]) -> None:
    """1,500 JSON objects with any promotion field missing or of any type: a worker's watcher either gets a
    promotion that names a model and a version, or an EventDecodeError with a reason (and skips the record)."""
    raw.setdefault("schema_version", 1)
    try:
        promotion = decode_promotion(json.dumps(raw).encode())
    except EventDecodeError as exc:
        assert exc.reason
        return
    assert promotion.model_name and promotion.serving >= 1 and promotion.shadow != promotion.serving


def _bomb(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 0).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("width", "height", "fmt"), [(20_000, 20_000, "PNG"), (30_000, 1_000, "GIF"), (16_000, 16_000, "WEBP")]
)
def test_decompression_bombs_are_refused_before_they_allocate(width: int, height: int, fmt: str) -> None:
    """A decompression bomb (a few kB that decode to hundreds of megapixels) is refused as decompression_bomb
    with under 32 MiB allocated."""
    data = _bomb(width, height, fmt)
    assert len(data) < 8 * 1024 * 1024, "the bomb should be small on the wire"
    tracemalloc.start()
    try:
        with pytest.raises(ImageRejected) as info:
            decode_image(data, f"image/{fmt.lower()}", ImageLimits(max_bytes=16 * 1024 * 1024, max_pixels=4_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "decompression_bomb"
    assert peak < 32 * 1024 * 1024, f"refusing a {width}x{height} bomb took {peak / 2**20:.0f} MiB"


def test_the_largest_accepted_image_stays_within_its_limit() -> None:
    """The largest image the limits accept (2000x2000, 4 Mpx) decodes and becomes model input."""
    limits = ImageLimits(max_bytes=16 * 1024 * 1024, max_pixels=4_000_000)
    image = decode_image(_png(2000, 2000), "image/png", limits)
    x = to_model_input(image, InputSpec(1, 28, 28))
    assert x.shape == (1, 28, 28) and x.dtype == np.float32


# -- image URIs: whoever writes to the images topic names them, so they are hostile input too -------------------

URI_TREE = Path(tempfile.mkdtemp(prefix="inferloop-fuzz-uris-"))
ALLOWED = URI_TREE / "images"
(ALLOWED / "sub").mkdir(parents=True)
(ALLOWED / "good.png").write_bytes(VALID_PNG)
(URI_TREE / "secret.png").write_bytes(b"SECRET" + VALID_PNG)
(ALLOWED / "out.png").symlink_to(URI_TREE / "secret.png")
(ALLOWED / "up").symlink_to(URI_TREE)
os.mkfifo(ALLOWED / "fifo.png")
URI_READER = ImageUriReader(ImageUriPolicy.from_roots([str(ALLOWED)]))
URI_PIECES = st.sampled_from(
    ["..", ".", "", "%2e%2e", "%2E.", "%2f", "sub", "up", "good.png", "out.png", "fifo.png", "secret.png",
     "images", "..\\", "%00", "\x00", "?x=1", "#f", "~", "//", "::", "proc", "self", "environ"]
)  # fmt: skip
URI_STARTS = st.sampled_from(
    ["file://", "file://localhost", "file://evil", "", "s3://", "http://127.0.0.1:9", "simplecache::file://",
     "memory://", "zip://", "file:"]
)  # fmt: skip
URI_BASES = st.sampled_from([str(ALLOWED), str(URI_TREE), "", "/", "/etc", "/dev", str(ALLOWED) + "/sub"])


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(URI_STARTS, URI_BASES, st.lists(URI_PIECES, max_size=6), st.text(max_size=8))
def test_hostile_image_uris_never_read_outside_the_allowed_folder(
    start: str, base: str, pieces: list[str], noise: str
) -> None:
    """Image URIs built from traversal pieces ('..', encoded dots, symlinks out, FIFOs, other hosts and schemes,
    NUL bytes, fsspec chaining): each is read from inside the allowed folder or refused (uri_not_allowed,
    uri_unreadable, too_large); the file outside is never read; nothing blocks."""
    uri = start + "/".join([base, *pieces]) + noise
    try:
        data = URI_READER.read(uri, 64 * 1024)
    except (UriNotAllowed, UriUnreadable, ImageRejected) as exc:
        assert str(exc)
        return
    assert data == VALID_PNG, f"{uri!r} read something other than the allowed image"


# -- model names: they become folders of the model repository ----------------------------------------------------

MODEL_ROOT = URI_TREE / "models"
MODEL_ROOT.mkdir()
NAME_PIECES = st.sampled_from(["..", ".", "/", "\\", "digits", "%2e", "\x00", "~", "-", "_", " ", "a" * 70, "\n"])


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.one_of(st.text(max_size=80), st.lists(NAME_PIECES, max_size=6).map("".join)))
def test_hostile_model_names_never_leave_the_model_repository(name: str) -> None:
    """Model names built from '..', separators, NUL bytes, newlines and arbitrary text: each is refused
    (RepositoryError, and by the settings) or names a folder directly inside the repository."""
    from pydantic import ValidationError

    from trainer.errors import RepositoryError
    from trainer.repository import ModelRepository

    try:
        repo = ModelRepository(MODEL_ROOT, name)
    except RepositoryError:
        with pytest.raises(ValidationError):
            Settings(model={"name": name})  # type: ignore[arg-type]
        return
    assert name.isprintable() and "/" not in name and name not in (".", ".."), f"{name!r} was accepted"
    assert repo.model_dir.resolve().parent == MODEL_ROOT.resolve(), name
    assert repo.version_dir(3).resolve().parent == repo.model_dir.resolve()
