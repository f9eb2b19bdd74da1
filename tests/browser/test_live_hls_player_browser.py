"""A real browser plays a live channel's HLS from the edge's /player/ page with hls.js.

The origin encodes ``sports`` in real time (one 144p rung) and publishes a
sliding-window ``master.m3u8`` next to its MPD, over the same segments.
Headless Chromium opens ``/player/?src=/live/sports/master.m3u8``; hls.js plays
at the live edge through regional and edge, and the page samples hls.js's live
latency once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time

import aiohttp
import pytest

from edge.app import make_app as make_edge_app
from origin.app import LIVE_KEY
from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from regional.app import make_app as make_regional_app
from tests.browser.test_live_player_browser import _first_mpd
from tests.helpers import (
    STARTED_OR_FAILED,
    PlaywrightTimeout,
    edge_settings,
    open_page,
    regional_settings,
    url_of,
)

LIVE_SECONDS = 20
TARGET = 4  # ?latency= on the page: hls.js's liveSyncDuration


async def _playlists_whole(origin: str, seconds: float = 15.0) -> None:
    """Wait until the origin answers master.m3u8 with 200: it does once every media
    playlist it names is whole (a 503 before, while the channel starts)."""
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(origin + "/live/sports/master.m3u8") as r:
                if r.status == 200:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"no whole live HLS playlists within {seconds}s")


@pytest.mark.slow
@pytest.mark.timeout(75)
async def test_hls_player_plays_a_live_channel(
    chromium, hlsjs_server, aiohttp_server, artifacts, tmp_path
):
    """Live HLS through three tiers: 20 s at the live edge without a stall, latency shown,
    ``latency=4`` taken as hls.js's target (liveSyncDuration)."""
    library = tmp_path / "library"  # no titles: the channel alone
    library.mkdir()
    settings = OriginSettings(
        library=str(library), port=0, admin_port=0, live=("sports",), live_ladder="144:150k"
    )
    origin = await aiohttp_server(make_origin_app(settings))
    regional = await aiohttp_server(
        make_regional_app(regional_settings("regional-1", url_of(origin)))
    )
    edge_kw = {
        "cors_origin": "*",
        "prefetch": 2,
        "player_dashjs_url": "http://127.0.0.1:9/dash.all.min.js",  # never loaded
        "player_hlsjs_url": url_of(hlsjs_server) + "/hls.min.js",
    }
    edge = url_of(
        await aiohttp_server(make_edge_app(edge_settings("edge-1", url_of(regional), **edge_kw)))
    )
    await _first_mpd(origin.app[LIVE_KEY].encoders["sports"].run_dir)
    await _playlists_whole(url_of(origin))

    page, problems = await open_page(chromium)
    await page.goto(edge + f"/player/?src=/live/sports/master.m3u8&latency={TARGET}")
    await page.wait_for_function(
        STARTED_OR_FAILED,
        timeout=15_000,
    )
    started = time.monotonic()
    with contextlib.suppress(PlaywrightTimeout):  # the asserts below say what went wrong
        await page.wait_for_function(
            f"() => (tiercdnPlayer.live && tiercdnPlayer.live.samples.length >= {LIVE_SECONDS})"
            " || tiercdnPlayer.errors.length > 0",
            timeout=(LIVE_SECONDS + 10) * 1000,
            polling=250,
        )
    wall = time.monotonic() - started
    state = await page.evaluate("() => window.tiercdnPlayer")
    shown = await page.locator("#latency").text_content()
    await page.screenshot(path=str(artifacts / "hls-player-live.png"), full_page=True)
    await page.close()  # before the tiers stop: no errors from a page left playing

    live = state["live"] or {"samples": []}
    latencies = [s["latencyS"] for s in live["samples"]]
    media = [r for r in state["responses"] if r["type"] == "MediaSegment"]
    summary = {
        "hlsjs": state["version"],
        "startup_ms": state["startupMs"],
        "wall_seconds": round(wall, 2),
        "target_s": live.get("targetS"),
        "latency_samples": len(latencies),
        "latency_median_s": latencies and round(statistics.median(latencies), 3),
        "latency_range_s": latencies and [round(min(latencies), 2), round(max(latencies), 2)],
        "stalls": state["stalls"],
        "errors": state["errors"],
        "warnings": state["warnings"],
        "failed": [(r["url"], r["status"]) for r in state["responses"] if r["status"] != 200],
        "media_segments": len(media),
        "tier_hits": state["tierHits"],
        "shown": shown,
    }
    print(json.dumps(summary, indent=2))

    assert state["errors"] == [] and problems == [], (state["errors"], problems)
    assert state["player"] == "hls.js" and state["startupMs"] is not None, summary
    assert state["stalls"] == [], summary
    assert len(latencies) >= LIVE_SECONDS and shown and shown.endswith(" s"), summary
    assert live["targetS"] == TARGET, summary
    assert len(media) >= LIVE_SECONDS // 2, summary
    for r in media:
        assert r["status"] == 200, r
        assert "regional-1" in r["cacheStatus"] and "edge-1" in r["cacheStatus"], r
