"""A real browser plays a live low-latency channel from the edge's /player/ page.

The origin encodes ``sports`` in real time (the bundled ffmpeg, one 144p rung)
into a dynamic LL-DASH presentation; a regional and an edge on loopback stream
its growing segments chunk by chunk. Headless Chromium opens the player page on
``/live/sports/manifest.mpd``, dash.js plays at the live edge for 30 s, and the
page samples dash.js's live latency (``getCurrentLiveLatency``) once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import time
from pathlib import Path

import pytest

from edge.app import make_app as make_edge_app
from origin.app import LIVE_KEY
from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from regional.app import make_app as make_regional_app
from tests.helpers import (
    STARTED_OR_FAILED,
    PlaywrightTimeout,
    edge_settings,
    open_page,
    regional_settings,
    url_of,
)

LIVE_SECONDS = 30  # of playback, sampled once a second
SETTLE_SECONDS = 5  # catch-up's start: dash.js joins a little behind, then speeds up
TARGET = 3.0  # the channel's ServiceDescription latency target (LiveSpec.latency), s
# dash.js's catch-up steers the latency to the target and holds it within
# milliseconds (playback rate 0.98-1.02); it joins up to a chunk behind it.
MEDIAN_SLACK = 0.05
SETTLED_SLACK = 0.1
JOIN_SLACK = 0.5  # one CMAF chunk
MAX_STARTUP_MS = 2000


async def _first_mpd(run_dir: Path | None, seconds: float = 15.0) -> None:
    """Wait for the encoder's first complete MPD (the origin answers 503 until then)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if run_dir is not None and "</MPD>" in _text(run_dir / "manifest.mpd"):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no live MPD within {seconds}s")


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


@pytest.mark.slow
@pytest.mark.timeout(75)
async def test_player_plays_a_live_channel_at_low_latency(
    chromium, dashjs_server, aiohttp_server, artifacts, tmp_path
):
    """Live through three tiers: low-latency mode, 30 s without a stall, latency at the
    MPD's 3 s target."""
    library = tmp_path / "library"  # no titles: the channel alone
    library.mkdir()
    settings = OriginSettings(
        library=str(library),
        port=0,
        admin_port=0,
        live=("sports",),
        live_ladder="144:150k",
    )
    origin = await aiohttp_server(make_origin_app(settings))
    regional = await aiohttp_server(
        make_regional_app(regional_settings("regional-1", url_of(origin)))
    )
    dashjs_url = url_of(dashjs_server) + "/dash.all.min.js"
    edge_kw = {"cors_origin": "*", "prefetch": 2, "player_dashjs_url": dashjs_url}
    edge = url_of(
        await aiohttp_server(make_edge_app(edge_settings("edge-1", url_of(regional), **edge_kw)))
    )
    encoder = origin.app[LIVE_KEY].encoders["sports"]
    await _first_mpd(encoder.run_dir)

    page, problems = await open_page(chromium)
    await page.goto(edge + "/player/?src=/live/sports/manifest.mpd")
    await page.wait_for_function(
        STARTED_OR_FAILED,
        timeout=10_000,
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
    await page.screenshot(path=str(artifacts / "player-live.png"), full_page=True)
    await page.close()  # before the tiers stop: no errors from a page left playing

    live = state["live"] or {"samples": []}
    samples = live["samples"]
    latencies = [s["latencyS"] for s in samples]
    settled = [
        s["latencyS"] for s in samples if s["at"] - samples[0]["at"] >= SETTLE_SECONDS * 1000
    ]
    media = [r for r in state["responses"] if r["type"] == "MediaSegment"]
    summary = {
        "dashjs": state["version"],
        "startup_ms": state["startupMs"],
        "wall_seconds": round(wall, 2),
        "low_latency": live.get("lowLatency"),
        "target_s": live.get("targetS"),
        "latency_samples": len(latencies),
        "latency_median_s": latencies and round(statistics.median(latencies), 3),
        "latency_max_s": latencies and max(latencies),
        "latency_max_after_settle_s": settled and max(settled),
        "latency_first_s": latencies[:SETTLE_SECONDS],
        "playback_rates": samples
        and [min(s["rate"] for s in samples), max(s["rate"] for s in samples)],
        "stalls": state["stalls"],
        "errors": state["errors"],
        "media_segments": len(media),
        "tier_hits": state["tierHits"],
        "shown": shown,
        "screenshot": str(artifacts / "player-live.png"),
    }
    (artifacts / "summary-live.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))

    assert state["errors"] == [] and problems == [], (state["errors"], problems)
    assert state["startupMs"] is not None and state["startupMs"] < MAX_STARTUP_MS, summary
    assert state["stalls"] == [], summary
    # dash.js took the MPD's low-latency mode and its latency target.
    assert live["lowLatency"] is True and live["targetS"] == TARGET, summary
    assert len(latencies) >= LIVE_SECONDS, summary
    assert statistics.median(latencies) <= TARGET + MEDIAN_SLACK, summary
    assert max(settled) <= TARGET + SETTLED_SLACK, summary
    assert max(latencies) <= TARGET + JOIN_SLACK, summary
    assert shown and shown.endswith(" s"), shown  # "3.0 s" on the page
    # Segments came through both tiers, chunk by chunk. (A streamed segment's size is
    # Resource Timing's, which the browser may not have yet: not asserted.)
    assert len(media) >= LIVE_SECONDS, summary  # video and audio, one each per 2 s
    for r in media:
        assert r["status"] == 200, r
        assert "regional-1" in r["cacheStatus"] and "edge-1" in r["cacheStatus"], r


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_player_opened_while_the_channel_starts_waits_and_plays(
    chromium, dashjs_server, aiohttp_server, tmp_path
):
    """The page opened while the channel's encoder is down (killed: its MPD a 503 +
    Retry-After until the restarted ffmpeg wrote a new one, 2 s after a second crash):
    it asks again as told, then plays with no error. dash.js alone gives up after its
    own three retries 0.5 s apart ("manifest.mpd is not available")."""
    library = tmp_path / "library"
    library.mkdir()
    settings = OriginSettings(
        library=str(library), port=0, admin_port=0, live=("sports",), live_ladder="144:150k"
    )
    origin = await aiohttp_server(make_origin_app(settings))
    regional = await aiohttp_server(
        make_regional_app(regional_settings("regional-1", url_of(origin)))
    )
    edge_kw = {"cors_origin": "*", "player_dashjs_url": url_of(dashjs_server) + "/dash.all.min.js"}
    edge = url_of(
        await aiohttp_server(make_edge_app(edge_settings("edge-1", url_of(regional), **edge_kw)))
    )
    encoder = origin.app[LIVE_KEY].encoders["sports"]
    for kill in (1, 2):  # the second restart waits 2 s: longer than dash.js's own retries
        await _first_mpd(encoder.run_dir)
        assert encoder._proc is not None
        os.kill(encoder._proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        # the first kill: until ffmpeg runs again; the second: while it is down
        while not (encoder.restarts == kill and encoder.running == (kill == 1)):
            assert time.monotonic() < deadline, (kill, encoder)
            await asyncio.sleep(0.02)
    page = await chromium.new_page()
    await page.goto(edge + "/player/?src=/live/sports/manifest.mpd")
    with contextlib.suppress(PlaywrightTimeout):  # the asserts below say what went wrong
        await page.wait_for_function(
            "() => tiercdnPlayer.startedAt !== null || tiercdnPlayer.errors.length > 0",
            timeout=40_000,
        )
    state = await page.evaluate("() => window.tiercdnPlayer")
    await page.close()
    print(json.dumps({k: state.get(k) for k in ("unavailable", "startupMs", "errors")}))
    assert state["unavailable"] >= 1, state["unavailable"]  # it was seen starting
    assert state["errors"] == [] and state["startedAt"] is not None, state["errors"]
