"""--admission adaptive in a real edge: hits, admission by frequency, a live switch."""

from __future__ import annotations

import dataclasses

import pytest
from aiohttp import web

from shared.engine.node import NODE
from shared.service.reload import apply
from shared.store import MemoryStore
from tests.helpers import url_of

BODY = b"v" * 4000  # ~4.3 kB charged: a 64 KiB edge holds about 15


async def handler(request: web.Request) -> web.Response:
    return web.Response(body=BODY, headers={"Cache-Control": "public, max-age=3600"})


@pytest.mark.timeout(30)
async def test_adaptive_edge_keeps_its_popular_head_through_a_flood(upstream_app, start_node, http):
    """An edge on adaptive admission: a head asked for every round stays a hit while
    one-hit objects flood it; the store is adaptive with its climber sampling."""
    upstream = await upstream_app({"/{name}": handler})
    edge = await start_node(
        "edge-1", url_of(upstream), admission="adaptive", cache_bytes=64 * 1024, cors_origin="*"
    )
    store = edge.app[NODE].store
    assert isinstance(store, MemoryStore) and store.policy == "adaptive"
    head = [f"/head-{i}" for i in range(5)]
    late = []
    for rnd in range(12):
        for i in range(20):  # more one-hit objects per round than the edge holds
            async with http.get(url_of(edge) + f"/once-{rnd}-{i}") as r:
                assert r.status == 200 and await r.read() == BODY
        for path in head:
            async with http.get(url_of(edge) + path) as r:
                assert r.status == 200 and await r.read() == BODY
                if rnd >= 8:
                    late.append(r.headers["Cache-Status"])
    assert all(s.startswith("edge-1; hit") for s in late), late
    assert store.bytes <= store.capacity
    assert store.rejected > store.admitted  # most of the flood never entered main
    assert "HillClimber" in repr(store)


@pytest.mark.timeout(30)
async def test_edge_switches_to_adaptive_live_keeping_its_objects(upstream_app, start_node, http):
    """A reload (``reload.apply``) from tinylfu to adaptive keeps every stored object a
    hit, and the edge goes on storing under the new policy."""
    upstream = await upstream_app({"/{name}": handler})
    edge = await start_node("edge-1", url_of(upstream), cache_bytes=1 << 20, cors_origin="*")
    node = edge.app[NODE]
    paths = [f"/obj-{i}" for i in range(10)]
    for path in paths:
        async with http.get(url_of(edge) + path) as r:
            assert await r.read() == BODY
    assert node.store.policy == "tinylfu"
    assert apply(node, dataclasses.replace(node.settings, admission="adaptive")) == ["--admission"]
    assert node.store.policy == node.settings.admission == "adaptive"
    statuses = []
    for path in [*paths, "/new", "/new"]:
        async with http.get(url_of(edge) + path) as r:
            assert await r.read() == BODY
            statuses.append(r.headers["Cache-Status"])
    assert all(s.startswith("edge-1; hit") for s in statuses[:10]), statuses
    assert "stored" in statuses[10] and statuses[11].startswith("edge-1; hit")
    assert len(node.store) == 11
