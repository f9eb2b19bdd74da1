"""Fixtures that start real tiercdn nodes on loopback ports (port 0).

Helpers tests import (``url_of``, ``node_settings``, ``Chain``, ``Clock``,
``Arrivals``, ``Gate``) live in ``tests/helpers.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge.app import make_app as make_edge_app
from edge.settings import EdgeSettings
from origin.app import LIVE_KEY
from origin.app import make_app as make_origin_app
from origin.live import SegmentState, segment_state
from origin.settings import OriginSettings
from shared.engine.node import make_app as make_node_app
from tests.helpers import (
    Chain,
    Middleware,
    OriginLog,
    ServerFactory,
    eventually,
    node_settings,
    url_of,
)


@pytest.fixture
async def start_node(aiohttp_server: ServerFactory) -> Callable[..., Awaitable[TestServer]]:
    """Start a cache node in front of ``upstream``; returns its TestServer.

    An edge (``edge.app``) when an edge-only setting is given, else the engine's
    app alone (see ``node_settings``). ``middlewares`` (``Arrivals().middleware``)
    are appended to the node's application before it starts."""

    async def start(
        name: str,
        upstream: str | list[str],
        clock: Callable[[], float] | None = None,
        middlewares: Sequence[Middleware] = (),
        **kw: Any,
    ) -> TestServer:
        settings = node_settings(name, upstream, **kw)
        now = clock or time.time
        if isinstance(settings, EdgeSettings):
            app = make_edge_app(settings, clock=now)
        else:
            app = make_node_app(settings, clock=now)
        app.middlewares.extend(middlewares)
        return await aiohttp_server(app)

    return start


@pytest.fixture
async def origin_server(aiohttp_server: ServerFactory, sample_library: Path) -> TestServer:
    settings = OriginSettings(library=str(sample_library), port=0, admin_port=0)
    return await aiohttp_server(make_origin_app(settings))


@pytest.fixture
async def chain(origin_server: TestServer, start_node: Any) -> Chain:
    regional = await start_node("regional-1", url_of(origin_server))
    edge = await start_node("edge-1", url_of(regional))
    return Chain(origin_server, regional, edge)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client session (no auto-decompression, no cookies)."""
    async with aiohttp.ClientSession(
        auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


@pytest.fixture
async def upstream_app(aiohttp_server: ServerFactory) -> Callable[..., Awaitable[TestServer]]:
    """Start a plain aiohttp upstream from a dict of path → handler."""

    async def start(routes: dict[str, Any]) -> TestServer:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        return await aiohttp_server(app)

    return start


@pytest.fixture
async def live_chain(aiohttp_server, start_node, tmp_path: Path):
    """A live origin (one 144p rung) logging its requests, a regional, an edge with
    ``edge_kw``; waits for segment 2 of the first run to be growing."""

    async def start(**edge_kw: Any) -> tuple[OriginLog, str, Path, Any]:
        settings = OriginSettings(
            library=str(tmp_path), port=0, admin_port=0, live=("sports",), live_ladder="144:150k"
        )
        log, upstream_log = OriginLog(), OriginLog()
        app = make_origin_app(settings)
        app.middlewares.append(log.middleware)
        origin = await aiohttp_server(app)
        regional = await start_node(
            "regional-1", url_of(origin), middlewares=[upstream_log.middleware]
        )
        log.regional = upstream_log
        edge = await start_node("edge-1", url_of(regional), **edge_kw)
        encoder = origin.app[LIVE_KEY].encoders["sports"]
        run = await eventually(lambda: encoder.run_dir)
        await eventually(lambda: segment_state(run / "chunk-0-00002.m4s") is SegmentState.GROWING)
        return log, url_of(edge), run, edge

    return start
