"""Bad-input fuzzing (marker ``fuzz``): whatever bytes arrive, each event becomes exactly one prediction or one
dead letter with a known reason, never an unhandled exception; decompression bombs are refused before they
allocate; feedback and training-log decoders raise only their decode error; hostile image URIs and model names
never reach outside their folders.

Hypothesis, derandomized so that CI runs the same cases every time: 14,000 cases in all.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
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
    ImageEvent,
    Promotion,
    Record,
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
from tests.fuzz.decoder_formats import EDITS, mutate

pytestmark = [pytest.mark.fuzz]
FUZZ = settings(max_examples=3000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
KNOWN_REASONS = {
    "empty_value", "not_an_image_event", "unknown_schema_version", "bad_header", "missing_field", "bad_field",
    "missing_image", "disallowed_content_type", "too_large", "empty_image", "not_an_image", "undecodable",
    "content_type_mismatch", "decompression_bomb", "uri_unreadable", "uri_not_allowed",
}  # fmt: skip
CONTENT_TYPES = ["image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff", "text/plain", ""]


def _png(width: int = 8, height: int = 8, value: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), value).save(buffer, format="PNG")
    return buffer.getvalue()


VALID_PNG = _png()
VALID_FRAME = encode_image_event(ImageEvent("seed", "image/png", VALID_PNG))


class Harness:
    """One classifier over fakes (the real decoder, limits and dead-lettering; Triton and Kafka faked)."""

    def __init__(self) -> None:
        settings_ = Settings(streams={"max_image_bytes": 64 * 1024, "max_image_pixels": 1_000_000})  # type: ignore[arg-type]
        self.broker = FakeBroker()
        announced = Promotion("digits", 4)
        self.classifier = Classifier(
            settings_,
            FakeTriton([]),  # type: ignore[arg-type]
            WorkerMetrics(CollectorRegistry()),
            self.broker.send,
            lambda model: announced,
        )
        self.loop = asyncio.new_event_loop()
        self.offset = 0

    def outputs_for(self, values: list[bytes | None]) -> list[tuple[str, Any]]:
        self.broker.records.clear()
        batch = []
        for value in values:
            self.offset += 1
            batch.append(Record("images", 0, self.offset, b"k", value))
        self.loop.run_until_complete(self.classifier.process(batch))
        out: list[tuple[str, Any]] = []
        for topic, _, value in self.broker.records:
            if topic.endswith("predictions"):
                out.append(("prediction", decode_prediction(value)))
            else:
                out.append(("dead", decode_dead_letter(value)))
        return out


HARNESS = Harness()


def check_one_output_each(values: list[bytes | None]) -> None:
    """Each input record (by its offset) has exactly one output: a prediction or a dead letter."""
    first = HARNESS.offset + 1
    outputs = HARNESS.outputs_for(values)
    offsets = sorted(o.image_offset if kind == "prediction" else o.origin_offset for kind, o in outputs)
    assert offsets == list(range(first, first + len(values))), "an event was dropped, duplicated or misattributed"
    for kind, output in outputs:
        if kind == "dead":
            assert output.reason in KNOWN_REASONS, (output.reason, output.message)
            assert output.message


@FUZZ
@given(st.lists(st.one_of(st.none(), st.binary(max_size=2048)), min_size=1, max_size=4))
def test_any_bytes_give_a_prediction_or_a_dead_letter(values: list[bytes | None]) -> None:
    """3,000 batches of 1-4 arbitrary values (None, or up to 2 KiB of any bytes) through the real decoder,
    limits and dead-lettering: each event becomes exactly one prediction or one dead letter with a known reason."""
    check_one_output_each(values)


@FUZZ
@given(EDITS, st.booleans())
def test_damaged_frames_and_images_give_a_prediction_or_a_dead_letter(
    edits: list[tuple[int, int, int]], frame: bool
) -> None:
    """3,000 valid events damaged by 1-8 byte flips, insertions, deletions and truncations, in the frame or in
    the PNG inside: each becomes exactly one prediction or one dead letter with a known reason."""
    if frame:  # damage anywhere in the frame: magic, version, header length, JSON, image
        check_one_output_each([mutate(VALID_FRAME, edits)])
    else:  # a well-formed frame around a damaged image
        check_one_output_each([encode_image_event(ImageEvent("e", "image/png", mutate(VALID_PNG, edits)))])


HEADER_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)
URIS = st.sampled_from(["file:///etc/hostname", "file:///nonexistent", "s3://x/y", "::"])


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "event_id": HEADER_VALUES | st.text(min_size=1, max_size=300),
            "content_type": HEADER_VALUES | st.sampled_from(CONTENT_TYPES),
            "produced_at_ms": HEADER_VALUES,
            "image_uri": HEADER_VALUES
            | st.sampled_from(["file:///etc/hostname", "file:///nonexistent", "s3://x/y", "::"]),
            "metadata": HEADER_VALUES,
            "source": HEADER_VALUES,
        },
    ),
    st.sampled_from([b"", VALID_PNG, _png(2000, 2000), b"GIF89a\x00\x00", b"\x00" * 64]),
    st.integers(0, 3),
)
def test_arbitrary_headers_give_a_prediction_or_a_dead_letter(
    header: dict[str, Any], image: bytes, version: int
) -> None:
    """3,000 frames with arbitrary JSON headers (any field missing or of any type, hostile URIs), schema versions
    0-3 and a choice of images: each becomes exactly one prediction or one dead letter with a known reason."""
    raw = json.dumps(header).encode()
    value = b"ILE" + struct.pack(">BI", version, len(raw)) + raw + image
    check_one_output_each([value])


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.binary(max_size=512))
def test_feedback_and_log_decoders_raise_only_their_decode_error(value: bytes) -> None:
    """1,500 arbitrary byte strings as feedback and training-log records: the decoders raise only their decode
    error, with a reason."""
    for decode in (decode_feedback, decode_labelled_example):
        try:
            decode(value)
        except EventDecodeError as exc:
            assert exc.reason


PROMOTION_FIELDS = (
    "model_name", "serving", "shadow", "action", "reason", "evidence", "announced_at_ms", "schema_version"
)  # fmt: skip


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(PROMOTION_FIELDS), HEADER_VALUES, max_size=8))
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
