"""Table-driven tests for shared.http.fields (RFC 9110 lists, Cache-Control, hop-by-hop, Vary)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from shared.http import fields
from tests.helpers import hdrs

CAP = 2**31


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
    assert fields.parse_cache_control(hdrs(*(f"Cache-Control: {v}" for v in lines))) == expected


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
    assert fields.delta_seconds(directives, "max-age") == expected


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
    result = fields.end_to_end(headers)
    assert isinstance(result, CIMultiDict)
    assert list(result.items()) == [
        ("Set-Cookie", "a=1"),
        ("Content-Type", "text/plain"),
        ("Set-Cookie", "b=2"),
    ]
    assert len(headers) == 15


# --- vary ---------------------------------------------------------------------------------


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
    assert fields.vary_names(hdrs(*lines)) == expected


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
    assert fields.vary_key(names, hdrs(*req)) == expected


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
    assert (fields.vary_key(AE, hdrs(*a)) == fields.vary_key(AE, hdrs(*b))) is same


def test_module_exports_resolve():
    """Every name in __all__ exists."""
    assert all(hasattr(fields, name) for name in fields.__all__)
