"""Table-driven tests for shared.http.freshness (RFC 9111 §4.2 lifetime and age)."""

from __future__ import annotations

import pytest

from shared.http import freshness
from tests.helpers import T, date, hdrs

CAP = 2**31


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
            60,
            id="expires-first-line",
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
    ],
)
def test_current_age_table(response, request_time, response_time, now, expected):
    """RFC 9111 §4.2.3: corrected initial age plus resident time."""
    assert freshness.current_age(hdrs(*response), request_time, response_time, now) == expected


def test_module_exports_resolve():
    """Every name in __all__ exists."""
    assert all(hasattr(freshness, name) for name in freshness.__all__)
