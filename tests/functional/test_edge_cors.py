"""The edge's CORS policy: browser players on other origins can read and range."""

from __future__ import annotations

from edge.app import make_app as make_edge_app
from tests.helpers import edge_settings, url_of


async def test_edge_cors_headers_and_range_preflight(aiohttp_server, origin_server, http):
    """Responses allow any origin and expose Cache-Status; a Range preflight is answered locally."""
    settings = edge_settings("edge-1", url_of(origin_server), cors_origin="*")
    edge = url_of(await aiohttp_server(make_edge_app(settings)))
    headers = {"Origin": "https://player.example", "Range": "bytes=0-99"}
    for _ in range(2):  # miss, then hit
        async with http.get(edge + "/sample/init-0.mp4", headers=headers) as r:
            assert r.status == 206
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert "Cache-Status" in r.headers["Access-Control-Expose-Headers"]
    preflight = {
        "Origin": "https://player.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    async with http.options(edge + "/sample/init-0.mp4", headers=preflight) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Headers"] == "range"
        assert "GET" in r.headers["Access-Control-Allow-Methods"]
        assert r.headers["Access-Control-Allow-Origin"] == "*"


async def test_edge_cors_off_by_setting(aiohttp_server, origin_server, http):
    """With an empty --cors-origin the edge adds no CORS headers."""
    settings = edge_settings("edge-1", url_of(origin_server), cors_origin="")
    edge = url_of(await aiohttp_server(make_edge_app(settings)))
    async with http.get(edge + "/sample/manifest.mpd") as r:
        assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
