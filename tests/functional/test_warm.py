"""Warm (pre-warm, prefetch) joins the fill a client uses: the same key, Vary included."""

from __future__ import annotations

import asyncio

from aiohttp import web

from shared.engine.node import NODE
from shared.engine.outcome import Outcome
from tests.helpers import Arrivals, Clock, url_of

BODY = b"v" * 1000
VARIED = {"Cache-Control": "max-age=10", "Vary": "Accept-Language", "ETag": '"v1"'}


async def test_warm_coalesces_with_a_client_on_a_vary_url(upstream_app, start_node, http):
    """A warm of a stale Vary'd URL and a client asking meanwhile make one upstream request:
    the warm leads the fill keyed by URL and Vary values, the client joins it."""
    requests = 0
    refetch, release = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        if requests > 1:  # the refresh: held until the client has joined
            refetch.set()
            await release.wait()
        return web.Response(body=BODY, headers=VARIED)

    upstream = await upstream_app({"/v": handler})
    clock, arrivals = Clock(), Arrivals()
    edge = await start_node(
        "edge-1", url_of(upstream), clock=clock, middlewares=[arrivals.middleware]
    )
    node = edge.app[NODE]
    async with http.get(url_of(edge) + "/v") as r:  # stores the variant, learns Vary
        assert r.status == 200 and await r.read() == BODY
    clock.now += 60  # stale: the next use goes upstream
    warm = asyncio.ensure_future(node.warm("/v"))
    await refetch.wait()
    assert node.joinable("/v")
    client = asyncio.ensure_future(http.get(url_of(edge) + "/v"))
    await arrivals.arrived.reached(2)  # the client is a reader of a fill now
    release.set()
    assert await warm is Outcome.MISS
    async with await client as r:
        assert r.status == 200 and await r.read() == BODY
        assert r.headers["Cache-Status"].endswith("collapsed"), r.headers["Cache-Status"]
    assert requests == 2


async def test_warm_is_a_hit_when_the_clients_variant_is_fresh(upstream_app, start_node, http):
    """Warm looks at the variant a client without request fields would get."""
    calls = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(body=BODY, headers=VARIED)

    upstream = await upstream_app({"/v": handler})
    edge = await start_node("edge-1", url_of(upstream))
    node = edge.app[NODE]
    async with http.get(url_of(edge) + "/v", headers={"Accept-Language": "fr"}) as r:
        assert r.status == 200
    assert await node.warm("/v") is Outcome.MISS  # another variant: fetched
    assert await node.warm("/v") is Outcome.HIT
    assert calls == 2
