"""CDN-Cache-Control and a node's own targeted field (RFC 9213) through regional and edge.

Each tier stores and ages by the first valid targeted field on its list and ignores
Cache-Control and Expires for itself (§2.2), yet forwards every field unchanged."""

from __future__ import annotations

import collections
import dataclasses

import pytest
from aiohttp import web

from origin.app import make_app as make_origin_app
from shared.engine.node import NODE, Node
from tests.helpers import Chain, url_of

BODY = b"targeted-" * 50


@pytest.fixture
async def tiers(upstream_app, start_node):
    """An upstream answering ``/x`` with the given status and fields, then regional, edge.
    Returns (hits per path, edge URL, edge node, regional node)."""

    async def start(fields, status=200, edge_kw=None, regional_kw=None):
        hits: collections.Counter[str] = collections.Counter()

        async def handler(request: web.Request) -> web.Response:
            hits[request.path] += 1
            return web.Response(status=status, body=BODY, headers=fields)

        up = await upstream_app({"/x": handler})
        regional = await start_node("regional-1", url_of(up), **(regional_kw or {}))
        edge = await start_node("edge-1", url_of(regional), **(edge_kw or {}))
        return hits, url_of(edge), edge.app[NODE], regional.app[NODE]

    return start


@pytest.fixture
async def chain_with(aiohttp_server, origin_settings, start_node):
    """origin (with these settings) → regional → edge."""

    async def start(**origin_kw):
        settings = dataclasses.replace(origin_settings, **origin_kw)
        origin = await aiohttp_server(make_origin_app(settings))
        regional = await start_node("regional-1", url_of(origin))
        return Chain(origin, regional, await start_node("edge-1", url_of(regional)))

    return start


def stored(node: Node) -> list[float]:
    """Lifetimes of what ``node`` stores for /x."""
    return [obj.lifetime for obj in node.store.peek("/x")]


async def test_cdn_cache_control_overrides_cache_control_and_is_forwarded(tiers, http):
    """§2.2: CDN-Cache-Control max-age=60 beats Cache-Control max-age=0 at both tiers;
    §3: the field reaches the client unchanged, as does Cache-Control."""
    fields = {"Cache-Control": "max-age=0", "CDN-Cache-Control": "max-age=60"}
    hits, edge, edge_node, regional_node = await tiers(fields)
    for _ in range(3):
        async with http.get(edge + "/x") as r:
            assert r.status == 200 and await r.read() == BODY
            assert r.headers["CDN-Cache-Control"] == "max-age=60"
            assert r.headers["Cache-Control"] == "max-age=0"
    assert hits["/x"] == 1
    assert stored(edge_node) == [60.0] and stored(regional_node) == [60.0]
    assert r.headers["Cache-Status"].split(", ")[-1].startswith("edge-1; hit")


async def test_own_targeted_field_gives_the_edge_its_own_ttl(tiers, http):
    """§2.2 target list: the edge obeys Edge-Cache-Control first; the regional, which
    does not list it, passes it through and obeys CDN-Cache-Control."""
    fields = {
        "Cache-Control": "max-age=0",
        "CDN-Cache-Control": "max-age=60",
        "Edge-Cache-Control": "max-age=5",
    }
    hits, edge, edge_node, regional_node = await tiers(
        fields, edge_kw={"targeted_cache_control": "Edge-Cache-Control"}
    )
    async with http.get(edge + "/x") as r:
        assert await r.read() == BODY
        assert r.headers["Edge-Cache-Control"] == "max-age=5"
    assert stored(edge_node) == [5.0]
    assert stored(regional_node) == [60.0]
    assert hits["/x"] == 1


async def test_cdn_cache_control_no_store_wins_over_public_max_age(tiers, http):
    """§2.2: CDN-Cache-Control no-store is obeyed even with Cache-Control public, max-age."""
    fields = {"Cache-Control": "public, max-age=60", "CDN-Cache-Control": "no-store"}
    hits, edge, edge_node, regional_node = await tiers(fields)
    for _ in range(2):
        async with http.get(edge + "/x") as r:
            assert r.status == 200 and await r.read() == BODY
    assert hits["/x"] == 2
    assert stored(edge_node) == [] and stored(regional_node) == []


async def test_invalid_cdn_cache_control_falls_back_to_cache_control(tiers, http):
    """§2.1: an unparsable targeted field is ignored: Cache-Control and Expires apply."""
    fields = {"Cache-Control": "max-age=30", "CDN-Cache-Control": "Max-Age=60, no-store"}
    hits, edge, edge_node, regional_node = await tiers(fields)
    for _ in range(2):
        async with http.get(edge + "/x") as r:
            assert await r.read() == BODY
    assert hits["/x"] == 1
    assert stored(edge_node) == [30.0] and stored(regional_node) == [30.0]


async def test_cdn_cache_control_stale_rules_replace_cache_control(tiers, http):
    """§2.2: must-revalidate in Cache-Control is ignored when CDN-Cache-Control gives
    stale-while-revalidate: the stored policy view is what decide reads."""
    fields = {
        "Cache-Control": "max-age=60, must-revalidate",
        "CDN-Cache-Control": "max-age=0, stale-while-revalidate=60",
        "ETag": '"v1"',
    }
    hits, edge, edge_node, _ = await tiers(fields)
    async with http.get(edge + "/x") as r:
        await r.read()
    (obj,) = edge_node.store.peek("/x")
    assert obj.policy["Cache-Control"] == "max-age=0, stale-while-revalidate=60"
    assert obj.headers["Cache-Control"] == "max-age=60, must-revalidate"


async def test_unknown_status_with_max_age_is_stored(tiers, http):
    """RFC 9111 §3: a 599 with explicit freshness is stored at both tiers."""
    hits, edge, edge_node, regional_node = await tiers({"Cache-Control": "max-age=60"}, 599)
    for _ in range(3):
        async with http.get(edge + "/x") as r:
            assert r.status == 599 and await r.read() == BODY
    assert hits["/x"] == 1
    assert stored(edge_node) == [60.0] and stored(regional_node) == [60.0]


async def test_cdn_cache_control_from_the_origin_by_kind(chain_with, http):
    """The origin sends --segment-cdn-cache-control on segments and
    --manifest-cdn-cache-control on manifests; both tiers obey them."""
    chain = await chain_with(
        segment_cdn_cache_control="max-age=600", manifest_cdn_cache_control="max-age=7"
    )
    for path, ttl in (("/sample/init-0.mp4", 600.0), ("/sample/manifest.mpd", 7.0)):
        async with http.get(chain.url(path)) as r:
            assert r.status == 200
            await r.read()
            assert r.headers["CDN-Cache-Control"] == f"max-age={int(ttl)}"
        assert [o.lifetime for o in chain.edge_node.store.peek(path)] == [ttl]
        assert [o.lifetime for o in chain.regional_node.store.peek(path)] == [ttl]
