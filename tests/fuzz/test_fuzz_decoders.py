"""Decoder fuzzing, one wire format at a time (marker ``fuzz``): each decoder of :mod:`inferloop.events` gets records
of its own format, mostly well framed with their fields damaged, so that its field checks are reached, not only its
framing; each case is counted as shallow (refused at the frame or document) or deep (past it, into the fields), and
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


def check_one(fmt: Format, case: Case) -> bool:
    """Decode ``case``; whether it reached the field checks. Fails on anything but a record or a decode error."""
    deep = fmt.reaches_fields(case.value)
    try:
        decoded = fmt.decode(case.value)
    except EventDecodeError as exc:
        expected = fmt.deep_reasons if deep else fmt.shallow_reasons
        assert isinstance(exc.reason, str) and exc.reason in expected, (
            f"{fmt.name}: reason {exc.reason!r} for a value {'past' if deep else 'refused at'} the framing; "
            f"expected one of {sorted(expected)}: {exc}"
        )
        assert str(exc), "a decode error without a message"
        assert case.intact is None, f"an intact {fmt.name} was refused ({exc.reason}): {exc}"
        return deep
    assert deep, f"a {fmt.name} decoded from a value its framing should refuse: {decoded!r}"
    assert type(decoded) is fmt.cls
    wrong = {f: v for f, h in typing.get_type_hints(fmt.cls).items() if not conforms(v := getattr(decoded, f), h)}
    assert not wrong, f"a {fmt.name} with fields not of their declared type: {wrong}"
    again = fmt.decode(fmt.encode(decoded))
    assert _same(again, decoded), f"the {fmt.name} changed on re-encoding: {decoded!r} -> {again!r}"
    if case.intact is not None:
        assert _same(decoded, case.intact), f"{case.intact!r} decoded as {decoded!r}"
    if fmt.check is not None:
        fmt.check(decoded)
    return True


def _same(a: object, b: object) -> bool:
    """Equal records; a NaN (which JSON carries and equals nothing) compared by its text."""
    return a == b or repr(a) == repr(b)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda fmt: fmt.name)
def test_each_decoder_returns_its_record_or_a_decode_error_with_a_known_reason(
    fmt: Format, reliability_figures: Callable[[str], None]
) -> None:
    """2,000 values per decoder from a strategy of its own format: about 60 % well-framed records (right magic,
    version, header length, JSON object and schema_version) with 1-3 fields dropped or set to junk (any JSON type,
    negative or huge numbers, a bool for a number, texts just over each bound, unknown keys, arrays and objects
    nested 1,500 and 5,000 deep, an emptied or junk image), 10 % intact records, the rest frames or documents damaged
    around their fields (magic, version, header length, truncated, not UTF-8, not an object, oversized), valid
    encodings damaged byte by byte and arbitrary bytes. Each decodes to its dataclass, every field of its declared
    type, that re-encodes to the same record (an intact record to itself), or raises EventDecodeError with a reason
    of the decoder's own: a framing reason for a value refused at its frame or document, a field reason past it;
    anything else fails. At least 25 % of the cases reach the field checks ("deep")."""
    tally: Counter[str] = Counter()

    @DECODER_FUZZ
    @given(fmt.cases())
    def decode_one(case: Case) -> None:
        tally["cases"] += 1
        tally["deep"] += check_one(fmt, case)

    try:
        with without_project_constants():  # the same cases (and figures) whatever else the run imported
            decode_one()
    finally:
        cases, deep = tally["cases"], tally["deep"]
        reliability_figures(f"{cases:,} cases, {deep:,} deep: {deep * 100 // max(cases, 1)} %")
    assert deep >= MIN_DEEP * cases, f"only {deep} of {cases} {fmt.name} cases reached the field checks"
