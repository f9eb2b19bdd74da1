"""A misbehaving upstream never leaves a partial object and never fakes a whole one."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from shared.engine.node import NODE
from tests.functional.rawserver import RawServer, Script, head
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
    """A body cut short, and cut again on the one Range request that tries to continue
    it, aborts every client and stores nothing; the next request refetches."""
    async with RawServer(script).running() as upstream:
        edge = await start_node("edge-1", upstream.url, read_timeout=0.5)
        for attempt in (1, 2):
            async with http.get(url_of(edge) + "/seg.m4s") as resp:
                assert resp.status == 200
                with pytest.raises(aiohttp.ClientPayloadError):
                    await resp.read()
            assert len(edge.app[NODE].store) == 0
            assert upstream.requests == 2 * attempt  # the fill and its one try to continue


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
        assert upstream.requests == 2  # one fill, and its one try to continue
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


def _cut_once(etags: list[str]) -> tuple[list[dict[str, str]], object]:
    """An upstream whose first answer is cut by a reset at 40 000 bytes; later ones
    honour ``Range`` under a matching ``If-Range`` (206), else send the whole body.
    Its ETag is the next of ``etags`` per request (the last one repeats)."""
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        etag = etags[min(len(seen), len(etags)) - 1]
        headers = {"Cache-Control": "public, max-age=600", "ETag": etag}
        ranged = request.headers.get("Range", "")
        if ranged and request.headers.get("If-Range") == etag:
            start = int(ranged.removeprefix("bytes=").rstrip("-"))
            headers["Content-Range"] = f"bytes {start}-{len(BODY) - 1}/{len(BODY)}"
            return web.Response(status=206, body=BODY[start:], headers=headers)
        resp = web.StreamResponse(headers=headers)
        resp.content_length = len(BODY)
        await resp.prepare(request)
        await resp.write(BODY[: 40000 if len(seen) == 1 else len(BODY)])
        if len(seen) == 1:
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("cut")
        return resp

    return seen, handler


async def test_proxy_cut_body_is_continued_with_a_range_and_stored_whole(
    upstream_app, start_node, http
):
    """A body cut mid-transfer is continued from the byte it stopped at with
    ``Range`` + ``If-Range``: all 20 coalesced readers get the whole body, it is
    stored whole, the upstream saw 2 requests and the breaker counted one failure."""
    seen, handler = _cut_once(['"v1"'])
    upstream = await upstream_app({"/seg.m4s": handler})
    edge = await start_node("edge-1", url_of(upstream))

    async def fetch() -> bytes:
        async with http.get(url_of(edge) + "/seg.m4s") as resp:
            assert resp.status == 200
            return await resp.read()

    assert await asyncio.gather(*[fetch() for _ in range(20)]) == [BODY] * 20
    node = edge.app[NODE]
    assert [obj.body for obj in node.store] == [BODY]
    assert len(seen) == 2 and "Range" not in seen[0]
    assert seen[1]["Range"].startswith("bytes=") and seen[1]["If-Range"] == '"v1"'
    assert int(seen[1]["Range"][6:-1]) >= 40000 - 1  # from where the body stopped
    assert node.metrics.registry.get_sample_value("tiercdn_fill_resumes_total") == 1
    results = node.metrics.registry.get_sample_value
    labels = {"parent": url_of(upstream)}
    assert results("tiercdn_upstream_requests_total", {**labels, "result": "TruncatedBody"}) == 1
    assert results("tiercdn_upstream_requests_total", {**labels, "result": "2xx"}) == 1


async def test_proxy_cut_body_of_a_changed_object_is_aborted_not_spliced(
    upstream_app, start_node, http
):
    """When the object changed before the continuation (If-Range does not match, a
    whole 200 of the new one comes back), readers are aborted: never two
    representations spliced into one body, nothing stored."""
    seen, handler = _cut_once(['"v1"', '"v2"'])
    upstream = await upstream_app({"/seg.m4s": handler})
    edge = await start_node("edge-1", url_of(upstream))
    async with http.get(url_of(edge) + "/seg.m4s") as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert len(seen) == 2 and seen[1]["If-Range"] == '"v1"'
    assert len(edge.app[NODE].store) == 0


def _long_body_first() -> tuple[list[bytes], Script]:
    """An upstream whose first answer is ``Content-Length: 100`` with 150 bytes; it
    answers every later request, on that connection or a new one, honestly (10
    bytes). Returns the request heads it saw (each connection's first is read by
    ``RawServer``) and the script."""
    heads: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(b"")
        if len(heads) == 1:
            writer.write(head(100) + BODY[:150])
            await writer.drain()
        else:
            writer.write(head(10) + b"0123456789")
        while True:
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(head(10) + b"0123456789")
            await writer.drain()

    return heads, script


async def test_proxy_body_longer_than_content_length_keeps_content_length_bytes(start_node, http):
    """A body longer than its Content-Length: exactly Content-Length bytes are
    served and stored, the upstream connection is dropped, and the next request
    for another URL succeeds (RFC 9112 §6.3, §11.2)."""
    heads, script = _long_body_first()
    async with RawServer(script).running() as upstream:
        edge = await start_node("edge-1", upstream.url)
        async with http.get(url_of(edge) + "/seg.m4s") as resp:
            assert resp.status == 200
            assert await resp.read() == BODY[:100]
        assert [obj.body for obj in edge.app[NODE].store] == [BODY[:100]]
        async with http.get(url_of(edge) + "/other.m4s") as resp:
            assert resp.status == 200
            assert await resp.read() == b"0123456789"
        async with http.get(url_of(edge) + "/seg.m4s") as resp:
            assert await resp.read() == BODY[:100]
            assert "hit" in resp.headers["Cache-Status"]
        assert len(heads) == 2 and upstream.requests == 2  # on a new connection


async def _early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
    await writer.drain()
    writer.write(head(len(BODY)) + BODY)
    await writer.drain()
    await reader.read()


async def test_proxy_interim_response_is_skipped_final_stored_without_its_fields(start_node, http):
    """A 103 before the final response (RFC 9110 §15.2, §15.2.3) is skipped (aiohttp's
    client does not expose 1xx): the final 200 arrives whole and is stored without the
    103's fields."""
    async with RawServer(_early_hints).running() as upstream:
        edge = await start_node("edge-1", upstream.url)
        for member in ("fwd=uri-miss", "hit"):
            async with http.get(url_of(edge) + "/seg.m4s") as resp:
                assert resp.status == 200 and await resp.read() == BODY
                assert "Link" not in resp.headers
                assert member in resp.headers["Cache-Status"]
        [obj] = edge.app[NODE].store
        assert obj.body == BODY and "Link" not in obj.headers
        assert upstream.requests == 1
