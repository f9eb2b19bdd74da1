"""Table-driven tests for shared.http.cachepolicy (RFC 9111 / RFC 9110 decisions)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shared.http import cachepolicy as cp
from shared.http.cachepolicy import Lookup, RangeKind, RangeResult, Storable

T = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
IMF = "Sun, 06 Nov 1994 08:49:37 GMT"
CAP = 2**31


def hdrs(*lines: str) -> CIMultiDictProxy[str]:
    """Headers from ``"Name: value"`` lines, in order, repeats kept."""
    pairs = [line.split(":", 1) for line in lines]
    return CIMultiDictProxy(CIMultiDict([(name, value.strip()) for name, value in pairs]))


def date(offset: float) -> str:
    return cp.format_http_date(T + offset)


# --- parse_cache_control / delta_seconds ---------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([], {}, id="absent"),
        pytest.param(["max-age=60"], {"max-age": "60"}, id="one"),
        pytest.param(["Max-Age=60, PUBLIC"], {"max-age": "60", "public": None}, id="lowercased"),
        pytest.param(["max-age=60", "no-cache"], {"max-age": "60", "no-cache": None}, id="lines"),
        pytest.param(["max-age=60, max-age=10"], {"max-age": "60"}, id="first-wins"),
        pytest.param(["max-age=60", "Max-Age=10"], {"max-age": "60"}, id="first-line-wins"),
        pytest.param(
            ['private="Set-Cookie, X-Foo", no-cache'],
            {"private": "Set-Cookie, X-Foo", "no-cache": None},
            id="quoted-comma",
        ),
        pytest.param([r'ext="a\"b\\c"'], {"ext": 'a"b\\c'}, id="quoted-escapes"),
        pytest.param(['max-age="30"'], {"max-age": "30"}, id="quoted-delta"),
        pytest.param(
            [",, ,max-age=5 ,  ,no-store,"], {"max-age": "5", "no-store": None}, id="empty-members"
        ),
        pytest.param([" max-age = 5 "], {"max-age": "5"}, id="spaces"),
        pytest.param(['"q"=1, =5, a b, ok'], {"ok": None}, id="junk-names"),
        pytest.param(['ext="abc, max-age=5'], {"ext": "abc, max-age=5"}, id="unterminated-quote"),
        pytest.param(['ext="'], {"ext": ""}, id="lone-quote"),
        pytest.param(["max-age="], {"max-age": ""}, id="empty-value"),
    ],
)
def test_parse_cache_control_table(lines, expected):
    """Directives from all lines: lowercased names, unquoted values, junk skipped."""
    assert cp.parse_cache_control(hdrs(*(f"Cache-Control: {v}" for v in lines))) == expected


@pytest.mark.parametrize(
    ("directives", "expected"),
    [
        pytest.param({"max-age": "60"}, 60, id="plain"),
        pytest.param({"max-age": "0"}, 0, id="zero"),
        pytest.param({"max-age": " 7 "}, 7, id="padded"),
        pytest.param({"max-age": "2147483647"}, 2147483647, id="below-cap"),
        pytest.param({"max-age": "2147483648"}, CAP, id="at-cap"),
        pytest.param({"max-age": "99999999999999"}, CAP, id="above-cap"),
        pytest.param({"max-age": "9" * 5000}, CAP, id="too-many-digits"),
        pytest.param({"max-age": "0" * 5000 + "7"}, 7, id="leading-zeros"),
        pytest.param({"max-age": "-1"}, None, id="negative"),
        pytest.param({"max-age": "+5"}, None, id="plus-sign"),
        pytest.param({"max-age": "1.5"}, None, id="fraction"),
        pytest.param({"max-age": "abc"}, None, id="word"),
        pytest.param({"max-age": "\u0663"}, None, id="non-ascii-digit"),
        pytest.param({"max-age": ""}, None, id="empty"),
        pytest.param({"max-age": None}, None, id="valueless"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_delta_seconds_table(directives, expected):
    """Non-negative integers only, capped at 2**31 (RFC 9111 §1.2.2)."""
    assert cp.delta_seconds(directives, "max-age") == expected


# --- dates ---------------------------------------------------------------------------------


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
    assert cp.parse_http_date(value) == expected


def test_format_http_date_imf_fixdate():
    """IMF-fixdate in GMT, and it parses back."""
    assert cp.format_http_date(T) == IMF
    assert cp.parse_http_date(cp.format_http_date(T + 0.9)) == T


# --- end_to_end ----------------------------------------------------------------------------


def test_end_to_end_drops_hop_by_hop_and_connection_fields():
    """Hop-by-hop fields and fields named in Connection go; repeats of the rest stay."""
    headers = hdrs(
        "Connection: close, X-Secret",
        "connection: X-Other",
        "Keep-Alive: timeout=5",
        "Proxy-Connection: keep-alive",
        "TE: trailers",
        "Trailer: X-T",
        "Transfer-Encoding: chunked",
        "Upgrade: h2c",
        "Proxy-Authenticate: Basic",
        "Proxy-Authorization: Basic x",
        "x-secret: 1",
        "X-Other: 2",
        "Set-Cookie: a=1",
        "Content-Type: text/plain",
        "Set-Cookie: b=2",
    )
    result = cp.end_to_end(headers)
    assert isinstance(result, CIMultiDict)
    assert list(result.items()) == [
        ("Set-Cookie", "a=1"),
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "b=2"),
    ]
    assert len(headers) == 15


# --- storable ------------------------------------------------------------------------------

FRESH_200 = ("Cache-Control: max-age=60",)


@pytest.mark.parametrize(
    ("method", "status", "req", "response", "expected"),
    [
        pytest.param("GET", 200, (), FRESH_200, Storable.YES, id="max-age"),
        pytest.param("HEAD", 200, (), FRESH_200, Storable.METHOD, id="head"),
        pytest.param("POST", 200, (), FRESH_200, Storable.METHOD, id="post"),
        pytest.param("get", 200, (), FRESH_200, Storable.METHOD, id="method-case-sensitive"),
        pytest.param("GET", 206, (), FRESH_200, Storable.STATUS, id="206"),
        pytest.param("GET", 100, (), FRESH_200, Storable.STATUS, id="1xx"),
        pytest.param("GET", 304, (), FRESH_200, Storable.STATUS, id="304"),
        pytest.param("GET", 500, (), FRESH_200, Storable.STATUS, id="500"),
        pytest.param("GET", 503, (), FRESH_200, Storable.STATUS, id="503"),
        pytest.param("GET", 302, (), FRESH_200, Storable.YES, id="302-explicit"),
        pytest.param("GET", 302, (), ('ETag: "a"',), Storable.NO_FRESHNESS, id="302-implicit"),
        pytest.param("GET", 307, (), ("Expires: 0",), Storable.NOT_FRESH, id="307-expires-0"),
        pytest.param("GET", 302, (), ("Cache-Control: public",), Storable.NOT_FRESH, id="302-pub"),
        pytest.param(
            "GET",
            302,
            (),
            ("Cache-Control: public", f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"),
            Storable.YES,
            id="302-public-heuristic",
        ),
        pytest.param("GET", 404, (), (), Storable.NOT_FRESH, id="404-bare"),
        pytest.param("GET", 404, (), FRESH_200, Storable.YES, id="404-max-age"),
        pytest.param("GET", 204, (), FRESH_200, Storable.YES, id="204"),
        pytest.param(
            "GET", 200, ("Cache-Control: no-store",), FRESH_200, Storable.NO_STORE, id="req-nostore"
        ),
        pytest.param(
            "GET",
            200,
            (),
            ("Cache-Control: max-age=60, no-store",),
            Storable.NO_STORE,
            id="resp-no-store",
        ),
        pytest.param(
            "GET", 200, (), ("Cache-Control: private, max-age=60",), Storable.PRIVATE, id="private"
        ),
        pytest.param(
            "GET",
            200,
            (),
            ('Cache-Control: private="Set-Cookie", max-age=60',),
            Storable.PRIVATE,
            id="private-qualified",
        ),
        pytest.param(
            "GET", 200, ("Authorization: x",), FRESH_200, Storable.AUTHORIZATION, id="auth"
        ),
        pytest.param(
            "GET",
            200,
            ("Authorization: x",),
            ("Cache-Control: public, max-age=60",),
            Storable.YES,
            id="auth-public",
        ),
        pytest.param(
            "GET",
            200,
            ("authorization: x",),
            ("Cache-Control: s-maxage=60",),
            Storable.YES,
            id="auth-s-maxage",
        ),
        pytest.param(
            "GET",
            200,
            ("Authorization: x",),
            ("Cache-Control: must-revalidate, max-age=60",),
            Storable.YES,
            id="auth-must-revalidate",
        ),
        pytest.param("GET", 200, (), (*FRESH_200, "Vary: *"), Storable.VARY_STAR, id="vary-star"),
        pytest.param(
            "GET",
            200,
            (),
            (*FRESH_200, "Vary: Accept-Encoding", "Vary: *"),
            Storable.VARY_STAR,
            id="vary-star-second-line",
        ),
        pytest.param(
            "GET", 200, (), (*FRESH_200, "Vary: Accept-Encoding"), Storable.YES, id="vary-names"
        ),
        pytest.param("GET", 200, (), (), Storable.NOT_FRESH, id="bare-200"),
        pytest.param("GET", 200, (), ('ETag: "a"',), Storable.YES, id="etag-only"),
        pytest.param(
            "GET",
            200,
            (),
            (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"),
            Storable.YES,
            id="heuristic",
        ),
        pytest.param(
            "GET", 200, (), ("Cache-Control: no-cache", 'ETag: "a"'), Storable.YES, id="no-cache"
        ),
        pytest.param(
            "GET", 200, (), ("Cache-Control: no-cache",), Storable.NOT_FRESH, id="no-cache-bare"
        ),
        pytest.param(
            "GET", 200, (), ("Cache-Control: max-age=0",), Storable.NOT_FRESH, id="max-age-0"
        ),
        pytest.param(
            "GET",
            200,
            (),
            ("Cache-Control: max-age=0", f"Last-Modified: {date(-5)}"),
            Storable.YES,
            id="max-age-0-last-modified",
        ),
        pytest.param("GET", 200, (), ("Expires: 0",), Storable.NOT_FRESH, id="expires-0"),
        pytest.param(
            "GET", 200, (), ("Expires: 0", 'ETag: "a"'), Storable.YES, id="expires-0-etag"
        ),
    ],
)
def test_storable_table(method, status, req, response, expected):
    """Each RFC 9111 §3 condition yields its own reason."""
    got = cp.storable(method, status, hdrs(*req), hdrs(*response), heuristic_max_age=3600)
    assert got is expected


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
    got = cp.freshness_lifetime(status, hdrs(*response), heuristic_max_age=cap)
    assert got == expected


# --- current_age / ttl ---------------------------------------------------------------------


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
    assert cp.current_age(hdrs(*response), request_time, response_time, now) == expected


# --- classify ------------------------------------------------------------------------------

MAX_AGE_100 = ("Cache-Control: max-age=100", f"Date: {date(0)}")


@pytest.mark.parametrize(
    ("req", "response", "age", "expected"),
    [
        pytest.param((), MAX_AGE_100, 10, Lookup.FRESH, id="fresh"),
        pytest.param((), MAX_AGE_100, 100, Lookup.STALE, id="at-lifetime"),
        pytest.param((), MAX_AGE_100, 150, Lookup.STALE, id="stale"),
        pytest.param(
            (),
            ("Cache-Control: max-age=100, no-cache", f"Date: {date(0)}"),
            1,
            Lookup.MUST_VALIDATE,
            id="resp-no-cache",
        ),
        pytest.param(
            ("Cache-Control: no-cache",), MAX_AGE_100, 1, Lookup.MUST_VALIDATE, id="req-no-cache"
        ),
        pytest.param(("Pragma: no-cache",), MAX_AGE_100, 1, Lookup.MUST_VALIDATE, id="pragma"),
        pytest.param(
            ("Pragma: no-cache", "Cache-Control: max-stale=5"),
            MAX_AGE_100,
            1,
            Lookup.FRESH,
            id="pragma-ignored-with-cache-control",
        ),
        pytest.param(("Pragma: x-foo",), MAX_AGE_100, 1, Lookup.FRESH, id="pragma-other"),
        pytest.param(
            ("Cache-Control: max-age=0",), MAX_AGE_100, 0, Lookup.MUST_VALIDATE, id="req-max-age-0"
        ),
        pytest.param(
            ("Cache-Control: max-age=5",), MAX_AGE_100, 10, Lookup.MUST_VALIDATE, id="req-max-age"
        ),
        pytest.param(
            ("Cache-Control: max-age=20",), MAX_AGE_100, 10, Lookup.FRESH, id="req-max-age-ok"
        ),
        pytest.param(
            ("Cache-Control: max-age=abc",), MAX_AGE_100, 10, Lookup.FRESH, id="req-max-age-bad"
        ),
        pytest.param(
            ("Cache-Control: max-age=200",), MAX_AGE_100, 150, Lookup.STALE, id="req-max-age-stale"
        ),
        pytest.param(
            ("Cache-Control: min-fresh=90",), MAX_AGE_100, 10, Lookup.FRESH, id="min-fresh-ok"
        ),
        pytest.param(
            ("Cache-Control: min-fresh=95",),
            MAX_AGE_100,
            10,
            Lookup.MUST_VALIDATE,
            id="min-fresh-short",
        ),
        pytest.param(
            ("Cache-Control: min-fresh=x",), MAX_AGE_100, 10, Lookup.FRESH, id="min-fresh-bad"
        ),
        pytest.param(("Cache-Control: max-stale",), MAX_AGE_100, 10**6, Lookup.FRESH, id="ms-any"),
        pytest.param(
            ("Cache-Control: max-stale=60",), MAX_AGE_100, 150, Lookup.FRESH, id="max-stale-within"
        ),
        pytest.param(
            ("Cache-Control: max-stale=60",), MAX_AGE_100, 160, Lookup.FRESH, id="max-stale-edge"
        ),
        pytest.param(
            ("Cache-Control: max-stale=60",), MAX_AGE_100, 200, Lookup.STALE, id="max-stale-beyond"
        ),
        pytest.param(
            ("Cache-Control: max-stale=abc",), MAX_AGE_100, 150, Lookup.STALE, id="max-stale-bad"
        ),
        pytest.param(
            ("Cache-Control: max-stale",),
            ("Cache-Control: max-age=100, must-revalidate", f"Date: {date(0)}"),
            150,
            Lookup.MUST_VALIDATE,
            id="must-revalidate-stale",
        ),
        pytest.param(
            ("Cache-Control: max-stale",),
            ("Cache-Control: max-age=100, proxy-revalidate", f"Date: {date(0)}"),
            150,
            Lookup.MUST_VALIDATE,
            id="proxy-revalidate-stale",
        ),
        pytest.param(
            ("Cache-Control: max-stale",),
            ("Cache-Control: s-maxage=100", f"Date: {date(0)}"),
            150,
            Lookup.MUST_VALIDATE,
            id="s-maxage-stale",
        ),
        pytest.param(
            (),
            ("Cache-Control: max-age=100, must-revalidate", f"Date: {date(0)}"),
            10,
            Lookup.FRESH,
            id="must-revalidate-fresh",
        ),
        pytest.param(
            (),
            (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"),
            50,
            Lookup.FRESH,
            id="heuristic-fresh",
        ),
        pytest.param(
            (),
            (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}"),
            150,
            Lookup.STALE,
            id="heuristic-stale",
        ),
    ],
)
def test_classify_table(req, response, age, expected):
    """Request and response directives pick FRESH, STALE or MUST_VALIDATE (RFC 9111 §5.2)."""
    got = cp.classify(
        hdrs(*req),
        hdrs(*response),
        status=200,
        request_time=T,
        response_time=T,
        now=T + age,
        heuristic_max_age=3600,
    )
    assert got is expected


# --- authorization / vary ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("public", True, id="public"),
        pytest.param("s-maxage=10", True, id="s-maxage"),
        pytest.param("max-age=10, Must-Revalidate", True, id="must-revalidate"),
        pytest.param("max-age=10", False, id="max-age-only"),
        pytest.param("proxy-revalidate", False, id="proxy-revalidate"),
        pytest.param(None, False, id="absent"),
    ],
)
def test_serve_to_authorized_table(value, expected):
    """Only public, s-maxage or must-revalidate allow it (RFC 9111 §3.5)."""
    lines = () if value is None else (f"Cache-Control: {value}",)
    assert cp.serve_to_authorized(hdrs(*lines)) is expected


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param((), (), id="absent"),
        pytest.param(("Vary: ",), (), id="empty"),
        pytest.param(("Vary: Accept-Encoding",), ("accept-encoding",), id="one"),
        pytest.param(
            ("Vary: User-Agent, Accept-Encoding", "vary: accept-encoding ,Accept"),
            ("accept", "accept-encoding", "user-agent"),
            id="lines-case-dedup-sorted",
        ),
        pytest.param(("Vary: , ,Accept ,",), ("accept",), id="junk"),
        pytest.param(("Vary: *",), None, id="star"),
        pytest.param(("Vary: Accept", "Vary: *"), None, id="star-second-line"),
    ],
)
def test_vary_names_table(lines, expected):
    """Lowercased, sorted, distinct names; None for Vary: * (RFC 9111 §4.1)."""
    assert cp.vary_names(hdrs(*lines)) == expected


AE = ("accept-encoding",)


@pytest.mark.parametrize(
    ("names", "req", "expected"),
    [
        pytest.param((), ("Accept-Encoding: gzip",), (), id="no-names"),
        pytest.param(AE, ("Accept-Encoding: gzip, br",), ("accept-encoding: gzip, br",), id="one"),
        pytest.param(AE, ("accept-encoding: gzip,br",), ("accept-encoding: gzip, br",), id="comma"),
        pytest.param(
            AE, ("Accept-Encoding:  gzip ,\t br ",), ("accept-encoding: gzip, br",), id="space"
        ),
        pytest.param(
            AE,
            ("Accept-Encoding: gzip", "Accept-Encoding: br"),
            ("accept-encoding: gzip, br",),
            id="lines",
        ),
        pytest.param(AE, ("Accept-Encoding: GZIP",), ("accept-encoding: GZIP",), id="case-kept"),
        pytest.param(("user-agent",), ("User-Agent: a   b",), ("user-agent: a b",), id="collapse"),
        pytest.param(AE, (), ("accept-encoding",), id="absent"),
        pytest.param(AE, ("Accept-Encoding: ",), ("accept-encoding: ",), id="empty"),
        pytest.param(
            ("accept", "accept-encoding"),
            ("Accept-Encoding: br", "Accept: */*"),
            ("accept: */*", "accept-encoding: br"),
            id="order-of-names",
        ),
    ],
)
def test_vary_key_table(names, req, expected):
    """Normalised request values per Vary name; absent differs from empty."""
    assert cp.vary_key(names, hdrs(*req)) == expected


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(("Accept-Encoding: gzip,br",), ("accept-encoding: gzip, br",), True, id="ws"),
        pytest.param(
            ("Accept-Encoding: gzip", "Accept-Encoding: br"),
            ("Accept-Encoding: gzip, br",),
            True,
            id="lines",
        ),
        pytest.param(("Accept-Encoding: gzip",), ("Accept-Encoding: br",), False, id="differ"),
        pytest.param((), ("Accept-Encoding: ",), False, id="absent-vs-empty"),
        pytest.param((), ("Accept: x",), True, id="absent-both"),
    ],
)
def test_vary_key_selects_same_variant_iff_equal(a, b, same):
    """Two requests select the same variant exactly when their keys are equal."""
    assert (cp.vary_key(AE, hdrs(*a)) == cp.vary_key(AE, hdrs(*b))) is same


# --- freshen / invalidates -----------------------------------------------------------------


def test_freshen_replaces_fields_from_304_but_keeps_body_fields():
    """Every end-to-end 304 field replaces the stored ones, except body metadata (§3.2)."""
    stored = hdrs(
        "Content-Type: video/mp4",
        "Content-Length: 10",
        "Content-Encoding: gzip",
        "Content-Range: bytes 0-9/10",
        f"Date: {date(0)}",
        "Cache-Control: max-age=10",
        'ETag: "a"',
        "X-Multi: 1",
        "X-Multi: 2",
    )
    not_modified = hdrs(
        f"Date: {date(60)}",
        "cache-control: max-age=60",
        "Content-Length: 0",
        "Content-Encoding: br",
        "Content-Range: bytes */99",
        "Connection: close, X-Hop",
        "X-Hop: 1",
        "Keep-Alive: timeout=5",
        "X-Multi: 3",
        "X-New: a",
        "X-New: b",
    )
    result = cp.freshen(stored, not_modified)
    assert list(result.items()) == [
        ("Content-Type", "video/mp4"),
        ("Content-Length", "10"),
        ("Content-Encoding", "gzip"),
        ("Content-Range", "bytes 0-9/10"),
        ("ETag", '"a"'),
        ("Date", date(60)),
        ("cache-control", "max-age=60"),
        ("X-Multi", "3"),
        ("X-New", "a"),
        ("X-New", "b"),
    ]
    assert stored.getall("X-Multi") == ["1", "2"]


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        pytest.param("POST", 200, True, id="post-200"),
        pytest.param("PUT", 201, True, id="put-201"),
        pytest.param("DELETE", 204, True, id="delete-204"),
        pytest.param("PATCH", 302, True, id="patch-302"),
        pytest.param("PURGE", 200, True, id="unknown-method"),
        pytest.param("POST", 399, True, id="post-399"),
        pytest.param("POST", 404, False, id="post-404"),
        pytest.param("POST", 500, False, id="post-500"),
        pytest.param("POST", 101, False, id="post-1xx"),
        pytest.param("GET", 200, False, id="get"),
        pytest.param("HEAD", 200, False, id="head"),
        pytest.param("OPTIONS", 200, False, id="options"),
        pytest.param("TRACE", 200, False, id="trace"),
    ],
)
def test_invalidates_table(method, status, expected):
    """Unsafe methods with 2xx/3xx invalidate (RFC 9111 §4.4)."""
    assert cp.invalidates(method, status) is expected


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
    assert cp.evaluate_conditionals(method, hdrs(*req), hdrs(*response)) is expected


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
    assert cp.parse_range(value, length) == expected


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
    assert cp.if_range_matches(if_range, hdrs(*response)) is expected


def test_module_exports_resolve():
    """Every name in __all__ exists."""
    assert all(hasattr(cp, name) for name in cp.__all__)


@pytest.mark.parametrize(
    ("cc", "expected"),
    [
        ("max-age=10", cp.StaleRules(False, None, None)),
        ("max-age=10, stale-while-revalidate=30", cp.StaleRules(False, 30.0, None)),
        ("max-age=10, stale-if-error=600", cp.StaleRules(False, None, 600.0)),
        ("max-age=10, must-revalidate, stale-if-error=600", cp.StaleRules(True, None, 600.0)),
        ("s-maxage=10", cp.StaleRules(True, None, None)),
        ("no-cache", cp.StaleRules(True, None, None)),
        ("proxy-revalidate", cp.StaleRules(True, None, None)),
        ("stale-while-revalidate=junk", cp.StaleRules(False, None, None)),
    ],
)
def test_stale_rules(cc, expected):
    """RFC 9111 §4.2.4 forbids serving stale; RFC 5861 windows are read as given."""
    assert cp.stale_rules(hdrs(f"Cache-Control: {cc}")) == expected
