"""Table-driven tests for shared.http.dates (RFC 9110 §5.6.7 HTTP-date)."""

from __future__ import annotations

import pytest

from shared.http import dates
from tests.helpers import T

IMF = "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(IMF, T, id="imf-fixdate"),
        pytest.param("Sunday, 06-Nov-94 08:49:37 GMT", T, id="rfc850"),
        pytest.param("Sun Nov  6 08:49:37 1994", T, id="asctime"),
        pytest.param("Sun, 06 Nov 1994 08:49:37", T, id="no-zone-is-gmt"),
        pytest.param("Sun, 06 Nov 1994 09:49:37 +0100", T, id="offset"),
        pytest.param("0", None, id="zero"),
        pytest.param("-1", None, id="minus-one"),
        pytest.param("garbage", None, id="garbage"),
        pytest.param("Sun, 31 Feb 1994 08:49:37 GMT", None, id="no-such-day"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
    ],
)
def test_parse_http_date_table(value, expected):
    """All three RFC 9110 §5.6.7 formats; anything else is None."""
    assert dates.parse_http_date(value) == expected


def test_format_http_date_imf_fixdate():
    """IMF-fixdate in GMT, and it parses back."""
    assert dates.format_http_date(T) == IMF
    assert dates.parse_http_date(dates.format_http_date(T + 0.9)) == T


def test_module_exports_resolve():
    """Every name in __all__ exists."""
    assert all(hasattr(dates, name) for name in dates.__all__)
