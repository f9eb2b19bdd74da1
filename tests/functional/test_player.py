"""The edge's /player/ page: dash.js or hls.js from settings, src escaped, proxy untouched."""

from __future__ import annotations

import html
import re
from urllib.parse import quote

import pytest

from edge.app import make_app as make_edge_app
from edge.player import LOCAL_DASHJS, LOCAL_HLSJS, is_hls, valid_latency
from edge.settings import EdgeSettings
from regional.app import make_app as make_regional_app
from shared.service.settings import load
from tests.helpers import edge_settings, regional_settings, url_of

DASHJS = "http://127.0.0.1:9/vendor/dash.all.min.js"
HLSJS = "http://127.0.0.1:7/npm/hls.js@1/dist/hls.min.js"


@pytest.fixture
async def edge(aiohttp_server, origin_server):
    """An edge in front of the origin with dash.js and hls.js at made-up local URLs."""
    settings = edge_settings(
        "edge-1",
        url_of(origin_server),
        cors_origin="*",
        player_dashjs_url=DASHJS,
        player_hlsjs_url=HLSJS,
    )
    return url_of(await aiohttp_server(make_edge_app(settings)))


def script_srcs(page: str) -> list[str]:
    return re.findall(r'<script src="([^"]*)"></script>', page)


async def test_player_page_loads_configured_dashjs(edge, http):
    """The page loads dash.js from --player-dashjs-url and plays the sample by default."""
    async with http.get(edge + "/player/") as r:
        assert r.status == 200
        assert r.content_type == "text/html"
        page = await r.text()
        csp = r.headers["Content-Security-Policy"]
    assert script_srcs(page) == [DASHJS, "/player/player.js"]
    assert 'data-src="/sample/manifest.mpd"' in page and 'data-engine="dash"' in page
    assert "script-src 'self' http://127.0.0.1:9;" in csp
    assert "object-src 'none'" in csp
    for asset, kind in (("player.js", "text/javascript"), ("player.css", "text/css")):
        async with http.get(edge + "/player/" + asset) as r:
            assert r.status == 200 and r.content_type == kind
            assert len(await r.read()) > 100


async def test_player_src_is_escaped(edge, http):
    """A src with quotes and ampersands reaches the page only HTML-escaped."""
    src = "/sample/manifest.mpd?a=1&b='x'"
    async with http.get(edge + "/player/?src=" + quote(src, safe="")) as r:
        assert r.status == 200
        page = await r.text()
    escaped = html.escape(src, quote=True)
    assert f'data-src="{escaped}"' in page and f'value="{escaped}"' in page
    assert "'x'" not in page and "&b=" not in page
    assert script_srcs(page) == [DASHJS, "/player/player.js"]


@pytest.mark.parametrize(
    "src",
    [
        '/x"><script>alert(1)</script>',
        "/x' onmouseover='alert(1)",
        "javascript:alert(1)",
        "data:text/html,<b>x</b>",
        "//evil.example/manifest.mpd",
        "sample/manifest.mpd",
        "/a\\b",
        "",
        "/" + "a" * 3000,
    ],
)
async def test_player_rejects_bad_src(edge, http, src):
    """A src that is not an http(s) URL or an absolute path of URL characters is a 400."""
    async with http.get(edge + "/player/?src=" + quote(src, safe="")) as r:
        assert r.status == 400
        assert "<script" not in await r.text()


async def test_player_accepts_absolute_http_src(edge, http):
    """An http(s) manifest on another edge is allowed (it reads Cache-Status over CORS)."""
    src = "https://edge-2.example:8443/sample/manifest.mpd"
    async with http.get(edge + "/player/", params={"src": src}) as r:
        assert r.status == 200
        assert f'data-src="{src}"' in await r.text()


async def test_player_leaves_other_paths_to_the_proxy(edge, http):
    """Titles, /player without a slash and unknown /player/ files still go through the cache."""
    async with http.get(edge + "/sample/manifest.mpd") as r:
        assert r.status == 200
        assert "edge-1" in r.headers["Cache-Status"]
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    for path in ("/player", "/player/manifest.mpd", "/player/index.html"):
        async with http.get(edge + path) as r:
            assert r.status == 404
            assert "edge-1" in r.headers["Cache-Status"], path  # answered by the proxy


async def test_player_serves_a_local_dashjs_file(aiohttp_server, origin_server, http, tmp_path):
    """A file path as --player-dashjs-url is served by the edge itself."""
    dashjs = tmp_path / "dash.all.min.js"
    dashjs.write_text("window.dashjs = {};\n")
    settings = edge_settings("edge-1", url_of(origin_server), player_dashjs_url=str(dashjs))
    edge = url_of(await aiohttp_server(make_edge_app(settings)))
    async with http.get(edge + "/player/") as r:
        assert script_srcs(await r.text()) == [LOCAL_DASHJS, "/player/player.js"]
        assert "script-src 'self';" in r.headers["Content-Security-Policy"]
    async with http.get(edge + LOCAL_DASHJS) as r:
        assert r.status == 200 and r.content_type == "text/javascript"
        assert await r.text() == "window.dashjs = {};\n"


async def test_player_off_and_not_on_regional(aiohttp_server, origin_server, http):
    """An empty --player-dashjs-url turns the page off; a regional never has it."""
    off = edge_settings("edge-1", url_of(origin_server), player_dashjs_url="")
    regional = regional_settings("regional-1", url_of(origin_server))
    for app in (make_edge_app(off), make_regional_app(regional)):
        url = url_of(await aiohttp_server(app))
        async with http.get(url + "/player/") as r:
            assert r.status == 404 and "Cache-Status" in r.headers


@pytest.mark.parametrize("value", ["ftp://example/dash.js", "/no/such/dash.all.min.js"])
def test_player_bad_dashjs_setting_fails_at_start(value):
    """A dash.js setting that is neither an http(s) URL nor a file is refused with the settings."""
    with pytest.raises(ValueError, match="player-dashjs-url"):
        edge_settings("edge-1", "http://127.0.0.1:9", player_dashjs_url=value)


async def test_player_page_plays_a_live_src_with_the_mpds_latency(edge, http):
    """A live manifest is a src like any other; the latency target is the MPD's unless
    ``latency`` sets one, and the page has the live latency field (hidden until live)."""
    async with http.get(edge + "/player/", params={"src": "/live/sports/manifest.mpd"}) as r:
        assert r.status == 200
        page = await r.text()
    assert 'data-src="/live/sports/manifest.mpd"' in page and 'data-latency=""' in page
    assert '<span id="live" hidden>' in page and 'id="latency"' in page
    params = {"src": "/live/sports/manifest.mpd", "latency": "1.5"}
    async with http.get(edge + "/player/", params=params) as r:
        assert r.status == 200
        page = await r.text()
    assert 'data-latency="1.5"' in page and 'name="latency" value="1.5"' in page
    assert script_srcs(page) == [DASHJS, "/player/player.js"]


@pytest.mark.parametrize(
    "latency", ["0", "0.4", "61", "1e1", "-1", "1.5s", "٣", '1"><b>', "1.2345"]
)
async def test_player_rejects_bad_latency(edge, http, latency):
    """``latency`` is empty or 0.5 to 60 seconds as a plain decimal; anything else is a 400."""
    params = {"src": "/live/sports/manifest.mpd", "latency": latency}
    async with http.get(edge + "/player/", params=params) as r:
        assert r.status == 400
        assert "<b>" not in await r.text()


def test_player_latency_values():
    """The accepted range, ends included."""
    assert all(valid_latency(v) for v in ("", "0.5", "3", "2.75", "60", "60.0"))
    assert not any(valid_latency(v) for v in ("0.49", "60.5", ".5", "5.", " 3"))


@pytest.mark.timeout(10)
async def test_player_plays_an_m3u8_src_with_the_configured_hlsjs(edge, http):
    """An .m3u8 src loads hls.js from --player-hlsjs-url (not dash.js), and the CSP lets
    scripts come from hls.js's origin and the edge only."""
    async with http.get(edge + "/player/", params={"src": "/sample/master.m3u8"}) as r:
        assert r.status == 200
        page = await r.text()
        csp = r.headers["Content-Security-Policy"]
    assert script_srcs(page) == [HLSJS, "/player/player.js"]
    assert 'data-engine="hls"' in page and f'data-library="{HLSJS}"' in page
    assert 'data-src="/sample/master.m3u8"' in page and "hls.js from" in page
    assert "script-src 'self' http://127.0.0.1:7;" in csp and "127.0.0.1:9" not in csp
    assert "worker-src 'self' blob:" in csp  # hls.js transmuxes in a blob: worker
    assert "object-src 'none'" in csp
    # the player page's own files are the same for both
    async with http.get(edge + "/player/player.js") as r:
        assert "startHls" in await r.text()


@pytest.mark.parametrize(
    ("src", "hls"),
    [
        ("/sample/master.m3u8", True),
        ("/sample/media_1.m3u8?token=a.mpd", True),
        ("/live/sports/master.m3u8#t=3", True),
        ("https://edge-2.example/sample/MASTER.M3U8", True),
        ("/sample/manifest.mpd", False),
        ("/sample/manifest.mpd?next=master.m3u8", False),
        ("/sample/master.m3u8.mpd", False),
        ("/m3u8", False),
    ],
)
def test_player_chooses_hls_by_the_path_before_any_query(src, hls):
    """hls.js plays a src whose path ends in .m3u8; a query or fragment never decides."""
    assert is_hls(src) is hls


@pytest.mark.timeout(10)
async def test_player_m3u8_query_does_not_pick_hlsjs(edge, http):
    """An MPD whose query mentions .m3u8 still plays with dash.js."""
    params = {"src": "/sample/manifest.mpd?x=master.m3u8"}
    async with http.get(edge + "/player/", params=params) as r:
        assert r.status == 200
        assert script_srcs(await r.text()) == [DASHJS, "/player/player.js"]


@pytest.mark.timeout(10)
async def test_player_serves_a_local_hlsjs_file(aiohttp_server, origin_server, http, tmp_path):
    """A file path as --player-hlsjs-url is served by the edge at /player/hls.min.js; with a
    URL instead, that path is left to the proxy."""
    hlsjs = tmp_path / "hls.min.js"
    hlsjs.write_text("window.Hls = function () {};\n")
    settings = edge_settings(
        "edge-1", url_of(origin_server), player_dashjs_url=DASHJS, player_hlsjs_url=str(hlsjs)
    )
    edge = url_of(await aiohttp_server(make_edge_app(settings)))
    async with http.get(edge + "/player/", params={"src": "/sample/master.m3u8"}) as r:
        assert script_srcs(await r.text()) == [LOCAL_HLSJS, "/player/player.js"]
        assert "script-src 'self';" in r.headers["Content-Security-Policy"]
    async with http.get(edge + LOCAL_HLSJS) as r:
        assert r.status == 200 and r.content_type == "text/javascript"
        assert await r.text() == "window.Hls = function () {};\n"
    async with http.get(edge + LOCAL_DASHJS) as r:  # dash.js is a URL here: proxied
        assert r.status == 404 and "edge-1" in r.headers["Cache-Status"]


@pytest.mark.timeout(10)
async def test_player_without_hlsjs_leaves_m3u8_to_the_browser(aiohttp_server, origin_server, http):
    """An empty --player-hlsjs-url: an .m3u8 page loads no library (the browser's own HLS,
    as in Safari), scripts come from the edge alone, and MPDs still get dash.js."""
    settings = edge_settings(
        "edge-1", url_of(origin_server), player_dashjs_url=DASHJS, player_hlsjs_url=""
    )
    edge = url_of(await aiohttp_server(make_edge_app(settings)))
    async with http.get(edge + "/player/", params={"src": "/sample/master.m3u8"}) as r:
        page = await r.text()
        assert "script-src 'self';" in r.headers["Content-Security-Policy"]
    assert script_srcs(page) == ["/player/player.js"]
    assert 'data-engine="hls" data-library=""' in page and "own HLS" in page
    async with http.get(edge + "/player/") as r:
        assert script_srcs(await r.text()) == [DASHJS, "/player/player.js"]
    async with http.get(edge + LOCAL_HLSJS) as r:
        assert r.status == 404 and "edge-1" in r.headers["Cache-Status"]


@pytest.mark.parametrize("value", ["ftp://example/hls.min.js", "/no/such/hls.min.js", "hls.js"])
def test_player_bad_hlsjs_setting_fails_at_start(value):
    """An hls.js setting that is neither an http(s) URL nor a file is refused with the settings."""
    with pytest.raises(ValueError, match="--player-hlsjs-url"):
        edge_settings("edge-1", "http://127.0.0.1:9", player_hlsjs_url=value)


@pytest.mark.parametrize(
    ("argv", "env", "needle"),
    [
        (["--player-hlsjs-url", "/no/such/hls.min.js"], {}, "--player-hlsjs-url"),
        ([], {"TIERCDN_PLAYER_HLSJS_URL": "ftp://x/hls.js"}, "--player-hlsjs-url"),
        (["--player-hlsjs-url", "http://bad host/hls.js"], {}, "--player-hlsjs-url"),
    ],
)
def test_player_bad_hlsjs_flag_is_one_line_naming_it(argv, env, needle):
    """``tiercdn-edge`` with a bad --player-hlsjs-url stops with one line naming the flag."""
    with pytest.raises(SystemExit) as exc:
        load(EdgeSettings, ["--upstream", "http://127.0.0.1:9", *argv], env=env)
    message = str(exc.value)
    assert needle in message and "\n" not in message.strip(), message
