"""A real browser plays a title from the edge's /player/ page: edge → regional → origin.

Headless Chromium loads the page, dash.js (served from a local static server)
plays a 30 s title from a cold cache for 20 s of media time; the page records
each response's Cache-Status and the video element's and dash.js's events.
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
async def test_player_plays_through_three_tiers_without_stalls(
    chromium, dashjs_server, long_library, aiohttp_server, artifacts
):
    """Playback starts within 2 s from a cold cache and runs 20 s with no stall or error."""
    origin = await aiohttp_server(
        make_origin_app(OriginSettings(library=str(long_library), port=0, admin_port=0))
    )
    regional = await aiohttp_server(
        make_regional_app(regional_settings("regional-1", url_of(origin)))
    )
    dashjs_url = url_of(dashjs_server) + "/dash.all.min.js"
    settings = edge_settings(
        "edge-1", url_of(regional), cors_origin="*", prefetch=2, player_dashjs_url=dashjs_url
    )
    edge = url_of(await aiohttp_server(make_edge_app(settings)))

    page, problems = await open_page(chromium)

    await page.goto(edge + "/player/?src=/" + LONG_TITLE + "/manifest.mpd")
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

    await page.screenshot(path=str(artifacts / "player.png"), full_page=True)
    media = [r for r in state["responses"] if r["type"] == "MediaSegment"]
    summary = {
        "dashjs": state["version"],
        "startup_ms": state["startupMs"],  # from attachSource to the first "playing"
        "started_after_navigation_ms": state["startedAt"] and round(state["startedAt"]),
        "media_seconds": round(current_time, 2),
        "wall_seconds": round(wall, 2),
        "stalls": state["stalls"],
        "errors": state["errors"],
        "media_segments": len(media),
        "tier_hits": state["tierHits"],
        "first_segments": [(r["url"].rsplit("/", 1)[-1], r["cacheStatus"]) for r in media[:4]],
        "screenshot": str(artifacts / "player.png"),
    }
    (artifacts / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))

    assert state["errors"] == [] and problems == [], (state["errors"], problems)
    # Within 2 s of navigation start: page, dash.js, manifest and first segments.
    assert state["startedAt"] is not None and state["startedAt"] < MAX_STARTUP_MS, summary
    assert current_time >= PLAY_SECONDS, summary
    assert state["stalls"] == [], summary
    # Every segment came through both tiers, and the cache was cold at the start.
    assert len(media) >= PLAY_SECONDS // 2, summary
    for r in media:
        assert r["status"] == 200 and r["bandwidth"], r
        assert "regional-1" in r["cacheStatus"] and "edge-1" in r["cacheStatus"], r
    first_video = next(r for r in media if r["mediaType"] == "video")
    tiers = {t["tier"]: t["kind"] for t in first_video["tiers"]}
    assert tiers == {"regional-1": "miss", "edge-1": "miss"}, first_video
    # The table on the page shows them too.
    rows = await page.locator("#segments tbody tr").count()
    assert rows >= min(len(state["responses"]), 40)
