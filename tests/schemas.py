"""The published JSON Schemas of inferloop's records (``docs/schemas``), for tests: validate a document against one,
offline.

``assert_valid("prediction", document)`` fails with every way ``document`` (parsed JSON, or its bytes or text)
breaks ``docs/schemas/prediction.schema.json``; ``validator(name)`` is the draft 2020-12 validator itself. A
``$ref`` from one schema to another (``shadow-prediction`` to ``prediction``) resolves from the files here; nothing
is fetched from the network (a reference to anything else fails as unresolvable).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from inferloop.events import (
    CONTENT_TYPE_HEADER,
    EXAMPLE_HEADER,
    IMAGE_URI_HEADER,
    METADATA_HEADER_PREFIX,
    SCHEMA_VERSION_HEADER,
    SOURCE_HEADER,
)
from tests.fuzz.decoder_formats import finite_float, refuse_constant

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"
SUFFIX = ".schema.json"
CONVENTION = frozenset({CONTENT_TYPE_HEADER, SOURCE_HEADER, IMAGE_URI_HEADER, SCHEMA_VERSION_HEADER, EXAMPLE_HEADER})
MAX_MESSAGE_CHARS = 300  # of one error in assert_valid's report (a too-long text would be quoted whole)


def schema_names() -> list[str]:
    """The names of the published schemas (``prediction``, ``dead-letter``...), sorted."""
    return sorted(path.name.removesuffix(SUFFIX) for path in SCHEMA_DIR.glob(f"*{SUFFIX}"))


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``docs/schemas/<name>.schema.json`` as parsed JSON."""
    path = SCHEMA_DIR / f"{name}{SUFFIX}"
    if not path.is_file():
        raise LookupError(f"no schema {name!r} in {SCHEMA_DIR}; there are {schema_names()}")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@functools.cache
def registry() -> Registry:
    """Every published schema, under its ``$id``: what a ``$ref`` between them resolves against. It retrieves
    nothing else (no network): an unknown reference raises ``referencing.exceptions.Unresolvable``."""
    resources = [
        Resource.from_contents(load_schema(name), default_specification=DRAFT202012) for name in schema_names()
    ]
    return Registry().with_resources((resource.id(), resource) for resource in resources if resource.id())


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """The draft 2020-12 validator of ``docs/schemas/<name>.schema.json`` (checked to be a valid schema first)."""
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry())


def parse(document: Any) -> Any:
    """``document`` as parsed JSON: bytes and text are parsed strictly (no NaN or infinities, as the decoders do);
    anything else is taken as already parsed."""
    if isinstance(document, bytes | bytearray | memoryview):
        document = bytes(document).decode("utf-8")
    if isinstance(document, str):
        return json.loads(document, parse_constant=refuse_constant, parse_float=finite_float)
    return document


def errors(name: str, document: Any) -> list[str]:
    """Every way ``document`` (parsed JSON, or its bytes or text) breaks schema ``name``, one line each (where, what,
    which keyword), in document order; empty when it is valid."""
    found = sorted(
        validator(name).iter_errors(parse(document)), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    return [_describe(error) for error in found]


def _describe(error: Any) -> str:
    message = error.message if len(error.message) <= MAX_MESSAGE_CHARS else error.message[:MAX_MESSAGE_CHARS] + "..."
    return f"{error.json_path}: {message} ({error.validator})"


def assert_valid(name: str, document: Any) -> None:
    """Fail (``AssertionError``) unless ``document`` (parsed JSON, or its bytes or text) is valid against
    ``docs/schemas/<name>.schema.json``; the message lists every error."""
    problems = errors(name, document)
    if problems:
        listed = "\n  ".join(problems)
        raise AssertionError(f"not a valid {name} ({name}{SUFFIX}), {len(problems)} error(s):\n  {listed}")


def headers_document(headers: Iterable[tuple[str, bytes]]) -> dict[str, str]:
    """Kafka record headers (``(name, value)`` pairs, as in ``record.headers``) as the object that
    ``image-event-headers`` describes: name -> value as UTF-8 text. A header of the convention (``content-type``,
    ``source``, ``image-uri``, ``schema-version``, ``training-example``, ``meta-*``; any case) that appears twice
    or is not UTF-8 fails (``AssertionError``), as a reader refuses it; other headers are left to the schema, which
    says nothing of them (their values are decoded with replacement characters, the last of a repeated name kept)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in headers:
        raw = bytes(value)
        lowered = name.lower()
        if lowered in CONVENTION or lowered.startswith(METADATA_HEADER_PREFIX):
            key = lowered if lowered in CONVENTION else METADATA_HEADER_PREFIX + name[len(METADATA_HEADER_PREFIX) :]
            assert key not in seen, f"header {name!r} appears more than once"
            seen.add(key)
            try:
                out[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise AssertionError(f"header {name!r} is not UTF-8 text") from None
        else:
            out[name] = raw.decode("utf-8", errors="replace")
    return out
