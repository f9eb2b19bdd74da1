"""Strict HTTP-dates (RFC 9110 §5.6.7) through a real edge in front of a loopback upstream."""

from __future__ import annotations

import collections

import pytest
from aiohttp import web

from shared.http.dates import parse_http_date
from tests.helpers import url_of

BODY = b"dated-bytes-" * 50


@pytest.mark.parametrize(
    "bad_date",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 UTC", id="zone-utc-9111-4.2"),
        pytest.param("Sun, 06 Nov 1994 08:49:37 +0000", id="zone-offset-5.6.7"),
        pytest.param("Sun 06 Nov 1994 08:49:37 GMT", id="no-comma-5.6.7"),
    ],
)
async def test_edge_replaces_invalid_date_with_receipt_time(
    upstream_app, start_node, http, bad_date
):
    """An invalid Date is replaced by the receipt time (RFC 9110 §6.6.1): the next GET is a hit."""
    hits: collections.Counter[str] = collections.Counter()

    async def handler(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(body=BODY, headers={"Date": bad_date, "Cache-Control": "max-age=60"})

    server = await upstream_app({"/d": handler})
    edge = url_of(await start_node("edge-1", url_of(server)))
    async with http.get(edge + "/d") as r:
        assert r.status == 200 and await r.read() == BODY
        assert parse_http_date(r.headers["Date"]) is not None
    async with http.get(edge + "/d") as r:
        assert await r.read() == BODY
        assert r.headers["Cache-Status"].startswith("edge-1; hit; ttl=")
        assert r.headers.getall("Date") == [r.headers["Date"]]
    assert hits["/d"] == 1
