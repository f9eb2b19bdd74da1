"""A real browser plays a title's HLS from the edge's /player/ page with hls.js.

Headless Chromium loads ``/player/?src=/long/master.m3u8``; the page picks
hls.js (served from a local static server, another origin than the edge),
which plays the 30 s title's multivariant playlist from a cold cache through
edge → regional → origin for 20 s of media time. The page records each
response's Cache-Status from hls.js's own XHRs, as it does for dash.js.
"""

from __future__ import annotations

import contextlib
import json
import time

import pytest

from edge.app import make_app as make_edge_app
from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from regional.app import make_app as make_regional_app
from tests.helpers import (
    LONG_TITLE,
    STARTED_OR_FAILED,
    PlaywrightTimeout,
    edge_settings,
    open_page,
    regional_settings,
    require_h264_aac,
    url_of,
)

PLAY_SECONDS = 20
MAX_STARTUP_MS = 2000


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_hls_player_plays_master_playlist_through_three_tiers_without_stalls(
    chromium, hlsjs_server, long_library, aiohttp_server, artifacts
):
    """hls.js starts within 2 s from a cold cache and plays 20 s with no stall or error;
    every segment's Cache-Status names both tiers."""
    origin = await aiohttp_server(
        make_origin_app(OriginSettings(library=str(long_library), port=0, admin_port=0))
    )
    regional = await aiohttp_server(
        make_regional_app(regional_settings("regional-1", url_of(origin)))
    )
    settings = edge_settings(
        "edge-1",
        url_of(regional),
        cors_origin="*",
        prefetch=2,
        player_dashjs_url="http://127.0.0.1:9/dash.all.min.js",  # never loaded: src is HLS
        player_hlsjs_url=url_of(hlsjs_server) + "/hls.min.js",
    )
    edge = url_of(await aiohttp_server(make_edge_app(settings)))

    page, problems = await open_page(chromium)

    await page.goto(edge + "/player/?src=/" + LONG_TITLE + "/master.m3u8")
    await require_h264_aac(page, chromium)

    await page.wait_for_function(
        STARTED_OR_FAILED,
        timeout=10_000,
    )
    started = time.monotonic()
    with contextlib.suppress(PlaywrightTimeout):  # the asserts below say what went wrong
        await page.wait_for_function(
            f"() => document.getElementById('video').currentTime >= {PLAY_SECONDS}"
            " || tiercdnPlayer.errors.length > 0",
            timeout=(PLAY_SECONDS + 15) * 1000,
            polling=200,
        )
    wall = time.monotonic() - started
    state = await page.evaluate("() => window.tiercdnPlayer")
    current_time = await page.evaluate("() => document.getElementById('video').currentTime")
    shown = await page.evaluate(
        "() => ['startup', 'quality', 'stalls', 'hits']"
        ".map(id => document.getElementById(id).textContent)"
    )

    await page.screenshot(path=str(artifacts / "hls-player.png"), full_page=True)
    media = [r for r in state["responses"] if r["type"] == "MediaSegment"]
    summary = {
        "player": state["player"],
        "hlsjs": state["version"],
        "startup_ms": state["startupMs"],  # from loadSource to the first "playing"
        "started_after_navigation_ms": state["startedAt"] and round(state["startedAt"]),
        "media_seconds": round(current_time, 2),
        "wall_seconds": round(wall, 2),
        "stalls": state["stalls"],
        "errors": state["errors"],
        "warnings": state["warnings"],
        "quality": state["quality"],
        "media_segments": len(media),
        "tier_hits": state["tierHits"],
        "first_segments": [(r["url"].rsplit("/", 1)[-1], r["cacheStatus"]) for r in media[:4]],
        "page_shows": dict(zip(("startup", "video", "stalls", "tier hits"), shown, strict=True)),
        "screenshot": str(artifacts / "hls-player.png"),
    }
    (artifacts / "hls-summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))

    assert state["player"] == "hls.js" and state["version"], summary
    assert state["errors"] == [] and problems == [], (state["errors"], problems)
    # Within 2 s of navigation start: page, hls.js, playlists and first segments.
    assert state["startupMs"] is not None and state["startupMs"] > 0, summary
    assert state["startedAt"] is not None and state["startedAt"] < MAX_STARTUP_MS, summary
    assert current_time >= PLAY_SECONDS, summary
    assert state["stalls"] == [], summary
    # The rendition hls.js chose is on the page.
    video = state["quality"]["video"]
    assert video["bandwidth"] > 0 and video["height"] in (180, 360), summary
    assert shown[0].endswith(" ms") and "kb/s" in shown[1] and shown[2] == "0", summary
    # Playlists and segments alike came through both tiers, from a cold cache.
    kinds = {r["type"] for r in state["responses"]}
    assert {"Playlist", "InitializationSegment", "MediaSegment"} <= kinds, kinds
    assert len(media) >= PLAY_SECONDS // 2, summary
    for r in state["responses"]:
        assert r["status"] == 200, r
        assert "regional-1" in r["cacheStatus"] and "edge-1" in r["cacheStatus"], r
    for r in media:
        assert r["mediaType"] in ("video", "audio") and r["rep"], r
        assert r["mediaType"] == "audio" or r["bandwidth"], r
    first_video = next(r for r in media if r["mediaType"] == "video")
    tiers = {t["tier"]: t["kind"] for t in first_video["tiers"]}
    assert tiers == {"regional-1": "miss", "edge-1": "miss"}, first_video
    # The table on the page shows them too.
    rows = await page.locator("#segments tbody tr").count()
    assert rows >= min(len(state["responses"]), 40)
