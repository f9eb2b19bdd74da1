"""Table-driven tests for shared.http.freshness (RFC 9111 §4.2 lifetime and age)."""

from __future__ import annotations

import pytest

from shared.http import freshness
from tests.helpers import T, date, hdrs

CAP = 2**31
# Expires values that are not an HTTP-date (RFC 9110 §5.6.7); each is an hour after T.
EXPIRES_INVALID = [
    ("zone-utc", "Sun, 06 Nov 1994 09:49:37 UTC"),
    ("zone-offset", "Sun, 06 Nov 1994 09:49:37 +0000"),
    ("zone-aest", "Sun, 06 Nov 1994 19:49:37 AEST"),
    ("no-zone", "Sun, 06 Nov 1994 09:49:37"),
    ("imf-2digit-year", "Sun, 06 Nov 94 09:49:37 GMT"),
    ("no-comma", "Sun 06 Nov 1994 09:49:37 GMT"),
    ("doubled-spaces", "Sun, 06  Nov  1994 09:49:37 GMT"),
    ("dashes", "Sun, 06-Nov-1994 09:49:37 GMT"),
    ("dots", "Sun, 06 Nov 1994 09.49.37 GMT"),
    ("1-digit-hour", "Sun, 06 Nov 1994 9:49:37 GMT"),
    ("misspelt-weekday", "Snu, 06 Nov 1994 09:49:37 GMT"),
    ("no-such-day", "Sun, 31 Feb 1994 09:49:37 GMT"),
    ("list-of-two", "Sun, 06 Nov 1994 09:49:37 GMT, Sun, 06 Nov 1994 10:49:37 GMT"),
    ("zero", "0"),
]


# --- freshness_lifetime --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "response", "cap", "expected"),
    [
        pytest.param(200, ("Cache-Control: s-maxage=100, max-age=10",), 3600, 100, id="s-maxage"),
        pytest.param(
            200,
            ("Cache-Control: max-age=10", f"Date: {date(0)}", f"Expires: {date(500)}"),
            3600,
            10,
            id="max-age-over-expires",
        ),
        pytest.param(
            200, ("Cache-Control: s-maxage=abc, max-age=10",), 3600, 0, id="invalid-s-maxage"
        ),
        pytest.param(200, ("Cache-Control: max-age=abc",), 3600, 0, id="invalid-max-age"),
        pytest.param(200, ("Cache-Control: max-age",), 3600, 0, id="valueless-max-age"),
        pytest.param(200, ("Cache-Control: max-age=99999999999",), 0, CAP, id="huge-max-age"),
        pytest.param(200, (f"Date: {date(0)}", f"Expires: {date(3600)}"), 0, 3600, id="expires"),
        pytest.param(
            200,
            (f"Date: {date(0)}", f"Expires: {date(60)}", f"Expires: {date(3600)}"),
            0,
            0,
            id="expires-two-lines-expired-9111-5.3",
        ),
        pytest.param(
            200,
            (f"Date: {date(0)}", "Expires: 0", f"Last-Modified: {date(-9999)}"),
            3600,
            0,
            id="expires-invalid",
        ),
        pytest.param(200, (f"Date: {date(0)}", f"Expires: {date(-100)}"), 0, 0, id="expires-past"),
        pytest.param(200, (f"Expires: {date(3600)}",), 0, 0, id="expires-without-date"),
        pytest.param(
            200, (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"), 3600, 100, id="heuristic"
        ),
        pytest.param(
            200, (f"Date: {date(0)}", f"Last-Modified: {date(-(10**6))}"), 3600, 3600, id="h-capped"
        ),
        pytest.param(
            200, (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"), 0, 0, id="h-disabled"
        ),
        pytest.param(
            200, (f"Date: {date(0)}", f"Last-Modified: {date(50)}"), 3600, 0, id="h-future-lm"
        ),
        pytest.param(
            404, (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"), 3600, 100, id="h-404"
        ),
        pytest.param(
            302, (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"), 3600, 0, id="h-302"
        ),
        pytest.param(
            302,
            ("Cache-Control: public", f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"),
            3600,
            100,
            id="h-302-public",
        ),
        pytest.param(200, (f"Last-Modified: {date(-1000)}",), 3600, 0, id="h-without-date"),
        pytest.param(200, (f"Date: {date(0)}",), 3600, 0, id="h-without-last-modified"),
        pytest.param(200, (), 3600, 0, id="nothing"),
        *[
            # RFC 9111 §5.3: an Expires that is not a strict HTTP-date (RFC 9110 §5.6.7) has
            # already expired, even with a Last-Modified that would give a heuristic.
            pytest.param(
                200,
                (f"Date: {date(0)}", f"Expires: {bad}", f"Last-Modified: {date(-9999)}"),
                3600,
                0,
                id=f"expires-{name}-expired-9111-5.3",
            )
            for name, bad in EXPIRES_INVALID
        ],
        pytest.param(
            200,
            (f"Date: {date(0)}", "Expires: Sunday, 06-Nov-94 09:49:37 GMT"),
            0,
            3600,
            id="expires-rfc850-9110-5.6.7",
        ),
        pytest.param(
            200,
            (f"Date: {date(0)}", "Expires: Sun Nov  6 09:49:37 1994"),
            0,
            3600,
            id="expires-asctime-9110-5.6.7",
        ),
        pytest.param(
            200,
            (f"Date: {date(0)}", "Last-Modified: Sun, 06 Nov 1994 08:32:57 UTC"),
            3600,
            0,
            id="lm-invalid-no-heuristic-9111-4.2.2",
        ),
        pytest.param(
            200,
            (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}", f"Last-Modified: {date(-1000)}"),
            3600,
            0,
            id="lm-two-lines-no-heuristic-9111-4.2.2",
        ),
        pytest.param(
            200,
            ("Date: Sun, 06 Nov 1994 08:49:37 +0000", f"Expires: {date(3600)}"),
            0,
            0,
            id="date-invalid-no-expires-lifetime-9111-4.2.1",
        ),
    ],
)
def test_freshness_lifetime_table(status, response, cap, expected):
    """s-maxage, then max-age, then Expires - Date, then 10% heuristic (RFC 9111 §4.2)."""
    got = freshness.freshness_lifetime(status, hdrs(*response), heuristic_max_age=cap)
    assert got == expected


# --- current_age ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "request_time", "response_time", "now", "expected"),
    [
        pytest.param((f"Date: {date(0)}",), T, T, T + 10, 10, id="resident-only"),
        pytest.param((f"Date: {date(0)}", "Age: 30"), T - 2, T, T + 10, 42, id="age-plus-delay"),
        pytest.param((f"Date: {date(-100)}",), T, T, T + 10, 110, id="apparent-age"),
        pytest.param((f"Date: {date(-100)}", "Age: 20"), T - 1, T, T, 100, id="apparent-wins"),
        pytest.param((f"Date: {date(50)}",), T - 3, T, T + 10, 13, id="date-in-future"),
        pytest.param((f"Date: {date(0)}", "Age: abc"), T, T, T + 5, 5, id="invalid-age"),
        pytest.param(("Age: 7",), T - 1, T, T + 1, 9, id="no-date"),
        pytest.param(("Date: nonsense",), T, T, T + 1, 1, id="invalid-date"),
        pytest.param(("Age: 9999999999999",), T, T, T, CAP, id="huge-age"),
        # RFC 9111 §5.1: a list-based Age uses its first member, the rest discarded
        pytest.param(("Age: 7200, 0",), T, T, T, 7200, id="age-list-first-9111-5.1"),
        pytest.param(("Age: 7200,0",), T, T, T, 7200, id="age-list-no-space-9111-5.1"),
        pytest.param(("Age: 7200", "Age: 0"), T, T, T, 7200, id="age-two-lines-9111-5.1"),
        pytest.param(("Age: 0, 7200",), T, T, T, 0, id="age-list-first-is-0-9111-5.1"),
        pytest.param(("Age: 0", "Age: 7200"), T, T, T, 0, id="age-lines-first-is-0-9111-5.1"),
        pytest.param(("Age: abc, 7200",), T, T, T, 0, id="age-first-invalid-ignored-9111-5.1"),
        pytest.param(("Age: -7200",), T, T, T, 0, id="age-negative-ignored-9111-5.1"),
        pytest.param(("Age: 7200.0",), T, T, T, 0, id="age-float-ignored-9111-5.1"),
        # RFC 9111 §4.2.3 with a strict Date (RFC 9110 §5.6.7): an invalid one gives no skew
        pytest.param(
            ("Date: Sun, 06 Nov 1994 07:49:37 UTC",), T, T, T, 0, id="date-utc-invalid-no-skew"
        ),
        pytest.param(
            (f"Date: {date(-100)}", f"Date: {date(-100)}"), T, T, T, 0, id="date-two-lines-no-skew"
        ),
    ],
)
def test_current_age_table(response, request_time, response_time, now, expected):
    """RFC 9111 §4.2.3: corrected initial age plus resident time."""
    assert freshness.current_age(hdrs(*response), request_time, response_time, now) == expected


def test_module_exports_resolve():
    """Every name in __all__ exists."""
    assert all(hasattr(freshness, name) for name in freshness.__all__)
