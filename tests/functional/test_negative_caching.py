"""Negative caching (--negative-ttl) and error statuses with explicit freshness
(RFC 9111 §3, §4.2.2) through a real origin, regional and edge."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from aiohttp import web

from origin.app import make_app as make_origin_app
from shared.engine.node import NODE
from shared.service.settings import CacheSettings
from tests.helpers import Arrivals, Clock, url_of

MISSING = "/sample/seg-does-not-exist.m4s"


@pytest.fixture
async def negative_chain(aiohttp_server, origin_settings, start_node):
    """A real origin whose errors carry no Cache-Control (--error-cache-control ''),
    counting its requests, behind a regional and an edge sharing ``clock``."""

    async def start(clock, **node_kw):
        arrivals = Arrivals()
        app = make_origin_app(dataclasses.replace(origin_settings, error_cache_control=""))
        app.middlewares.append(arrivals.middleware)
        origin = await aiohttp_server(app)
        regional = await start_node("regional-1", url_of(origin), clock=clock, **node_kw)
        edge = await start_node("edge-1", url_of(regional), clock=clock, **node_kw)
        return arrivals, url_of(edge), edge.app[NODE], regional.app[NODE]

    return start


async def test_negative_ttl_storm_costs_one_origin_request_per_ttl(negative_chain, http):
    """500 concurrent GETs of a missing segment: one origin request; another once the
    2 s negative TTL has passed at both tiers."""
    clock = Clock(time.time())
    arrivals, edge, edge_node, regional_node = await negative_chain(clock, negative_ttl=("404=2s",))

    async def get() -> int:
        async with http.get(edge + MISSING) as r:
            await r.read()
            return r.status

    assert await asyncio.gather(*(get() for _ in range(500))) == [404] * 500
    assert arrivals.finished.value == 1
    assert [o.lifetime for o in edge_node.store.peek(MISSING)] == [2.0]
    assert [o.lifetime for o in regional_node.store.peek(MISSING)] == [2.0]
    clock.now += 3
    assert await get() == 404
    assert arrivals.finished.value == 2


async def test_404_without_negative_ttl_is_not_stored(negative_chain, http):
    """Without --negative-ttl a 404 with no freshness (nor validator) is not stored."""
    arrivals, edge, edge_node, _ = await negative_chain(Clock(time.time()))
    for _ in range(2):
        async with http.get(edge + MISSING) as r:
            assert r.status == 404
    assert arrivals.finished.value == 2
    assert edge_node.store.peek(MISSING) == []


@pytest.mark.parametrize(
    ("status", "cache_control", "stored"),
    [
        pytest.param(503, "max-age=60", True, id="s3-503-explicit"),
        pytest.param(410, "max-age=60", True, id="s3-410-explicit"),
        pytest.param(299, "max-age=60", True, id="s3-299-unknown-explicit"),
        pytest.param(500, "", False, id="s4.2.2-500-no-freshness"),
        pytest.param(404, "no-store", False, id="neg-not-no-store"),
    ],
)
async def test_error_status_storage(upstream_app, start_node, http, status, cache_control, stored):
    """Any final status with explicit freshness is stored (RFC 9111 §3); --negative-ttl
    never overrides no-store, and a 5xx without freshness is simply passed on."""
    hits = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        headers = {"Cache-Control": cache_control} if cache_control else {}
        return web.Response(status=status, body=b"error", headers=headers)

    up = await upstream_app({"/e": handler})
    edge = await start_node("edge-1", url_of(up), negative_ttl=("404=2s",))
    for _ in range(2):
        async with http.get(url_of(edge) + "/e") as r:
            assert r.status == status and await r.read() == b"error"
    assert hits == (1 if stored else 2)
    assert bool(edge.app[NODE].store.peek("/e")) is stored


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param((), {}, id="none"),
        pytest.param(("404=2s,410=30s",), {404: 2.0, 410: 30.0}, id="comma-list"),
        pytest.param(("404=2s", "503=500ms"), {404: 2.0, 503: 0.5}, id="repeated-flag"),
    ],
)
def test_settings_negative_ttl_parsed(entries, expected):
    """--negative-ttl STATUS=DURATION entries, comma-separated or repeated."""
    settings = CacheSettings(upstream=("http://x",), negative_ttl=entries)
    assert settings.negative_ttls() == expected


@pytest.mark.parametrize("entry", ["404", "404=", "x=2s", "99=2s", "600=2s", "404=-1s", "404=soon"])
def test_settings_negative_ttl_rejects(entry):
    """A bad entry is a one-line error naming the flag."""
    with pytest.raises(ValueError, match="--negative-ttl"):
        CacheSettings(upstream=("http://x",), negative_ttl=(entry,))
