"""RFC 9111 / 9110 semantics of one node in front of a plain loopback upstream."""

from __future__ import annotations

import asyncio
import collections
import time

import pytest
from aiohttp import web

from shared.engine.node import NODE
from shared.http.dates import format_http_date
from tests.helpers import Arrivals, Clock, until, url_of

BODY = b"segment-bytes-" * 100


class Upstream:
    """Counts requests per path and remembers the last request headers."""

    def __init__(self) -> None:
        self.hits: collections.Counter[str] = collections.Counter()
        self.last: dict[str, web.Request] = {}

    def route(self, headers: dict[str, str] | None = None, body: bytes = BODY, status: int = 200):
        async def handler(request: web.Request) -> web.StreamResponse:
            self.hits[request.path_qs] += 1
            self.last[request.path] = request
            if request.method == "POST":
                await request.read()
            return web.Response(status=status, body=body, headers=headers or {})

        return handler


@pytest.fixture
async def setup(upstream_app, start_node):
    """Start an upstream with the given routes and an edge in front of it."""

    async def start(routes, **kw):
        up = Upstream()
        server = await upstream_app({p: h(up) for p, h in routes.items()})
        edge = await start_node("edge-1", url_of(server), **kw)
        return up, url_of(edge), edge.app[NODE]

    return start


def cacheable(up):
    return up.route({"Cache-Control": "max-age=60", "ETag": '"v1"'})


async def test_proxy_hit_after_miss(setup, http):
    """The second GET is a hit with Age and a Cache-Status naming the node."""
    up, edge, node = await setup({"/a": cacheable})
    async with http.get(edge + "/a") as r:
        assert r.status == 200 and await r.read() == BODY
        assert r.headers["Cache-Status"] == "edge-1; fwd=uri-miss; fwd-status=200; stored"
        assert r.headers["Via"] == "1.1 edge-1"
    async with http.get(edge + "/a") as r:
        assert await r.read() == BODY
        assert r.headers["Cache-Status"].startswith("edge-1; hit; ttl=")
        assert r.headers["Age"] == "0"
    assert up.hits["/a"] == 1
    assert up.last["/a"].headers["Via"] == "1.1 edge-1"


async def test_proxy_query_is_part_of_the_key(setup, http):
    """/a?x=1 and /a?x=2 are different objects; the query is forwarded unchanged."""
    up, edge, _ = await setup({"/a": cacheable})
    for q in ("?x=1", "?x=2", "?x=1"):
        async with http.get(edge + "/a" + q) as r:
            await r.read()
    assert up.hits == {"/a?x=1": 1, "/a?x=2": 1}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Cache-Control": "no-store"}, 200),
        ({"Cache-Control": "private, max-age=60"}, 200),
        ({"Cache-Control": "max-age=60", "Vary": "*"}, 200),
        ({}, 200),  # no freshness, no validator
        ({"Cache-Control": "max-age=60"}, 206),
        ({}, 500),  # no explicit freshness, not heuristically cacheable (RFC 9111 §4.2.2)
        ({"Expires": "0"}, 200),  # invalid Expires: already expired, no validator
    ],
    ids=["no-store", "private", "vary-star", "no-freshness", "206", "500", "expires-invalid"],
)
async def test_proxy_uncacheable_responses_are_not_stored(setup, http, headers, status):
    """Responses a shared cache must not (or cannot usefully) store go upstream every time."""
    up, edge, node = await setup({"/u": lambda u: u.route(headers, status=status)})
    for _ in range(2):
        async with http.get(edge + "/u") as r:
            assert r.status == status
            assert await r.read() == BODY
            assert "stored" not in r.headers["Cache-Status"]
    assert up.hits["/u"] == 2
    assert len(node.store) == 0


async def test_proxy_request_no_store_bypasses(setup, http):
    """A request with Cache-Control: no-store is neither served from nor stored in cache."""
    up, edge, node = await setup({"/a": cacheable})
    async with http.get(edge + "/a", headers={"Cache-Control": "no-store"}) as r:
        await r.read()
    assert len(node.store) == 0


async def test_proxy_expires_and_heuristic_freshness(setup, http):
    """A valid Expires and a Last-Modified heuristic both make a response reusable."""
    now = time.time()
    routes = {
        "/e": lambda u: u.route(
            {"Date": format_http_date(now), "Expires": format_http_date(now + 60)}
        ),
        "/h": lambda u: u.route({"Last-Modified": format_http_date(now - 86400 * 30)}),
    }
    up, edge, _ = await setup(routes)
    for path in ("/e", "/h", "/e", "/h"):
        async with http.get(edge + path) as r:
            await r.read()
    assert up.hits == {"/e": 1, "/h": 1}


async def test_proxy_authorization_not_stored_unless_public(setup, http):
    """RFC 9111 §3.5: a response to an authorized request is stored only if it says public."""
    routes = {"/p": cacheable, "/pub": lambda u: u.route({"Cache-Control": "public, max-age=60"})}
    up, edge, node = await setup(routes)
    auth = {"Authorization": "Bearer secret"}
    for path in ("/p", "/p", "/pub", "/pub"):
        async with http.get(edge + path, headers=auth) as r:
            await r.read()
    assert up.hits == {"/p": 2, "/pub": 1}
    assert up.last["/p"].headers["Authorization"] == "Bearer secret"


async def test_proxy_authorized_request_not_served_from_unauthorized_copy(setup, http):
    """A copy stored from an anonymous request is not served to an Authorization request."""
    up, edge, _ = await setup({"/a": cacheable})
    async with http.get(edge + "/a") as r:
        await r.read()
    async with http.get(edge + "/a", headers={"Authorization": "Basic eDp5"}) as r:
        await r.read()
        assert "hit" not in r.headers["Cache-Status"]
    assert up.hits["/a"] == 2


async def test_proxy_vary_keeps_a_variant_per_request_value(upstream_app, start_node, http):
    """Vary: Accept-Encoding stores one variant per value and serves each its own body."""
    hits: collections.Counter[str] = collections.Counter()

    async def handler(request: web.Request) -> web.Response:
        enc = request.headers.get("Accept-Encoding", "none")
        hits[enc] += 1
        return web.Response(
            body=f"body for {enc}".encode(),
            headers={"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"},
        )

    server = await upstream_app({"/v": handler})
    edge = url_of(await start_node("edge-1", url_of(server)))
    for enc in ("gzip", "br", "gzip", "br", "gzip"):
        async with http.get(edge + "/v", headers={"Accept-Encoding": enc}) as r:
            assert await r.read() == f"body for {enc}".encode()
    assert hits == {"gzip": 1, "br": 1}
    async with http.get(edge + "/v", headers={"Accept-Encoding": "zstd"}) as r:
        assert await r.read() == b"body for zstd"
        assert "fwd=vary-miss" in r.headers["Cache-Status"]


async def test_proxy_head_answered_from_cached_get(setup, http):
    """HEAD is served from the stored GET (and a cold HEAD fetches with GET)."""
    up, edge, _ = await setup({"/a": cacheable})
    async with http.head(edge + "/a") as r:
        assert r.status == 200
        assert r.headers["Content-Length"] == str(len(BODY))
    assert up.last["/a"].method == "GET"
    async with http.head(edge + "/a") as r:
        assert "hit" in r.headers["Cache-Status"]
        assert r.headers["Content-Length"] == str(len(BODY))
        assert await r.read() == b""
    async with http.get(edge + "/a") as r:
        assert await r.read() == BODY
    assert up.hits["/a"] == 1


N = len(BODY)


@pytest.mark.parametrize("warm", [False, True], ids=["from-fill", "from-store"])
@pytest.mark.parametrize(
    ("range_", "status", "content_range", "expected"),
    [
        ("bytes=0-9", 206, f"bytes 0-9/{N}", BODY[:10]),
        ("bytes=10-", 206, f"bytes 10-{N - 1}/{N}", BODY[10:]),
        ("bytes=-5", 206, f"bytes {N - 5}-{N - 1}/{N}", BODY[-5:]),
        ("bytes=100-99999", 206, f"bytes 100-{N - 1}/{N}", BODY[100:]),
        ("bytes=99999-", 416, f"bytes */{N}", None),
        ("bytes=abc", 416, f"bytes */{N}", None),
        ("bytes=0-1,5-6", 200, None, BODY),
        ("items=0-1", 200, None, BODY),
    ],
)
async def test_proxy_range(setup, http, warm, range_, status, content_range, expected):
    """Range is answered from the full object, on a miss and on a hit (206, 416, 200)."""
    up, edge, _ = await setup({"/a": cacheable})
    if warm:
        async with http.get(edge + "/a") as r:
            await r.read()
    async with http.get(edge + "/a", headers={"Range": range_}) as r:
        assert r.status == status
        body = await r.read()
        if expected is not None:
            assert body == expected
        assert r.headers.get("Content-Range") == content_range
    assert up.hits["/a"] == 1
    assert "Range" not in up.last["/a"].headers


async def test_proxy_if_range_mismatch_sends_whole_object(setup, http):
    """If-Range with another ETag gets the whole object (RFC 9110 §13.1.5)."""
    _, edge, _ = await setup({"/a": cacheable})
    for _ in range(2):
        async with http.get(edge + "/a", headers={"Range": "bytes=0-3", "If-Range": '"v0"'}) as r:
            assert r.status == 200 and await r.read() == BODY


@pytest.mark.parametrize("warm", [False, True], ids=["miss", "hit"])
async def test_proxy_conditional_request_gets_304(setup, http, warm):
    """If-None-Match / If-Modified-Since matching the object answer 304, miss or hit."""
    lm = format_http_date(time.time() - 3600)
    route = {
        "/a": lambda u: u.route(
            {"Cache-Control": "max-age=60", "ETag": '"v1"', "Last-Modified": lm}
        )
    }
    up, edge, _ = await setup(route)
    if warm:
        async with http.get(edge + "/a") as r:
            await r.read()
    for cond in ({"If-None-Match": 'W/"v1"'}, {"If-Modified-Since": lm}):
        async with http.get(edge + "/a", headers=cond) as r:
            assert r.status == 304
            assert r.headers["ETag"] == '"v1"'
            assert await r.read() == b""
    async with http.get(edge + "/a", headers={"If-None-Match": '"other"'}) as r:
        assert r.status == 200 and await r.read() == BODY
    assert "If-None-Match" not in up.last["/a"].headers
    assert up.hits["/a"] == 1


async def test_proxy_revalidates_stale_object_and_freshens_headers(upstream_app, start_node, http):
    """A stale object is revalidated with its ETag; a 304 updates the stored headers."""
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(
                status=304, headers={"ETag": '"v1"', "Cache-Control": "max-age=60", "X-Rev": "2"}
            )
        headers = {"Cache-Control": "max-age=10", "ETag": '"v1"', "X-Rev": "1"}
        return web.Response(body=BODY, headers=headers)

    clock = Clock(float(int(time.time())))  # whole seconds, as Date has
    server = await upstream_app({"/a": handler})
    edge = url_of(await start_node("edge-1", url_of(server), clock=clock))
    async with http.get(edge + "/a") as r:
        assert r.headers["X-Rev"] == "1"
    clock.now += 5
    async with http.get(edge + "/a") as r:
        assert r.headers["Age"] == "5"
        assert "ttl=5" in r.headers["Cache-Status"]
    clock.now += 20  # now stale
    async with http.get(edge + "/a") as r:
        assert await r.read() == BODY
        assert r.headers["X-Rev"] == "2"
        assert r.headers["Cache-Status"].endswith("edge-1; fwd=stale; fwd-status=304; stored")
    clock.now += 30  # fresh again thanks to the 304's max-age=60
    async with http.get(edge + "/a") as r:
        assert "hit" in r.headers["Cache-Status"] and r.headers["X-Rev"] == "2"
    assert seen == [None, '"v1"']


async def test_proxy_no_cache_response_revalidated_every_time(setup, http):
    """Cache-Control: no-cache is stored but validated before every reuse."""
    up, edge, node = await setup(
        {"/n": lambda u: u.route({"Cache-Control": "no-cache", "ETag": '"n"'})}
    )
    for _ in range(3):
        async with http.get(edge + "/n") as r:
            assert await r.read() == BODY
    assert up.hits["/n"] == 3
    assert up.last["/n"].headers["If-None-Match"] == '"n"'


async def test_proxy_request_max_age_zero_revalidates(setup, http):
    """A client reload (Cache-Control: max-age=0) makes the node ask upstream."""
    up, edge, _ = await setup({"/a": cacheable})
    for cc in (None, "max-age=0"):
        async with http.get(edge + "/a", headers={"Cache-Control": cc} if cc else {}) as r:
            await r.read()
    assert up.hits["/a"] == 2
    assert "fwd=request" in r.headers["Cache-Status"]


async def test_proxy_only_if_cached_misses_with_504(setup, http):
    """only-if-cached on a cold key answers 504 without asking upstream."""
    up, edge, _ = await setup({"/a": cacheable})
    async with http.get(edge + "/a", headers={"Cache-Control": "only-if-cached"}) as r:
        assert r.status == 504
    assert up.hits["/a"] == 0


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_proxy_unsafe_method_forwarded_and_invalidates(setup, http, method):
    """An unsafe method goes upstream with its body and evicts the stored URL."""
    up, edge, node = await setup({"/a": cacheable})
    async with http.get(edge + "/a") as r:
        await r.read()
    assert len(node.store) == 1
    async with http.request(method, edge + "/a", data=b"payload") as r:
        assert r.status == 200
        assert "fwd=method" in r.headers["Cache-Status"]
    assert len(node.store) == 0
    async with http.get(edge + "/a") as r:
        assert "fwd=uri-miss" in r.headers["Cache-Status"]
    assert up.hits["/a"] == 3


async def test_proxy_other_methods_pass_through(setup, http):
    """OPTIONS is forwarded, not cached, and does not invalidate."""
    up, edge, node = await setup({"/a": cacheable})
    async with http.get(edge + "/a") as r:
        await r.read()
    async with http.options(edge + "/a") as r:
        assert r.status == 200
    assert len(node.store) == 1
    assert up.hits["/a"] == 2


async def test_proxy_strips_hop_by_hop_fields(upstream_app, start_node, http):
    """Connection-listed and hop-by-hop fields are dropped both ways; Via is added."""
    received: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        received.update(request.headers)
        return web.Response(
            body=b"x",
            headers={
                "Cache-Control": "max-age=60",
                "Connection": "X-Secret",
                "X-Secret": "hop",
                "Keep-Alive": "timeout=5",
                "X-Kept": "end-to-end",
            },
        )

    server = await upstream_app({"/a": handler})
    edge = url_of(await start_node("edge-1", url_of(server)))
    req = {"Connection": "X-Client-Hop", "X-Client-Hop": "1", "TE": "trailers", "X-End": "1"}
    for _ in range(2):
        async with http.get(edge + "/a", headers=req) as r:
            assert "X-Secret" not in r.headers and "Keep-Alive" not in r.headers
            assert r.headers["X-Kept"] == "end-to-end"
    assert "X-Client-Hop" not in received and "TE" not in received
    assert received["X-End"] == "1" and received["Via"] == "1.1 edge-1"


async def test_proxy_oversized_request_headers_rejected(setup, http):
    """A request with a huge header field gets a clear 4xx and nothing goes upstream."""
    up, edge, _ = await setup({"/a": cacheable})
    async with http.get(edge + "/a", headers={"X-Big": "a" * 70000}) as r:
        assert r.status in (400, 431)
    assert up.hits["/a"] == 0


async def test_proxy_cold_vary_joiner_with_other_value_gets_own_variant(
    upstream_app, start_node, http
):
    """Concurrent cold requests with different Vary values never share a response."""
    release = asyncio.Event()  # the first answer waits until all four requests joined

    async def handler(request: web.Request) -> web.Response:
        enc = request.headers.get("Accept-Encoding", "none")
        await release.wait()
        return web.Response(
            body=f"body for {enc}".encode(),
            headers={"Cache-Control": "max-age=60", "Vary": "Accept-Encoding"},
        )

    server = await upstream_app({"/v": handler})
    edge_in = Arrivals()
    edge = url_of(await start_node("edge-1", url_of(server), middlewares=[edge_in.middleware]))

    async def fetch(enc: str) -> bytes:
        async with http.get(edge + "/v", headers={"Accept-Encoding": enc}) as r:
            return await r.read()

    cold = asyncio.gather(*[fetch(e) for e in ("gzip", "br", "gzip", "br")])
    await until(edge_in.arrived.reached(4), cold)  # all four on the one cold fill
    release.set()
    bodies = await cold
    assert bodies == [b"body for gzip", b"body for br", b"body for gzip", b"body for br"]


async def test_proxy_stale_object_replaced_by_uncacheable_answer_is_dropped(
    upstream_app, start_node, http
):
    """A revalidation answered with no-store removes the stale copy."""
    state = {"cc": "max-age=1"}

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x", headers={"Cache-Control": state["cc"], "ETag": '"e"'})

    clock = Clock(float(int(time.time())))
    server = await upstream_app({"/a": handler})
    edge = await start_node("edge-1", url_of(server), clock=clock)
    async with http.get(url_of(edge) + "/a") as r:
        await r.read()
    assert len(edge.app[NODE].store) == 1
    state["cc"] = "no-store"
    clock.now += 10
    async with http.get(url_of(edge) + "/a") as r:
        await r.read()
    assert len(edge.app[NODE].store) == 0
