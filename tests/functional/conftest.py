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
from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from shared.engine.node import make_app as make_node_app
from tests.helpers import Chain, Middleware, ServerFactory, node_settings, url_of


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
