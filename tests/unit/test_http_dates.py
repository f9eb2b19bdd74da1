"""Table-driven tests for shared.http.dates (RFC 9110 §5.6.7 HTTP-date)."""

from __future__ import annotations

import time

import pytest

from shared.http import dates
from tests.helpers import T, hdrs

IMF = "Sun, 06 Nov 1994 08:49:37 GMT"


Y2050 = 2_524_608_000.0  # Sat, 01 Jan 2050 00:00:00 GMT, a clock for rfc850 years


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 9110 §5.6.7: the three formats, and nothing else.
        pytest.param(IMF, T, id="imf-fixdate-5.6.7"),
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", T, id="rfc850-5.6.7"),
        pytest.param("Sun Nov  6 08:49:37 1994", T, id="asctime-5.6.7"),
        pytest.param("Sun Nov 06 08:49:37 1994", T, id="asctime-2digit-day-5.6.7"),
        pytest.param(f" {IMF}\t", T, id="ows-around-field-value-9110-5.5"),
        pytest.param("SUN, 06 NOV 1994 08:49:37 gmt", T, id="names-any-case-9111-4.2"),
        pytest.param("Tuesday, 30-Jun-92 23:59:60 GMT", 709948800.0, id="leap-second-5.6.7"),
        # invalid (RFC 9110 §5.6.7)
        pytest.param("Sun, 06 Nov 1994 08:49:37 UTC", None, id="zone-utc-9111-4.2"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 +0000", None, id="zone-offset-9111-4.2"),
        pytest.param("Sun, 06 Nov 1994 18:49:37 AEST", None, id="zone-aest-9111-4.2"),
        pytest.param("Sun, 06 Nov 1994 09:49:37 +0100", None, id="zone-offset-applied-5.6.7"),
        pytest.param("Sun, 06 Nov 1994 08:49:37", None, id="no-zone-5.6.7"),
        pytest.param("Sun Nov  6 08:49:37 1994 GMT", None, id="asctime-with-zone-5.6.7"),
        pytest.param("Sun, 06 Nov 94 08:49:37 GMT", None, id="imf-2digit-year-5.6.7"),
        pytest.param("Sunday, 06-Nov-1994 08:49:37 GMT", None, id="rfc850-4digit-year-5.6.7"),
        pytest.param("Sun Nov  6 08:49:37 94", None, id="asctime-2digit-year-5.6.7"),
        pytest.param("Sun 06 Nov 1994 08:49:37 GMT", None, id="no-comma-5.6.7"),
        pytest.param("Sunday 06-Nov-94 08:49:37 GMT", None, id="rfc850-no-comma-5.6.7"),
        pytest.param("Sun, 06  Nov  1994 08:49:37 GMT", None, id="doubled-spaces-5.6.7"),
        pytest.param("Sun,  06 Nov 1994 08:49:37 GMT", None, id="doubled-space-after-comma"),
        pytest.param("Sun Nov 6 08:49:37 1994", None, id="asctime-unpadded-day-5.6.7"),
        pytest.param("Sun, 06-Nov-1994 08:49:37 GMT", None, id="dashes-in-imf-5.6.7"),
        pytest.param("Sun, 06 Nov 1994 08.49.37 GMT", None, id="dots-for-colons-5.6.7"),
        pytest.param("Sun, 06 Nov 1994 8:49:37 GMT", None, id="1-digit-hour-5.6.7"),
        pytest.param("Sun, 6 Nov 1994 08:49:37 GMT", None, id="1-digit-day-imf-5.6.7"),
        pytest.param("Sunday, 06 Nov 1994 08:49:37 GMT", None, id="long-weekday-in-imf"),
        pytest.param("Sun, 06-Nov-94 08:49:37 GMT", None, id="short-weekday-in-rfc850"),
        pytest.param("Snu, 06 Nov 1994 08:49:37 GMT", None, id="misspelt-weekday-5.6.7"),
        pytest.param("Sundy, 06-Nov-94 08:49:37 GMT", None, id="misspelt-long-weekday"),
        pytest.param("Sun, 06 November 1994 08:49:37 GMT", None, id="long-month-5.6.7"),
        pytest.param("06 Nov 1994 08:49:37 GMT", None, id="no-weekday-5.6.7"),
        pytest.param("Sun, 31 Feb 1994 08:49:37 GMT", None, id="no-such-day"),
        pytest.param("Sun, 29 Feb 1994 08:49:37 GMT", None, id="not-a-leap-year"),
        pytest.param("Sun, 06 Nov 1994 24:00:00 GMT", None, id="hour-24"),
        pytest.param("Sun, 06 Nov 1994 08:60:00 GMT", None, id="minute-60"),
        pytest.param("Sun, 06 Nov 1994 08:49:61 GMT", None, id="second-61"),
        pytest.param("Sun, 06 Nov 0000 08:49:37 GMT", None, id="year-0"),
        pytest.param(f"{IMF}, {IMF}", None, id="list-of-two-dates-9110-5.3"),
        pytest.param(f"{IMF},", None, id="trailing-comma-9110-5.3"),
        pytest.param("0", None, id="zero-9111-5.3"),
        pytest.param("-1", None, id="minus-one"),
        pytest.param("garbage", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
    ],
)
def test_parse_http_date_table(value, expected):
    """All three RFC 9110 §5.6.7 formats; anything else is None."""
    assert dates.parse_http_date(value) == expected


@pytest.mark.parametrize(
    ("value", "now", "year"),
    [
        # RFC 9110 §5.6.7: more than 50 years in the future is the previous century
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", Y2050, 2094, id="94-in-2050-44y-on"),
        pytest.param("Friday, 01-Jan-99 00:00:00 GMT", Y2050, 2099, id="99-in-2050-is-49y-on"),
        pytest.param("Thursday, 01-Jan-00 00:00:00 GMT", Y2050, 2100, id="00-in-2050-50y-on"),
        pytest.param("Friday, 01-Jan-01 00:00:00 GMT", Y2050, 2001, id="01-in-2050-51y-on"),
        pytest.param("Saturday, 01-Jan-00 00:00:00 GMT", T, 2000, id="00-in-1994"),
        pytest.param("Friday, 01-Jan-44 00:00:00 GMT", T, 2044, id="44-in-1994-50y-on"),
        pytest.param("Monday, 01-Jan-45 00:00:00 GMT", T, 1945, id="45-in-1994-51y-on"),
    ],
)
def test_parse_http_date_rfc850_two_digit_year(value, now, year):
    """An rfc850 year is the nearest one at most 50 years after ``now`` (RFC 9110 §5.6.7)."""
    parsed = dates.parse_http_date(value, now)
    assert parsed is not None and time.gmtime(parsed).tm_year == year


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param((f"Expires: {IMF}",), T, id="one-line"),
        pytest.param((f"Expires: {IMF}", f"Expires: {IMF}"), None, id="two-lines-9110-5.3"),
        pytest.param((f"Expires: {IMF}, {IMF}",), None, id="comma-list-9110-5.3"),
        pytest.param((), None, id="absent"),
    ],
)
def test_field_date_is_one_date(lines, expected):
    """A date field with two values, on two lines or in a list, is invalid (RFC 9110 §5.3)."""
    assert dates.field_date(hdrs(*lines), "Expires") == expected


def test_format_http_date_imf_fixdate():
    """IMF-fixdate in GMT, and it parses back."""
    assert dates.format_http_date(T) == IMF
    assert dates.parse_http_date(dates.format_http_date(T + 0.9)) == T


def test_module_exports_resolve():
    """Every name in __all__ exists."""
    assert all(hasattr(dates, name) for name in dates.__all__)
