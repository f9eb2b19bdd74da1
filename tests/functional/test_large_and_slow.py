"""Large objects stream through uncached; slow clients hold back nobody else."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiohttp import web

from shared.engine.node import NODE
from tests.helpers import url_of

BIG = os.urandom(3 * 2**20)


def big_handler(chunked: bool, counter: list[int]):
    async def handler(request: web.Request) -> web.StreamResponse:
        counter.append(1)
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        if not chunked:
            resp.content_length = len(BIG)
        await resp.prepare(request)
        for i in range(0, len(BIG), 65536):
            await resp.write(BIG[i : i + 65536])
        await resp.write_eof()
        return resp

    return handler


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_proxy_object_over_max_streams_through_uncached(
    upstream_app, start_node, http, chunked
):
    """An object over --max-object-bytes is served whole to every reader and never stored."""
    calls: list[int] = []
    server = await upstream_app({"/big": big_handler(chunked, calls)})
    edge = await start_node("edge-1", url_of(server), max_object_bytes=2**20)

    async def fetch() -> bytes:
        async with http.get(url_of(edge) + "/big") as r:
            assert r.status == 200
            return await r.read()

    bodies = await asyncio.gather(*[fetch() for _ in range(4)])
    assert all(b == BIG for b in bodies)
    assert len(edge.app[NODE].store) == 0
    assert len(calls) >= 1
    async with http.get(url_of(edge) + "/big") as r:
        assert await r.read() == BIG
        assert "stored" not in r.headers["Cache-Status"]


async def test_proxy_stalled_client_does_not_block_others(upstream_app, start_node, http):
    """A client that never reads its body does not delay other readers of the same object."""
    calls: list[int] = []
    server = await upstream_app({"/big": big_handler(False, calls)})
    edge = await start_node("edge-1", url_of(server), max_object_bytes=8 * 2**20)
    host, port = url_of(edge).removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")  # ...and never read the body
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    try:
        for _ in range(3):
            async with asyncio.timeout(10), http.get(url_of(edge) + "/big") as r:
                assert await r.read() == BIG
        assert len(calls) == 1  # the stalled client's fill completed and was stored
    finally:
        writer.transport.abort()


async def test_proxy_range_on_chunked_miss(upstream_app, start_node, http):
    """A Range on a cold chunked object waits for its length, then answers 206."""
    calls: list[int] = []
    server = await upstream_app({"/c": big_handler(True, calls)})
    edge = await start_node("edge-1", url_of(server), max_object_bytes=8 * 2**20)
    async with http.get(url_of(edge) + "/c", headers={"Range": "bytes=-100"}) as r:
        assert r.status == 206
        assert r.headers["Content-Range"] == f"bytes {len(BIG) - 100}-{len(BIG) - 1}/{len(BIG)}"
        assert await r.read() == BIG[-100:]


async def test_proxy_range_on_chunked_uncached_object_gets_whole(upstream_app, start_node, http):
    """A Range on a chunked object too large to store is answered with the whole body."""
    calls: list[int] = []
    server = await upstream_app({"/c": big_handler(True, calls)})
    edge = await start_node("edge-1", url_of(server), max_object_bytes=2**20)
    async with http.get(url_of(edge) + "/c", headers={"Range": "bytes=0-9"}) as r:
        assert r.status == 200 and await r.read() == BIG
