"""Decoder fuzzing, one wire format at a time (marker ``fuzz``): each decoder of :mod:`inferloop.events` gets values
of its own format (JSON documents, or Kafka records with key, value and headers), mostly well formed with their
fields damaged, so that its field checks are reached, not only its envelope; each case is counted as shallow
(refused at the envelope: the document, or the record's key and headers) or deep (past it, into the fields), and
the figures go to the test's row of docs/reliability.md.

Hypothesis, derandomized so that CI runs the same cases (and reports the same figures) every time.
"""

from __future__ import annotations

import typing
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from inferloop.errors import EventDecodeError
from tests.fuzz.decoder_formats import FORMATS, Case, Format, conforms, without_project_constants

pytestmark = [pytest.mark.fuzz, pytest.mark.security]  # hostile records: run with `-m security` too
CASES = 2000
MIN_DEEP = 0.25  # the share of cases that must reach the field checks
DECODER_FUZZ = settings(
    max_examples=CASES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)


def check_one(fmt: Format, case: Case) -> tuple[bool, str | None]:
    """Decode ``case``: whether it reached the field checks, and the reason it was refused for (None: decoded).
    Fails on anything but a record or a decode error."""
    deep = fmt.reaches_fields(case.value)
    try:
        decoded = fmt.decode(case.value)
    except EventDecodeError as exc:
        expected = fmt.deep_reasons if deep else fmt.shallow_reasons
        assert isinstance(exc.reason, str) and exc.reason in expected, (
            f"{fmt.name}: reason {exc.reason!r} for a value {'past' if deep else 'refused at'} the envelope; "
            f"expected one of {sorted(expected)}: {exc}"
        )
        assert str(exc), "a decode error without a message"
        assert case.intact is None, f"an intact {fmt.name} was refused ({exc.reason}): {exc}"
        return deep, exc.reason
    assert deep, f"a {fmt.name} decoded from a value its envelope should refuse: {decoded!r}"
    assert type(decoded) is fmt.cls
    wrong = {f: v for f, h in typing.get_type_hints(fmt.cls).items() if not conforms(v := getattr(decoded, f), h)}
    assert not wrong, f"a {fmt.name} with fields not of their declared type: {wrong}"
    again = fmt.decode(fmt.encode(decoded))
    assert _same(again, decoded), f"the {fmt.name} changed on re-encoding: {decoded!r} -> {again!r}"
    if case.intact is not None:
        assert _same(decoded, case.intact), f"{case.intact!r} decoded as {decoded!r}"
    if fmt.check is not None:
        fmt.check(decoded)
    return True, None


def _same(a: object, b: object) -> bool:
    """Equal records; a NaN (which JSON carries and equals nothing) compared by its text."""
    return a == b or repr(a) == repr(b)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda fmt: fmt.name)
def test_each_decoder_returns_its_record_or_a_decode_error_with_a_known_reason(
    fmt: Format, reliability_figures: Callable[[str], None]
) -> None:
    """2,000 values per decoder from a strategy of its own format, in tenths: 5 well formed with 1-3 fields
    damaged, 1 intact, 1 damaged around the fields (the envelope), 1 a valid encoding damaged byte by byte, 2
    arbitrary. A JSON document (prediction, dead letter, feedback, promotion) gets a field dropped or set to junk
    (any JSON type, negative or huge numbers, a bool for a number, texts just over each bound, unknown keys, arrays
    and objects nested 1,500 and 5,000 deep); its envelope is truncated, not UTF-8, not an object, oversized or of
    another schema_version; arbitrary values are any bytes. A Kafka record (image event, training-log example) gets
    a header dropped, set to junk bytes, junk text or a text over its bound, or duplicated in another case, the key
    dropped, not UTF-8 or too long, the value emptied, an image-uri beside an inline image, up to 72 more headers,
    metadata headers, unknown headers with binary values (to be ignored), the timestamp dropped or negative, and in
    the training-example header a field dropped or set to junk; its envelope gets a bad key, 63-114 headers, a
    schema-version other than 1, a header twice, not UTF-8 or over 64 KiB, a training-example header missing or not
    a JSON object; byte damage hits the key, the value or a header's value; arbitrary records have any key, value
    and headers. Each decodes to its dataclass, every field of its declared type, that re-encodes to the same record
    (an intact record to itself; an image event passes check_image_event), or raises EventDecodeError with a reason
    of the decoder's own: an envelope reason for a value refused at its envelope, a field reason past it, each
    reason of either side seen at least once; anything else fails. At least 25 % of the cases reach the field
    checks ("deep")."""
    tally: Counter[str] = Counter()
    seen: dict[bool, set[str]] = {False: set(), True: set()}

    @DECODER_FUZZ
    @given(fmt.cases())
    def decode_one(case: Case) -> None:
        tally["cases"] += 1
        deep, reason = check_one(fmt, case)
        tally["deep"] += deep
        if reason is not None:
            seen[deep].add(reason)

    try:
        with without_project_constants():  # the same cases (and figures) whatever else the run imported
            decode_one()
    finally:
        cases, deep = tally["cases"], tally["deep"]
        reliability_figures(f"{cases:,} cases, {deep:,} deep: {deep * 100 // max(cases, 1)} %")
    assert deep >= MIN_DEEP * cases, f"only {deep} of {cases} {fmt.name} cases reached the field checks"
    assert seen[False] == fmt.shallow_reasons, f"envelope reasons seen: {sorted(seen[False])}"
    assert seen[True] == fmt.deep_reasons, f"field reasons seen: {sorted(seen[True])}"
