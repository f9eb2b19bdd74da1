"""Table-driven tests for shared.http.conditionals (RFC 9110 §13 conditionals, §14 Range)."""

from __future__ import annotations

import pytest

from shared.http import conditionals
from shared.http.conditionals import RangeKind, RangeResult
from tests.helpers import date, hdrs

# --- conditionals --------------------------------------------------------------------------

STORED = ('ETag: "v1"', f"Last-Modified: {date(0)}", f"Date: {date(100)}")


@pytest.mark.parametrize(
    ("method", "req", "response", "expected"),
    [
        pytest.param("GET", (), STORED, False, id="unconditional"),
        pytest.param("GET", ('If-None-Match: "v1"',), STORED, True, id="inm-match"),
        pytest.param("HEAD", ('If-None-Match: "v1"',), STORED, True, id="inm-head"),
        pytest.param("POST", ('If-None-Match: "v1"',), STORED, False, id="inm-post"),
        pytest.param("GET", ('If-None-Match: W/"v1"',), STORED, True, id="inm-weak-request"),
        pytest.param(
            "GET", ('If-None-Match: "v1"',), ('ETag: W/"v1"',), True, id="inm-weak-response"
        ),
        pytest.param("GET", ('If-None-Match: "x", "v1"',), STORED, True, id="inm-list"),
        pytest.param("GET", ('If-None-Match: "x", "y"',), STORED, False, id="inm-no-match"),
        pytest.param(
            "GET", ('If-None-Match: "x"', 'If-None-Match: "v1"'), STORED, True, id="inm-lines"
        ),
        pytest.param("GET", ('If-None-Match: "V1"',), STORED, False, id="inm-case-sensitive"),
        pytest.param("GET", ('If-None-Match: "a,b"',), ('ETag: "a,b"',), True, id="inm-comma"),
        pytest.param("GET", ("If-None-Match: *",), STORED, True, id="inm-star"),
        pytest.param("GET", ("If-None-Match: *",), (), True, id="inm-star-no-etag"),
        pytest.param("GET", ('If-None-Match: "v1"',), (), False, id="inm-no-etag"),
        pytest.param(
            "GET",
            ('If-None-Match: "x"', f"If-Modified-Since: {date(500)}"),
            STORED,
            False,
            id="inm-precedes-ims",
        ),
        pytest.param("GET", (f"If-Modified-Since: {date(10)}",), STORED, True, id="ims-later"),
        pytest.param("GET", (f"If-Modified-Since: {date(0)}",), STORED, True, id="ims-equal"),
        pytest.param("GET", (f"If-Modified-Since: {date(-1)}",), STORED, False, id="ims-earlier"),
        pytest.param("POST", (f"If-Modified-Since: {date(10)}",), STORED, False, id="ims-post"),
        pytest.param("GET", ("If-Modified-Since: yesterday",), STORED, False, id="ims-invalid"),
        pytest.param(
            "GET",
            (f"If-Modified-Since: {date(10)}", f"If-Modified-Since: {date(20)}"),
            STORED,
            False,
            id="ims-two-lines",
        ),
        pytest.param(
            "GET", (f"If-Modified-Since: {date(10)}",), (f"Date: {date(5)}",), True, id="ims-date"
        ),
        pytest.param(
            "GET",
            (f"If-Modified-Since: {date(10)}",),
            (f"Date: {date(50)}",),
            False,
            id="ims-date-after",
        ),
        pytest.param(
            "GET",
            (f"If-Modified-Since: {date(10)}",),
            ("Last-Modified: junk", f"Date: {date(5)}"),
            False,
            id="ims-invalid-last-modified",
        ),
        pytest.param("GET", (f"If-Modified-Since: {date(10)}",), (), False, id="ims-no-dates"),
    ],
)
def test_evaluate_conditionals_table(method, req, response, expected):
    """If-None-Match (weak) first, else If-Modified-Since (RFC 9110 §13.2.2)."""
    assert conditionals.evaluate_conditionals(method, hdrs(*req), hdrs(*response)) is expected


# --- ranges --------------------------------------------------------------------------------


def full(length):
    return RangeResult(RangeKind.FULL, 0, length - 1)


def part(start, end):
    return RangeResult(RangeKind.PARTIAL, start, end)


UNSAT = RangeResult(RangeKind.UNSATISFIABLE)
INVALID = RangeResult(RangeKind.INVALID)


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        pytest.param(None, 1000, full(1000), id="none"),
        pytest.param("", 1000, full(1000), id="empty"),
        pytest.param("items=0-1", 1000, full(1000), id="other-unit"),
        pytest.param("garbage", 1000, full(1000), id="no-unit"),
        pytest.param("bytes=0-1,5-6", 1000, full(1000), id="multiple"),
        pytest.param("bytes=0-99", 1000, part(0, 99), id="first-last"),
        pytest.param("bytes=0-0", 1000, part(0, 0), id="one-byte"),
        pytest.param("bytes=999-999", 1000, part(999, 999), id="last-byte"),
        pytest.param("bytes=100-", 1000, part(100, 999), id="open-ended"),
        pytest.param("bytes=0-", 1000, part(0, 999), id="whole-as-range"),
        pytest.param("bytes=500-5000", 1000, part(500, 999), id="end-clipped"),
        pytest.param("bytes=0-" + "9" * 30, 1000, part(0, 999), id="huge-end-clipped"),
        pytest.param("bytes=-100", 1000, part(900, 999), id="suffix"),
        pytest.param("bytes=-2000", 1000, part(0, 999), id="suffix-longer"),
        pytest.param("Bytes=0-1", 1000, part(0, 1), id="unit-case"),
        pytest.param(" bytes = 0-1 ", 1000, part(0, 1), id="outer-spaces"),
        pytest.param("bytes=0-1,", 1000, part(0, 1), id="trailing-comma"),
        pytest.param("bytes=1000-", 1000, UNSAT, id="start-at-length"),
        pytest.param("bytes=1000-2000", 1000, UNSAT, id="start-beyond"),
        pytest.param("bytes=" + "9" * 5000 + "-", 1000, UNSAT, id="huge-start"),
        pytest.param("bytes=-0", 1000, UNSAT, id="suffix-zero"),
        pytest.param("bytes=0-", 0, UNSAT, id="empty-object"),
        pytest.param("bytes=-5", 0, UNSAT, id="empty-object-suffix"),
        pytest.param(None, 0, full(0), id="empty-object-full"),
        pytest.param("bytes=abc", 1000, INVALID, id="word"),
        pytest.param("bytes=5-2", 1000, INVALID, id="reversed"),
        pytest.param("bytes=1001-1000", 1000, INVALID, id="reversed-beyond"),
        pytest.param("bytes=", 1000, INVALID, id="empty-set"),
        pytest.param("bytes", 1000, INVALID, id="no-equals"),
        pytest.param("bytes=,", 1000, INVALID, id="only-comma"),
        pytest.param("bytes=-", 1000, INVALID, id="dash"),
        pytest.param("bytes=1 - 2", 1000, INVALID, id="inner-spaces"),
        pytest.param("bytes=0-1,abc", 1000, INVALID, id="one-bad-of-many"),
        pytest.param("bytes=-1-2", 1000, INVALID, id="negative"),
    ],
)
def test_parse_range_table(value, length, expected):
    """One bytes range is decided; others are served whole or refused (RFC 9110 §14)."""
    assert conditionals.parse_range(value, length) == expected


@pytest.mark.parametrize(
    ("if_range", "response", "expected"),
    [
        pytest.param(None, STORED, True, id="absent"),
        pytest.param('"v1"', STORED, True, id="etag-match"),
        pytest.param(' "v1" ', STORED, True, id="etag-padded"),
        pytest.param('"v2"', STORED, False, id="etag-differs"),
        pytest.param('W/"v1"', STORED, False, id="weak-request"),
        pytest.param('"v1"', ('ETag: W/"v1"',), False, id="weak-response"),
        pytest.param('W/"v1"', ('ETag: W/"v1"',), False, id="weak-both"),
        pytest.param('"v1"', (), False, id="no-etag"),
        pytest.param(date(0), STORED, True, id="date-match"),
        pytest.param(date(1), STORED, False, id="date-later"),
        pytest.param(date(-1), STORED, False, id="date-earlier"),
        pytest.param(date(0), ('ETag: "v1"',), False, id="no-last-modified"),
        pytest.param("garbage", STORED, False, id="garbage"),
    ],
)
def test_if_range_matches_table(if_range, response, expected):
    """Strong ETag or exact Last-Modified lets the Range apply (RFC 9110 §13.1.5)."""
    assert conditionals.if_range_matches(if_range, hdrs(*response)) is expected


def test_module_exports_resolve():
    """Every name in __all__ exists."""
    assert all(hasattr(conditionals, name) for name in conditionals.__all__)


# --- continuing a body cut short (If-Range, RFC 9110 §13.1.5) ------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(('ETag: "v1"',), '"v1"', id="strong-etag"),
        pytest.param(('ETag: W/"v1"', f"Last-Modified: {date(0)}"), None, id="weak-etag"),
        pytest.param((f"Last-Modified: {date(0)}", f"Date: {date(100)}"), date(0), id="old-lm"),
        pytest.param((f"Last-Modified: {date(0)}", f"Date: {date(0)}"), None, id="lm-is-date"),
        pytest.param((f"Last-Modified: {date(0)}",), None, id="lm-no-date"),
        pytest.param((), None, id="none"),
    ],
)
def test_if_range_validator(headers, expected):
    assert conditionals.if_range_validator(hdrs(*headers)) == expected


FIRST = hdrs('ETag: "v1"')
V1, V2 = 'ETag: "v1"', 'ETag: "v2"'
CR = "Content-Range: bytes"


@pytest.mark.parametrize(
    ("status", "rest", "rest_length", "end", "expected"),
    [
        pytest.param(206, (V1, f"{CR} 40-99/100"), 60, None, 0, id="206"),
        pytest.param(206, (V1, f"{CR} 40-59/100"), 20, 60, 0, id="206-end"),
        pytest.param(206, (V1, f"{CR} 41-99/100"), 59, None, None, id="wrong-start"),
        pytest.param(206, (V1, f"{CR} 40-99/120"), 80, None, None, id="wrong-total"),
        pytest.param(206, (V2, f"{CR} 40-99/100"), 60, None, None, id="changed"),
        pytest.param(206, (V1,), 60, None, None, id="no-content-range"),
        pytest.param(200, (V1,), 100, None, 40, id="200-same-skips"),
        pytest.param(200, (V1,), 90, None, None, id="200-other-length"),
        pytest.param(200, (V2,), 100, None, None, id="200-changed"),
        pytest.param(416, (V1,), 0, None, None, id="416"),
    ],
)  # fmt: skip
def test_resume_offset(status, rest, rest_length, end, expected):
    """Where byte 40 of a 100-byte body is in the answer that continues it, if any."""
    got = conditionals.resume_offset(FIRST, 100, status, hdrs(*rest), rest_length, 40, end)
    assert got == expected


# --- strict HTTP-dates in If-Modified-Since (RFC 9110 §13.1.3, §5.6.7) ----------------------


@pytest.mark.parametrize(
    ("ims", "response", "expected"),
    [
        pytest.param("Sun, 06 Nov 1994 08:49:47 GMT", STORED, True, id="imf-fixdate-5.6.7"),
        pytest.param("Sunday, 06-Nov-94 08:49:47 GMT", STORED, True, id="rfc850-5.6.7"),
        pytest.param("Sun Nov  6 08:49:47 1994", STORED, True, id="asctime-5.6.7"),
        # an invalid If-Modified-Since is ignored (§13.1.3): 200, never 304
        pytest.param("Sun, 06 Nov 1994 08:49:47 UTC", STORED, False, id="ims-utc-ignored"),
        pytest.param("Sun, 06 Nov 1994 08:49:47 +0000", STORED, False, id="ims-offset-ignored"),
        pytest.param("Sun, 06 Nov 1994 08:49:47", STORED, False, id="ims-no-zone-ignored"),
        pytest.param("Sun 06 Nov 1994 08:49:47 GMT", STORED, False, id="ims-no-comma-ignored"),
        pytest.param("Sun, 06 Nov 94 08:49:47 GMT", STORED, False, id="ims-2digit-year-ignored"),
        pytest.param("Sun, 06 Nov 1994 8:49:47 GMT", STORED, False, id="ims-1digit-hour-ignored"),
        pytest.param("Sun, 06-Nov-1994 08:49:47 GMT", STORED, False, id="ims-dashes-ignored"),
        pytest.param(
            "Sun, 06 Nov 1994 08:49:47 GMT, Sun, 06 Nov 1994 08:49:57 GMT",
            STORED,
            False,
            id="ims-list-ignored-9110-5.3",
        ),
        # the stored validator is strict too: an invalid Last-Modified never matches
        pytest.param(
            "Sun, 06 Nov 1994 08:49:47 GMT",
            ("Last-Modified: Sun, 06 Nov 1994 08:49:37 UTC", f"Date: {date(100)}"),
            False,
            id="lm-utc-never-matches",
        ),
        pytest.param(
            "Sun, 06 Nov 1994 08:49:47 GMT",
            ("Date: Sun, 06 Nov 1994 08:49:37 +0000",),
            False,
            id="date-offset-never-matches",
        ),
    ],
)
def test_evaluate_conditionals_strict_dates(ims, response, expected):
    """Only an RFC 9110 §5.6.7 HTTP-date in If-Modified-Since can turn a 200 into a 304."""
    req = hdrs(f"If-Modified-Since: {ims}")
    assert conditionals.evaluate_conditionals("GET", req, hdrs(*response)) is expected
