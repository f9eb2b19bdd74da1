"""Fixtures that start real tiercdn nodes on loopback ports (port 0)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from shared.engine.node import NODE, Node
from shared.engine.node import make_app as make_node_app
from shared.service.settings import CacheSettings

ServerFactory = Callable[..., Awaitable[TestServer]]


def node_settings(name: str, upstream: str | list[str], **kw: Any) -> CacheSettings:
    ups = (upstream,) if isinstance(upstream, str) else tuple(upstream)
    kw.setdefault("read_timeout", 5.0)
    kw.setdefault("connect_timeout", 2.0)
    return CacheSettings(name=name, upstream=ups, port=0, admin_port=0, **kw)


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@dataclasses.dataclass
class Chain:
    """origin → regional → edge, each a real server on a loopback port."""

    origin: TestServer
    regional: TestServer
    edge: TestServer

    @property
    def edge_node(self) -> Node:
        return self.edge.app[NODE]

    @property
    def regional_node(self) -> Node:
        return self.regional.app[NODE]

    def url(self, path: str, tier: str = "edge") -> str:
        return url_of(getattr(self, tier)) + path


@pytest.fixture
async def start_node(aiohttp_server: ServerFactory) -> Callable[..., Awaitable[TestServer]]:
    """Start a cache node in front of ``upstream``; returns its TestServer."""

    async def start(
        name: str, upstream: str | list[str], clock: Callable[[], float] | None = None, **kw: Any
    ) -> TestServer:
        settings = node_settings(name, upstream, **kw)
        app = make_node_app(settings, clock=clock) if clock else make_node_app(settings)
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
async def http() -> Any:
    """A plain client session (no auto-decompression, no cookies)."""
    async with aiohttp.ClientSession(
        auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


class Clock:
    """An injected clock tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def upstream_app(aiohttp_server: ServerFactory) -> Callable[..., Awaitable[TestServer]]:
    """Start a plain aiohttp upstream from a dict of path → handler."""

    async def start(routes: dict[str, Any]) -> TestServer:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        return await aiohttp_server(app)

    return start
