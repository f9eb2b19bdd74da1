"""Table-driven tests for shared.http.cachepolicy (RFC 9111 shared-cache decisions)."""

from __future__ import annotations

import pytest

import shared.http
from shared.http import cachepolicy as cp
from shared.http import conditionals, dates, fields, freshness, targeted
from shared.http.cachepolicy import Lookup, Storable
from tests.helpers import T, date, hdrs

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
        pytest.param("GET", 500, (), FRESH_200, Storable.YES, id="500-max-age"),  # §3
        pytest.param("GET", 503, (), FRESH_200, Storable.YES, id="503-max-age"),
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


# --- authorization -------------------------------------------------------------------------


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


def test_module_exports_resolve():
    """Every name in __all__ exists."""
    assert all(hasattr(cp, name) for name in cp.__all__)


def test_package_exports_are_the_modules_exports():
    """shared.http re-exports exactly its modules' __all__, as the same objects."""
    modules = (dates, fields, targeted, freshness, cp, conditionals)
    names = [n for m in modules for n in m.__all__]
    assert sorted(shared.http.__all__) == sorted(names)
    assert all(getattr(shared.http, n) is getattr(m, n) for m in modules for n in m.__all__)


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


# --- status codes, negative TTL, must-understand (RFC 9111 §3, §4.2.2, §5.2.2) ---------------

NEG = {404: 2.0, 410: 30.0}
HEURISTIC_404 = (f"Date: {date(0)}", f"Last-Modified: {date(-1000)}")


@pytest.mark.parametrize(
    ("status", "response", "negative", "expected"),
    [
        # §3: any final status with explicit freshness is storable, unknown ones too
        pytest.param(299, FRESH_200, {}, Storable.YES, id="s3-299-max-age"),
        pytest.param(599, FRESH_200, {}, Storable.YES, id="s3-599-max-age"),
        pytest.param(410, ("Cache-Control: s-maxage=5",), {}, Storable.YES, id="s3-410-s-maxage"),
        pytest.param(
            502, (f"Date: {date(0)}", f"Expires: {date(60)}"), {}, Storable.YES, id="s3-502-expires"
        ),
        pytest.param(504, FRESH_200, {}, Storable.YES, id="s3-504-max-age"),
        pytest.param(199, FRESH_200, {}, Storable.STATUS, id="s3-1xx-not-final"),
        pytest.param(304, FRESH_200, {}, Storable.STATUS, id="s3-304"),
        # §4.2.2: heuristic freshness only for heuristically cacheable statuses
        pytest.param(404, HEURISTIC_404, {}, Storable.YES, id="s4.2.2-404-heuristic"),
        pytest.param(500, HEURISTIC_404, {}, Storable.NO_FRESHNESS, id="s4.2.2-500-no-heuristic"),
        pytest.param(299, HEURISTIC_404, {}, Storable.NO_FRESHNESS, id="s4.2.2-299-no-heuristic"),
        pytest.param(500, (), {}, Storable.NO_FRESHNESS, id="s3-500-bare"),
        # --negative-ttl: statuses listed, without explicit freshness
        pytest.param(404, (), NEG, Storable.YES, id="neg-404-bare"),
        pytest.param(503, (), {503: 1.0}, Storable.YES, id="neg-503-bare"),
        pytest.param(404, (), {410: 30.0}, Storable.NOT_FRESH, id="neg-other-status"),
        pytest.param(
            404, ("Cache-Control: no-store",), NEG, Storable.NO_STORE, id="neg-never-no-store"
        ),
        pytest.param(404, ("Cache-Control: private",), NEG, Storable.PRIVATE, id="neg-not-private"),
        pytest.param(
            404, ("Cache-Control: max-age=0",), NEG, Storable.NOT_FRESH, id="neg-explicit-wins"
        ),
        # §5.2.2.3 must-understand: store only understood statuses, then ignore no-store
        pytest.param(
            200,
            ("Cache-Control: must-understand, no-store, max-age=60",),
            {},
            Storable.YES,
            id="s5.2.2.3-understood-ignores-no-store",
        ),
        pytest.param(
            404,
            ("Cache-Control: must-understand, no-store, max-age=60",),
            {},
            Storable.YES,
            id="s5.2.2.3-404-understood",
        ),
        pytest.param(
            299,
            ("Cache-Control: must-understand, max-age=60",),
            {},
            Storable.STATUS,
            id="s5.2.2.3-unknown-status",
        ),
        pytest.param(
            599,
            ("Cache-Control: must-understand, no-store, max-age=60",),
            {},
            Storable.STATUS,
            id="s5.2.2.3-unknown-status-no-store",
        ),
        pytest.param(
            200,
            ("Cache-Control: must-understand, private, max-age=60",),
            {},
            Storable.PRIVATE,
            id="s5.2.2.3-private-still-applies",
        ),
        # §5.2.3: unknown extensions are ignored
        pytest.param(
            200, ("Cache-Control: max-age=60, x-foo=bar, zork",), {}, Storable.YES, id="s5.2.3-ext"
        ),
        # §5.2.2.7 qualified private: treated as unqualified (never stored)
        pytest.param(
            200,
            ('Cache-Control: private="Set-Cookie, X-Token", max-age=60',),
            {},
            Storable.PRIVATE,
            id="s5.2.2.7-private-fields",
        ),
        # §5.2.2.4 qualified no-cache: stored, validated on every use (as unqualified)
        pytest.param(
            200,
            ('Cache-Control: no-cache="Set-Cookie", max-age=60',),
            {},
            Storable.YES,
            id="s5.2.2.4-no-cache-fields",
        ),
    ],
)
def test_storable_status_and_negative_ttl(status, response, negative, expected):
    """Which statuses are stored, with explicit, heuristic or negative freshness."""
    got = cp.storable(
        "GET", status, hdrs(), hdrs(*response), heuristic_max_age=3600, negative_ttl=negative
    )
    assert got is expected


def test_storable_must_understand_still_obeys_request_no_store():
    """§5.2.1.5: must-understand overrides the response's no-store, never the request's."""
    got = cp.storable(
        "GET",
        200,
        hdrs("Cache-Control: no-store"),
        hdrs("Cache-Control: must-understand, max-age=60"),
        heuristic_max_age=3600,
    )
    assert got is Storable.NO_STORE


@pytest.mark.parametrize(
    ("status", "response", "expected"),
    [
        pytest.param(404, (), 2.0, id="neg-404"),
        pytest.param(404, HEURISTIC_404, 2.0, id="neg-replaces-heuristic"),
        pytest.param(404, ("Cache-Control: max-age=9",), 9.0, id="explicit-max-age-wins"),
        pytest.param(410, ("Cache-Control: public",), 30.0, id="public-is-not-explicit"),
        pytest.param(500, (), 0.0, id="unlisted"),
        pytest.param(200, HEURISTIC_404, 100.0, id="heuristic-200"),
    ],
)
def test_stored_lifetime(status, response, expected):
    """--negative-ttl gives a lifetime only without explicit freshness (RFC 9111 §4.2.1)."""
    got = cp.stored_lifetime(status, hdrs(*response), heuristic_max_age=3600, negative_ttl=NEG)
    assert got == expected


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        pytest.param('no-cache="Set-Cookie", max-age=60', Lookup.MUST_VALIDATE, id="no-cache-f"),
        pytest.param("max-age=60, x-unknown", Lookup.FRESH, id="extension-ignored"),
    ],
)
def test_classify_qualified_no_cache_validates(response, expected):
    """§5.2.2.4: qualified no-cache acts as unqualified: validated on every use."""
    got = cp.classify(
        hdrs("Cache-Control: max-stale"),
        hdrs(f"Cache-Control: {response}", f"Date: {date(0)}"),
        status=200,
        request_time=T,
        response_time=T,
        now=T + 1,
        heuristic_max_age=3600,
    )
    assert got is expected


def test_classify_uses_the_lifetime_given():
    """A lifetime computed at store time (negative TTL) is the one classify ages against."""

    def at(now: float) -> Lookup:
        return cp.classify(
            hdrs("Cache-Control: min-fresh=0"),
            hdrs(),
            status=404,
            request_time=T,
            response_time=T,
            now=now,
            heuristic_max_age=3600,
            lifetime=2.0,
        )

    assert at(T + 1) is Lookup.FRESH
    assert at(T + 3) is Lookup.STALE
