"""Miss storms: single flight across tiers, failures, shedding, budget, failover, stale."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time

import aiohttp
from aiohttp import web

from origin.app import METRICS_KEY
from origin.app import make_app as make_origin_app
from shared.engine.node import NODE
from shared.engine.outcome import Outcome
from tests.functional.rawserver import RawServer, head
from tests.helpers import Arrivals, Clock, Gate, Tally, shed_while_held, until, url_of

SEGMENT = "/sample/chunk-0-00002.m4s"


def origin_requests(origin_app: web.Application) -> int:
    return int(origin_app[METRICS_KEY].stats()["requests"])


async def test_storm_500_cold_requests_reach_origin_once(
    aiohttp_server, origin_settings, start_node, sample_library
):
    """500 concurrent cold requests: one upstream request per tier, all bodies identical."""
    gate, edge_in = Gate(), Arrivals()
    origin_app = make_origin_app(origin_settings)
    origin_app.middlewares.append(gate.middleware)  # the origin answers once all 500 wait
    origin = await aiohttp_server(origin_app)
    regional = await start_node("regional-1", url_of(origin), read_timeout=60.0)
    edge = await start_node(
        "edge-1", url_of(regional), read_timeout=60.0, middlewares=[edge_in.middleware]
    )
    expected = (sample_library / SEGMENT.lstrip("/")).read_bytes()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def fetch() -> bytes:
            async with http.get(url_of(edge) + SEGMENT) as r:
                assert r.status == 200
                return await r.read()

        storm = asyncio.gather(*[fetch() for _ in range(500)])
        await until(edge_in.arrived.reached(500), storm)  # every one joined the edge's fill
        await until(gate.arrived.reached(1), storm)
        gate.open()
        bodies = await storm
    assert all(b == expected for b in bodies)
    assert origin_requests(origin_app) == 1 and gate.arrived.value == 1
    assert regional.app[NODE].counts == {Outcome.MISS: 1}
    assert edge.app[NODE].counts == {Outcome.MISS: 1, Outcome.COALESCED: 499}


async def test_storm_leader_disconnect_does_not_cancel_fill(upstream_app, start_node, http):
    """The client that started a fill leaves mid-body; every other reader completes."""
    body = bytes(range(256)) * 400  # 100 KiB
    part = 16384
    more, rest = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(request.path)
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:part])
        await more.wait()
        await resp.write(body[part : 2 * part])
        await rest.wait()
        await resp.write(body[2 * part :])
        await resp.write_eof()
        return resp

    server = await upstream_app({"/seg.m4s": handler})
    edge_in = Arrivals()
    edge = await start_node("edge-1", url_of(server), middlewares=[edge_in.middleware])
    host, port = url_of(edge).removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /seg.m4s HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")  # the leader has its head...
    assert await reader.readexactly(1000) == body[:1000]

    async def fetch() -> bytes:
        async with http.get(url_of(edge) + "/seg.m4s") as r:
            return await r.read()

    others = asyncio.gather(*[fetch() for _ in range(10)])
    await until(edge_in.arrived.reached(11), others)  # ten readers joined the fill
    writer.transport.abort()  # ...and leaves mid-body
    more.set()  # the edge writes to the gone leader, fails, and its handler ends
    await until(edge_in.finished.reached(1), others)
    assert calls == ["/seg.m4s"]
    rest.set()
    assert await others == [body] * 10
    assert calls == ["/seg.m4s"]
    assert len(edge.app[NODE].store) == 1


def reset_twice_then_serve(body: bytes, joined: asyncio.Event):
    """A raw upstream that resets its first two connections before the head, then serves.

    The first waits for ``joined``; the second is the aiohttp client's own silent
    retry of an idempotent request, so the fill itself fails only after both."""
    calls = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            if calls == 1:
                await joined.wait()
            writer.transport.abort()
            return
        writer.write(head(len(body)) + body)
        await writer.drain()

    return script


async def test_storm_fill_failing_before_head_retried_once_on_one_fill(start_node, http):
    """Readers of a fill that fails before its head move, together, to one new fill."""
    body = b"z" * 50000
    joined = asyncio.Event()
    async with RawServer(reset_twice_then_serve(body, joined)).running() as upstream:
        edge_in = Arrivals()
        edge = await start_node("edge-1", upstream.url, middlewares=[edge_in.middleware])

        async def fetch() -> tuple[int, bytes]:
            async with http.get(url_of(edge) + "/seg.m4s") as r:
                return r.status, await r.read()

        storm = asyncio.gather(*[fetch() for _ in range(30)])
        await until(edge_in.arrived.reached(30), storm)  # every reader is on the first fill
        joined.set()
        assert await storm == [(200, body)] * 30
        assert upstream.requests == 3  # the failed fill (sent twice) and one retry, not 30
    retries = edge.app[NODE].metrics.registry.get_sample_value("tiercdn_fill_retries_total")
    assert retries == 30  # every reader of the failed fill retried, all on the one new fill


async def test_storm_uncacheable_answers_are_not_serialised(upstream_app, start_node, http):
    """Requests for an uncacheable URL go upstream side by side, not one after another."""
    state = {"now": 0, "max": 0, "hold": False}
    all_in = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        if state["now"] == 10:
            all_in.set()
        if state["hold"]:  # answer only once all ten are upstream at the same time
            await all_in.wait()
        state["now"] -= 1
        return web.Response(body=b"personal", headers={"Cache-Control": "private"})

    server = await upstream_app({"/me": handler})
    edge = url_of(await start_node("edge-1", url_of(server)))
    async with http.get(edge + "/me") as r:  # teaches the edge that /me is uncacheable
        assert await r.read() == b"personal"
    state["hold"] = True

    async def fetch() -> str:
        async with http.get(edge + "/me") as r:  # serialised: the first one times out (504)
            assert await r.read() == b"personal"
            return r.headers["Cache-Status"]

    statuses = await asyncio.gather(*[fetch() for _ in range(10)])
    assert state["max"] == 10
    assert all("fwd=bypass" in s for s in statuses)


async def test_storm_misses_shed_with_retry_after_hits_never(upstream_app, start_node, http):
    """With the fill cap reached, a new miss gets a fast 503 + Retry-After; hits still flow."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/held.m4s":
            arrived.set()
            await release.wait()
        return web.Response(body=b"x" * 1000, headers={"Cache-Control": "max-age=60"})

    server = await upstream_app({"/{name}": handler})
    edge = url_of(await start_node("edge-1", url_of(server), max_fills=1))
    async with http.get(edge + "/hot.m4s") as r:
        assert r.status == 200
    held = asyncio.get_running_loop().create_task(http.get(edge + "/held.m4s"))
    await arrived.wait()  # that fill now holds the only slot
    async with http.get(edge + "/cold.m4s") as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "1"
        assert r.headers["Cache-Status"] == "edge-1; fwd=uri-miss; detail=shed_fills"
    async with http.get(edge + "/hot.m4s") as r:
        assert r.status == 200 and "edge-1; hit" in r.headers["Cache-Status"]
    release.set()
    async with await held as r:
        assert r.status == 200


async def test_storm_origin_budget_503_then_stale_if_busy(upstream_app, start_node, http):
    """A spent origin budget answers 503 + Retry-After fast, or a stale copy if one exists."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=request.path.encode(), headers={"Cache-Control": "max-age=1"})

    server = await upstream_app({"/{name}": handler})
    clock = Clock(time.time())
    regional = url_of(
        await start_node(
            "regional-1", url_of(server), clock=clock,
            origin_rate=0.01, origin_burst=1, origin_wait=0.1,
        )
    )  # fmt: skip
    async with http.get(regional + "/a") as r:  # takes the only token
        assert r.status == 200
    started = time.monotonic()
    async with http.get(regional + "/b") as r:
        assert r.status == 503 and int(r.headers["Retry-After"]) >= 1
        assert time.monotonic() - started < 1.0
    clock.now += 5  # /a is stale now; the budget is still spent
    async with http.get(regional + "/a") as r:
        assert r.status == 200 and await r.read() == b"/a"
        assert "detail=stale-if-busy" in r.headers["Cache-Status"]


async def test_storm_breaker_opens_and_failover_to_next_parent(upstream_app, start_node, http):
    """A failing parent is skipped once its error rate opens its breaker (here after a
    minimum volume of 3); requests succeed via the next, which stays closed."""

    async def good(request: web.Request) -> web.Response:
        return web.Response(body=b"ok", headers={"Cache-Control": "no-store"})

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    healthy = await upstream_app({"/{name}": good})
    async with RawServer(broken).running() as bad:
        edge = await start_node(
            "edge-1", [bad.url, url_of(healthy)], breaker_min_requests=3, breaker_cooldown=60.0
        )
        breaker = edge.app[NODE].upstream.breakers[bad.url]
        for i in range(40):
            async with http.get(url_of(edge) + f"/o{i}") as r:
                assert r.status == 200 and await r.read() == b"ok"
            if i == 19:
                assert breaker.state.value == "open"
                seen = bad.requests
        assert bad.requests == seen  # not asked again while open
        assert edge.app[NODE].upstream.breakers[url_of(healthy)].state.value == "closed"


async def test_storm_regional_stopped_edge_fails_over(
    aiohttp_server, origin_server, start_node, http
):
    """A regional dies mid-run: cached objects never fail, new ones come via the other parent
    or the origin directly."""
    r1 = await start_node("regional-1", url_of(origin_server))
    r2 = await start_node("regional-2", url_of(origin_server))
    edge = await start_node(
        "edge-1", [url_of(r1), url_of(r2)], fallback=url_of(origin_server), connect_timeout=0.5
    )
    cached = ["/sample/init-0.mp4", "/sample/chunk-0-00001.m4s", "/sample/chunk-0-00002.m4s"]
    for path in cached:
        async with http.get(url_of(edge) + path) as r:
            assert r.status == 200
    await r1.close()
    for path in cached:
        async with http.get(url_of(edge) + path) as r:
            assert r.status == 200 and "edge-1; hit" in r.headers["Cache-Status"]
    fresh = ["/sample/init-1.mp4", "/sample/init-2.mp4", "/sample/chunk-2-00001.m4s"]
    fresh += [f"/sample/chunk-1-0000{n}.m4s" for n in (1, 2, 3)]
    for path in fresh:
        async with http.get(url_of(edge) + path) as r:
            assert r.status == 200, path
    await r2.close()
    async with http.get(url_of(edge) + "/sample/chunk-2-00002.m4s") as r:
        assert r.status == 200  # both regionals down: straight to the origin


async def test_storm_origin_stopped_cached_objects_served_stale(
    aiohttp_server, start_node, origin_settings, http, sample_library
):
    """With the origin gone, expired objects are still served, marked stale, at once."""
    settings = dataclasses.replace(origin_settings, segment_max_age=10.0)
    origin = await aiohttp_server(make_origin_app(settings))
    clock = Clock(float(int(time.time())))
    regional = await start_node("regional-1", url_of(origin), clock=clock, connect_timeout=0.5)
    edge = await start_node("edge-1", url_of(regional), clock=clock)
    expected = (sample_library / SEGMENT.lstrip("/")).read_bytes()
    async with http.get(url_of(edge) + SEGMENT) as r:
        assert await r.read() == expected
    await origin.close()
    clock.now += 60  # expired at both tiers
    for _ in range(3):
        started = time.monotonic()
        async with http.get(url_of(edge) + SEGMENT) as r:
            assert r.status == 200 and await r.read() == expected
            assert "detail=stale-if-error" in r.headers["Cache-Status"]
        assert time.monotonic() - started < 2.0


async def test_storm_stale_while_revalidate_serves_stale_and_refreshes_once(
    upstream_app, start_node, http
):
    """Within stale-while-revalidate, stale copies are served at once and one refresh runs."""
    calls: list[str | None] = []
    served = asyncio.Event()  # the refresh is answered once every stale copy is out

    async def handler(request: web.Request) -> web.Response:
        calls.append(request.headers.get("If-None-Match"))
        if len(calls) > 1:
            await served.wait()
        return web.Response(
            body=f"v{len(calls)}".encode(),
            headers={"Cache-Control": "max-age=10, stale-while-revalidate=60", "ETag": '"e"'},
        )

    clock = Clock(time.time())
    server = await upstream_app({"/live.mpd": handler})
    edge = await start_node("edge-1", url_of(server), clock=clock)
    url = url_of(edge) + "/live.mpd"
    async with http.get(url) as r:
        assert await r.read() == b"v1"
    clock.now += 20

    async def fetch() -> tuple[bytes, str]:
        async with http.get(url) as r:
            return await r.read(), r.headers["Cache-Status"]

    results = await asyncio.gather(*[fetch() for _ in range(10)])
    assert all(body == b"v1" and "detail=stale-while-revalidate" in cs for body, cs in results)
    served.set()
    node = edge.app[NODE]
    async with asyncio.timeout(5):
        await node.tasks.join()  # the one background refresh
    assert calls == [None, '"e"']
    async with http.get(url) as r:
        assert await r.read() == b"v2" and "edge-1; hit" in r.headers["Cache-Status"]


async def test_storm_high_bitrate_misses_shed_before_low_and_init(
    upstream_app, start_node, http, sample_library
):
    """Learned from the MPD: the top rendition is shed first; base rendition and init go on."""
    mpd = (sample_library / "sample" / "manifest.mpd").read_bytes()
    release = asyncio.Event()
    upstream_in = Tally()
    arrived: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)

    async def handler(request: web.Request) -> web.Response:
        if request.path.endswith(".mpd"):
            return web.Response(body=mpd, content_type="application/dash+xml",
                                headers={"Cache-Control": "max-age=60"})  # fmt: skip
        upstream_in.add()
        arrived[request.path].set()
        await release.wait()
        return web.Response(body=b"s", headers={"Cache-Control": "max-age=60"})

    server = await upstream_app({"/sample/{name}": handler})
    node_server = await start_node("edge-1", url_of(server), max_fills=4)
    edge, node = url_of(node_server), node_server.app[NODE]
    async with http.get(edge + "/sample/manifest.mpd") as r:
        assert r.status == 200
    statuses, held = await shed_while_held(http, edge, upstream_in, arrived)
    assert statuses == {
        "chunk-1-00001.m4s": 503,  # top rendition: shed at half the fill cap
        "chunk-0-00003.m4s": "in flight",  # base rendition: admitted up to the cap
        "init-1.mp4": "in flight",  # init segments last
    }
    release.set()
    for task in held:
        async with await task as r:
            assert r.status == 200
    assert (
        node.metrics.registry.get_sample_value("tiercdn_shed_total", {"reason": "shed_fills"}) == 1
    )
