"""A misbehaving upstream never leaves a partial object and never fakes a whole one."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from shared.engine.node import NODE
from tests.functional.rawserver import RawServer, head
from tests.helpers import url_of

BODY = bytes(range(256)) * 400  # 100 KiB


async def _reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(head(len(BODY)) + BODY[:30000])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.transport.abort()  # RST, not FIN


async def _short_content_length(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(head(len(BODY)) + BODY[:50000])  # promises 100 KiB, sends half, closes
    await writer.drain()


async def _stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(head(len(BODY)) + BODY[:20000])
    await writer.drain()
    await asyncio.sleep(30)


async def _chunked_unterminated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(head(None) + b"%x\r\n" % 20000 + BODY[:20000] + b"\r\n")
    await writer.drain()  # no terminating 0-chunk, then FIN


async def _garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"this is not HTTP at all\r\n\r\n")
    await writer.drain()


async def _hang_before_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


@pytest.mark.parametrize(
    "script",
    [_reset_mid_body, _short_content_length, _stall, _chunked_unterminated],
    ids=["reset", "short-content-length", "stall", "chunked-unterminated"],
)
async def test_proxy_truncated_body_is_aborted_and_not_stored(script, start_node, http):
    """A body cut short aborts every client and stores nothing; the next request refetches."""
    async with RawServer(script).running() as upstream:
        edge = await start_node("edge-1", upstream.url, read_timeout=0.5)
        for attempt in (1, 2):
            async with http.get(url_of(edge) + "/seg.m4s") as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
            assert len(edge.app[NODE].store) == 0
            assert upstream.requests == attempt


async def test_proxy_truncated_body_aborts_every_coalesced_reader(start_node, http):
    """Readers joined to a failing fill are all aborted, none gets a short 200."""
    async with RawServer(_reset_mid_body).running() as upstream:
        edge = await start_node("edge-1", upstream.url)

        async def fetch() -> str:
            try:
                async with http.get(url_of(edge) + "/seg.m4s") as resp:
                    await resp.read()
                    return f"complete {resp.status}"
            except aiohttp.ClientPayloadError:
                return "aborted"

        results = await asyncio.gather(*[fetch() for _ in range(20)])
        assert results == ["aborted"] * 20
        assert upstream.requests == 1
        assert len(edge.app[NODE].store) == 0


@pytest.mark.parametrize(
    ("script", "status"),
    [(_garbage, 502), (_hang_before_head, 504)],
    ids=["not-http", "no-head"],
)
async def test_proxy_upstream_failure_before_head_maps_to_status(script, status, start_node, http):
    """An upstream failing before its head gives a short 502/504, never cached."""
    async with RawServer(script).running() as upstream:
        edge = await start_node("edge-1", upstream.url, read_timeout=0.3)
        async with http.get(url_of(edge) + "/seg.m4s") as resp:
            assert resp.status == status
            assert resp.headers["Cache-Control"] == "no-store"
            assert "edge-1; fwd=uri-miss; detail=" in resp.headers["Cache-Status"]
            assert len(await resp.read()) < 200


async def test_proxy_unreachable_upstream_is_503(start_node, http, unused_tcp_port):
    """A refused connection to the only parent answers 503 at once."""
    edge = await start_node("edge-1", f"http://127.0.0.1:{unused_tcp_port}")
    async with http.get(url_of(edge) + "/x") as resp:
        assert resp.status == 503
        assert "unreachable" in await resp.text()
