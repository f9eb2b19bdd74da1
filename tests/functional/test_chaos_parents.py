"""Faults stay small (issue 9): misbehaving parents on loopback, never mocks.

A few bad answers open no breaker; the last route to the origin is never closed;
an upstream 5xx is covered by a stale copy when one may be served, else passed
through as the upstream said it; a dead pooled connection never fails a request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer

from origin.app import FAULTS_KEY
from origin.app import make_app as make_origin_app
from shared.engine.node import NODE
from shared.engine.upstream import UpstreamPool
from shared.policy.breaker import BreakerState, CircuitBreaker
from shared.service.metrics import Metrics
from tests.helpers import Clock, url_of

BODY = bytes(range(256)) * 256  # 64 KiB
BAD = [f"/obj/bad-{n}" for n in range(5)]


def sample(server: TestServer, name: str, **labels: str) -> float:
    """A metric of the cache node ``server`` runs (0 when never counted)."""
    return server.app[NODE].metrics.registry.get_sample_value(name, labels or None) or 0.0


async def _resetting(request: web.Request) -> web.StreamResponse:
    """Cacheable 64 KiB objects; the chosen ``bad-*`` ones are cut by a reset halfway."""
    resp = web.StreamResponse(headers={"Cache-Control": "public, max-age=600", "ETag": '"1"'})
    resp.content_length = len(BODY)
    await resp.prepare(request)
    if not request.path.startswith("/obj/bad-"):
        await resp.write(BODY)
        return resp
    await resp.write(BODY[: len(BODY) // 2])
    await resp.drain()
    assert request.transport is not None
    request.transport.abort()
    raise ConnectionResetError("chaos: body cut by a reset")


async def _traffic(http: aiohttp.ClientSession, url: str, paths: list[str]) -> list[object]:
    """GET every path (ten at a time); each result is (status, body) or "aborted"."""

    async def get(path: str) -> object:
        try:
            async with http.get(url + path) as r:
                return r.status, await r.read()
        except aiohttp.ClientPayloadError:
            return "aborted"

    results: list[object] = []
    for i in range(0, len(paths), 10):
        results += await asyncio.gather(*(get(p) for p in paths[i : i + 10]))
    return results


@pytest.mark.parametrize("route", ["edge-with-fallback", "single-route"])
async def test_chaos_five_resets_in_a_row_open_nothing(route, upstream_app, start_node, http):
    """An upstream resets 5 chosen URLs mid-body, in a row, among normal traffic: every
    other URL gets a whole 200 through its usual parent, no breaker opens, and nothing
    truncated is stored (an edge with a fallback; a regional with its one route)."""
    origin = url_of(await upstream_app({"/obj/{name}": _resetting}))
    regional = await start_node("regional-1", origin)  # default breaker settings
    nodes = [regional]
    front = regional
    if route == "edge-with-fallback":
        front = await start_node("edge-1", url_of(regional), fallback=origin)
        nodes.append(front)
    normal = [f"/obj/n-{n}" for n in range(60)]
    paths = normal[:10] + BAD + normal[10:] + normal[:10]  # the last ten are hits
    results = await _traffic(http, url_of(front), paths)
    by_path = dict(zip(paths, results, strict=True))
    assert [by_path[p] for p in BAD] == ["aborted"] * 5  # never a short 200
    assert all(by_path[p] == (200, BODY) for p in normal)
    for node in nodes:
        n = node.app[NODE]
        assert {b.state for b in n.upstream.breakers.values()} == {BreakerState.CLOSED}
        stored = {obj.key: obj.body for obj in n.store}
        assert stored.keys() == set(normal) and set(stored.values()) == {BODY}
    if route == "edge-with-fallback":  # every object came through the parent, none direct
        assert sample(front, "tiercdn_upstream_requests_total", parent=origin, result="2xx") == 0


async def test_chaos_origin_503_stale_if_error_else_its_own_answer(
    aiohttp_server, origin_settings, start_node, http, sample_library
):
    """The origin answers 503 to everything for a while: objects with a stale copy are
    served stale (stale-if-error), every other request gets the origin's own 503 body
    (no synthetic 503, though the breakers open), and service resumes at once after."""
    settings = dataclasses.replace(origin_settings, segment_max_age=10.0)
    origin_app = make_origin_app(settings)
    origin = await aiohttp_server(origin_app)
    clock = Clock(float(int(time.time())))
    quick = {"breaker_min_requests": 4, "breaker_cooldown": 60.0}  # they do open here
    regional = await start_node("regional-1", url_of(origin), clock=clock, **quick)
    edge = await start_node("edge-1", url_of(regional), clock=clock, **quick)
    cached = [f"/sample/chunk-0-0000{n}.m4s" for n in (1, 2, 3)]
    cold = [f"/sample/chunk-1-0000{n}.m4s" for n in (1, 2, 3)] + ["/sample/init-1.mp4"]
    files = {p: (sample_library / p.lstrip("/")).read_bytes() for p in cached + cold}
    for path in cached:
        async with http.get(url_of(edge) + path) as r:
            assert r.status == 200
    clock.now += 60  # expired at both tiers
    origin_app[FAULTS_KEY].status = 503
    for _ in range(4):
        for tier in (edge, regional):
            for path in cached:
                async with http.get(url_of(tier) + path) as r:
                    assert r.status == 200 and await r.read() == files[path]
                    assert "detail=stale-if-error" in r.headers["Cache-Status"]
            for path in cold:
                async with http.get(url_of(tier) + path) as r:
                    assert r.status == 503
                    assert await r.text() == "503: fault injected (--fault-status)"
    for tier in (edge, regional):  # the breakers did open: the last route stayed open
        assert [b.state for b in tier.app[NODE].upstream.breakers.values()] == [BreakerState.OPEN]
    origin_app[FAULTS_KEY].status = 0
    for path in cold + cached:
        async with http.get(url_of(edge) + path) as r:
            assert r.status == 200 and await r.read() == files[path]
    assert sample(regional, "tiercdn_upstream_last_route_total") > 0
    assert sample(regional, "tiercdn_stale_served_total", reason="stale-if-error") >= 4


async def test_chaos_parent_down_fails_over_then_breaker_opens(upstream_app, start_node, http):
    """A parent refusing connections beside a healthy one: each request fails over; the
    breaker stays closed until the minimum volume is reached, then opens, and traffic
    goes to the healthy parent only."""
    served: list[str] = []

    async def good(request: web.Request) -> web.Response:
        served.append(request.path)
        return web.Response(body=b"ok", headers={"Cache-Control": "no-store"})

    healthy = url_of(await upstream_app({"/{name}": good}))
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    down = f"http://127.0.0.1:{probe.sockets[0].getsockname()[1]}"
    probe.close()
    await probe.wait_closed()  # nothing listens there now: connection refused
    edge = await start_node(
        "edge-1", [down, healthy], breaker_min_requests=6, breaker_cooldown=60.0
    )
    breaker = edge.app[NODE].upstream.breakers[down]
    failed = 0.0
    for i in range(60):
        async with http.get(url_of(edge) + f"/o{i}") as r:
            assert r.status == 200 and await r.read() == b"ok"
        failed = sample(edge, "tiercdn_upstream_requests_total", parent=down,
                        result="UpstreamUnavailable")  # fmt: skip
        assert breaker.state is (BreakerState.OPEN if failed >= 6 else BreakerState.CLOSED)
    assert failed == 6 and len(served) == 60  # not asked again once open


# -- dead pooled connections (part 8) --------------------------------------------------

IDLE = 1.0  # the upstream closes keep-alive connections idle this long
FIN_DELAY = 0.3  # ...and the client hears of it this much later (the race window)


@dataclasses.dataclass
class IdleClosing:
    """A keep-alive HTTP/1.1 upstream that closes connections idle for ``IDLE`` s. A
    request that reaches a connection already past that (it crossed the close on
    the wire) is answered by a close (FIN or reset), never a response."""

    url: str = ""
    connections: int = 0
    answered: int = 0
    dropped: int = 0
    rng: random.Random = dataclasses.field(default_factory=lambda: random.Random(9))

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        idle_since = time.monotonic()
        try:
            while True:
                wait = idle_since + IDLE + FIN_DELAY - time.monotonic()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), max(wait, 0))
                if time.monotonic() - idle_since >= IDLE:
                    self.dropped += 1
                    if self.rng.random() < 0.5:
                        writer.transport.abort()
                    return
                path = head.split(b" ", 2)[1]
                body = b"body of " + path
                writer.write(
                    b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                self.answered += 1
                idle_since = time.monotonic()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def idle_closing() -> AsyncIterator[IdleClosing]:
    upstream = IdleClosing()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    yield upstream
    server.close()
    await server.wait_closed()


async def test_chaos_idle_close_race_fails_no_request(idle_closing, start_node, http):
    """An upstream closes idle keep-alive connections after 1 s; requests reusing pooled
    connections at exactly that moment are each retried once on a new connection:
    none fails."""
    edge = await start_node("edge-1", idle_closing.url)  # pools connections 4 s

    async def get(path: str) -> tuple[int, bytes]:
        async with http.get(url_of(edge) + path) as r:
            return r.status, await r.read()

    warm = await asyncio.gather(*(get(f"/warm-{n}") for n in range(16)))
    assert {status for status, _ in warm} == {200} and idle_closing.connections == 16
    mark, loop = time.monotonic() + IDLE, asyncio.get_running_loop()
    sent: list[asyncio.Task[tuple[int, bytes]]] = []
    # The pool hands out its longest-idle connection first: those before the mark
    # refresh a few, those after find the rest closed under them.
    for offset, count in [(-0.05, 2), (-0.01, 2), (0, 2), (0.01, 2), (0.03, 2), (0.05, 4),
                          (0.1, 4), (0.2, 4)]:  # fmt: skip
        await asyncio.sleep(max(0.0, mark + offset - time.monotonic()))
        sent += [loop.create_task(get(f"/race-{len(sent) + i}")) for i in range(count)]
    answers = await asyncio.gather(*sent)
    assert answers == [(200, f"body of /race-{i}".encode()) for i in range(len(sent))]
    assert idle_closing.dropped > 0  # the race was hit
    assert sample(edge, "tiercdn_upstream_fresh_retries_total") > 0


BIG = 3 << 20


async def _big(request: web.Request) -> web.StreamResponse:
    """A 3 MiB body, or a chunked one (``?chunked``) of 1000-byte chunks."""
    if "chunked" not in request.query:
        return web.Response(body=b"x" * BIG)
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for sent in range(0, BIG, 1000):
        await resp.write(b"y" * min(1000, BIG - sent))
    await resp.write_eof()
    return resp


async def _read_slowly_then_reuse() -> None:
    """Through an ``UpstreamPool`` with one pooled connection and a 0.3 s read timeout:
    read 3 MiB bodies to their end (fast or slowly), idle 0.45 s, and again."""
    runner = web.AppRunner(web.Application())
    runner.app.router.add_get("/big", _big)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = UpstreamPool(
        [f"http://127.0.0.1:{runner.addresses[0][1]}"],
        connect_timeout=1.0,
        read_timeout=0.3,
        connections=1,  # one pooled connection: every request reuses it
        metrics=Metrics.create(),
        idle_timeout=30.0,
    )
    await upstream.start()
    try:
        for i, (query, pause) in enumerate([("", 0), ("", 0.0005), ("?chunked", 0), ("", 0)]):
            if i:
                await asyncio.sleep(0.45)  # idle past the read timeout, still pooled
            async with upstream.request("GET", "/big" + query, {}, key="/big") as up:
                got = 0
                async for chunk in up.chunks():
                    got += len(chunk)
                    await asyncio.sleep(pause)  # a reader as fast as loopback, or slower
                assert up.status == 200 and got == BIG
    finally:
        await upstream.close()
        await runner.cleanup()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_chaos_read_timer_never_fires_on_a_reused_connection(loop):
    """A body read to its end leaves no read timer armed on its pooled connection
    (aiohttp 3.14 re-arms one under uvloop, aio-libs/aiohttp#12953, and the next
    request on the connection failed at once): reuse after the read timeout works."""
    run = uvloop.run if loop == "uvloop" else asyncio.run
    run(asyncio.wait_for(_read_slowly_then_reuse(), 20))


# -- the last route, as a table ----------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "fail_fast", "expected"),
    [
        (["closed", "closed"], False, [(0, True, False), (1, False, False)]),
        (["open", "closed"], False, [(1, False, False)]),
        (["closed", "open"], False, [(0, False, False)]),
        (["open", "open"], False, [(0, True, True), (1, False, True)]),
        (["open", "open"], True, []),
        (["probing", "open"], False, [(0, True, True), (1, False, True)]),
        (["open", "cooled"], False, [(1, False, False)]),
        (["open"], False, [(0, False, True)]),
        (["open"], True, []),
    ],
    ids=["all-closed", "skips-open", "no-failover-into-open", "last-route",
         "not-with-a-stale-copy", "probe-in-flight", "probe-due", "single-route",
         "single-route-stale-copy"],
)  # fmt: skip
def test_upstream_routes_last_route_is_never_closed(states, fail_fast, expected):
    """Routes for a key, as (rendezvous position, may fail over, last route): parents
    whose breaker allows, in order; when none does, every one again (the last route),
    unless a stale copy stands in (``fail_fast``)."""
    now, metrics = 100.0, Metrics.create()
    upstream = UpstreamPool(
        [f"http://parent-{i}" for i in range(len(states))],
        connect_timeout=1.0,
        read_timeout=1.0,
        connections=1,
        metrics=metrics,
        breaker=lambda: CircuitBreaker(min_requests=1, cooldown=5),
        clock=lambda: now,
    )
    order = upstream.order("/k")
    for parent, state in zip(order, states, strict=True):
        breaker = upstream.breakers[parent]
        if state != "closed":  # opened 1 s ago, or past the cool-down
            breaker.record(False, now - (1 if state == "open" else 6))
        if state == "probing":
            assert breaker.allow(now)
    routes = list(upstream.routes("/k", fail_fast, safe=True))
    assert [(order.index(p), more, last) for p, more, last in routes] == expected
    last_routes = metrics.registry.get_sample_value("tiercdn_upstream_last_route_total")
    assert last_routes == (1 if expected and expected[0][2] else 0)
