"""304s through the tiers (RFC 9111 §4.3.4, §3.2): a field the origin changes on
revalidation reaches the edge behind a regional."""

from __future__ import annotations

from aiohttp import web

from shared.http.dates import format_http_date
from tests.helpers import Clock, url_of

BODY = b"versioned-object-" * 64


def versioned_origin(clock: Clock) -> tuple[list[str], object]:
    """An origin serving ``"v1"`` with ``X-Version: 1`` and max-age=1, and answering
    ``If-None-Match: "v1"`` with a 304 carrying ``X-Version: 2``. Returns the
    If-None-Match of each request it saw, and the handler."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("If-None-Match", ""))
        headers = {
            "ETag": '"v1"',
            "Cache-Control": "public, max-age=1",
            "Date": format_http_date(clock()),
        }
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={**headers, "X-Version": "2"})
        headers.update({"X-Version": "1", "Content-Type": "video/iso.segment"})
        return web.Response(body=BODY, headers=headers)

    return seen, handler


async def test_revalidation_chain_changed_field_reaches_the_edge(upstream_app, start_node, http):
    """Once both tiers revalidate, the edge serves the field the origin's 304 changed:
    to a client's conditional request (304) and to a plain one (200)."""
    clock = Clock()
    seen, handler = versioned_origin(clock)
    origin = await upstream_app({"/seg.m4s": handler})
    regional = await start_node("regional-1", url_of(origin), clock=clock)
    edge = await start_node("edge-1", url_of(regional), clock=clock)
    url = url_of(edge) + "/seg.m4s"
    async with http.get(url) as resp:
        assert resp.status == 200 and await resp.read() == BODY
        assert resp.headers["X-Version"] == "1"
    clock.now += 5  # both stored copies are stale

    conditional = {"If-None-Match": '"v1"'}
    async with http.get(url, headers=conditional) as resp:  # from the edge's fill
        assert resp.status == 304
        assert resp.headers["X-Version"] == "2"
        assert resp.headers["ETag"] == '"v1"'
        assert "Content-Length" not in resp.headers or resp.headers["Content-Length"] == "0"
    async with http.get(url) as resp:  # an edge hit
        assert resp.status == 200 and await resp.read() == BODY
        assert resp.headers["X-Version"] == "2"
        assert resp.headers["Content-Type"] == "video/iso.segment"
        assert "edge-1; hit" in resp.headers["Cache-Status"]
    async with http.get(url, headers=conditional) as resp:  # from the edge's store
        assert resp.status == 304 and resp.headers["X-Version"] == "2"
    assert seen == ["", '"v1"']
