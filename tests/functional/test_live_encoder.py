"""A live channel's encoder: the real bundled ffmpeg, in real time, for a few seconds."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from origin.app import LIVE_KEY, make_app
from origin.live import LiveEncoder, LiveSpec, SegmentState, encoder_args, segment_state
from origin.packager import Rendition
from origin.settings import OriginSettings

pytestmark = pytest.mark.slow

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
TIME_URL = "http://127.0.0.1:9/time"
SPEC = LiveSpec("sports", TIME_URL, ladder=(Rendition(144, 150_000),), window=5)


async def _until(check: Callable[[], object], seconds: float = 15.0) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds}s")


def test_encoder_args_without_a_clock_draw_no_text(tmp_path: Path) -> None:
    args = encoder_args(LiveSpec("x", TIME_URL, clock=False), tmp_path, ffmpeg="ffmpeg")
    assert "-re" in args and "-ldash" in args and args[-1] == str(tmp_path / "manifest.mpd")
    assert not any("drawtext" in a for a in args)


async def test_live_encoder_writes_a_low_latency_dynamic_presentation(tmp_path: Path) -> None:
    """A dynamic LL-DASH MPD; a segment grows as ``.tmp`` chunk by chunk, then is complete;
    a killed ffmpeg is restarted into a new run folder; stop leaves no ffmpeg behind."""
    encoder = LiveEncoder(SPEC, tmp_path / "sports")
    await encoder.start()
    try:
        first = encoder.run_dir
        assert first is not None
        segment = first / "chunk-0-00002.m4s"
        growing = segment.with_name(segment.name + ".tmp")
        await _until(lambda: segment_state(segment) is SegmentState.GROWING)
        sizes = [growing.stat().st_size]
        await _until(lambda: not growing.exists() or growing.stat().st_size > sizes[0])
        await _until(lambda: segment_state(segment) is SegmentState.COMPLETE)
        assert segment.stat().st_size > sizes[0]  # it grew before it was complete
        assert segment_state(first / "chunk-0-99999.m4s") is SegmentState.ABSENT

        mpd = first / "manifest.mpd"
        await _until(lambda: b"</MPD>" in mpd.read_bytes())
        root = ET.fromstring(mpd.read_bytes())
        assert root.get("type") == "dynamic" and root.get("availabilityStartTime")
        depth = root.get("timeShiftBufferDepth", "")  # the segments so far, up to the window
        assert depth.startswith("PT") and 0 < float(depth[2:-1]) <= 10
        assert root.find("d:ServiceDescription/d:Latency", NS).get("target") == "3000"  # type: ignore[union-attr]
        assert root.find("d:UTCTiming", NS).get("value") == TIME_URL  # type: ignore[union-attr]
        templates = root.findall(".//d:SegmentTemplate", NS)
        assert len(templates) == 2  # video, audio
        for template in templates:
            assert template.get("availabilityTimeComplete") == "false"
            assert float(template.get("availabilityTimeOffset", "0")) > 0
            assert "$Number" in template.get("media", "")

        assert encoder._proc is not None
        os.kill(encoder._proc.pid, signal.SIGKILL)
        await _until(lambda: encoder.restarts == 1 and encoder.running)
        assert encoder.run_dir != first  # numbering starts again: never the same URLs
        pid = encoder._proc.pid
    finally:
        await encoder.stop()
    assert not encoder.running and not _alive(pid)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


# --- the origin serving a live channel -------------------------------------------------


async def test_origin_serves_a_live_channel(aiohttp_server, http, tmp_path: Path) -> None:
    """``--live sports``: the MPD (its run's BaseURL, max-age of half a segment), a growing
    segment sent chunked before it is complete and whole after, complete segments
    immutable, ``/time``, the listing; bad paths and future segments are 404s."""
    settings = OriginSettings(
        library=str(tmp_path), port=0, admin_port=0, live=("sports",), live_ladder="144:150k"
    )
    server = await aiohttp_server(make_app(settings))
    base = f"http://127.0.0.1:{server.port}"
    channels = server.app[LIVE_KEY]
    encoder = channels.encoders["sports"]

    async def manifest() -> str:
        async with http.get(f"{base}/live/sports/manifest.mpd") as r:
            if r.status == 503:
                assert r.headers["Retry-After"] == "1"
                return ""
            assert r.status == 200 and r.headers["Cache-Control"] == "public, max-age=1"
            text = await r.text()
            return text if "$Number" in text else ""

    for _ in range(150):  # the encoder's first MPD: within 15 s
        if text := await manifest():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no live MPD within 15 s")
    run = encoder.run_dir
    assert run is not None
    root = ET.fromstring(text)
    assert root.get("type") == "dynamic"
    assert root.find("d:BaseURL", NS).text == f"{run.name}/"  # type: ignore[union-attr]
    assert root.get("suggestedPresentationDelay") == "PT3S"  # the latency target, for ffmpeg

    segment = run / "chunk-0-00002.m4s"
    await _until(lambda: segment_state(segment) is SegmentState.GROWING)
    url = f"{base}/live/sports/{run.name}/{segment.name}"
    async with http.get(url) as r:
        assert r.status == 200 and "Content-Length" not in r.headers
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert "immutable" in r.headers["Cache-Control"]
        first = await r.content.readany()  # before the segment is complete
        assert first and segment_state(segment) is SegmentState.GROWING
        body = first + await r.read()
    assert body == segment.read_bytes()  # the whole segment, as it ended

    async with http.get(url) as r:  # complete now: a plain file
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(body)
    async with http.get(f"{base}/live/sports/{run.name}/manifest.mpd") as r:
        assert r.status == 404  # it changes: never served as an immutable file
    async with http.get(f"{base}/time") as r:
        assert r.headers["Cache-Control"] == "no-store"
        assert abs(datetime.datetime.fromisoformat(await r.text()).timestamp() - time.time()) < 5
    async with http.get(f"{base}/") as r:
        entries = await r.json()
    assert not any("live/" in t["name"] for t in entries)  # a run's folder is no VOD title
    listed = [t for t in entries if t.get("live")]
    assert listed == [
        {
            "name": "sports",
            "live": True,
            "manifest": "/live/sports/manifest.mpd",
            "hls": "/live/sports/master.m3u8",
            "running": True,
            "restarts": 0,
        }
    ]
    soon = int(segment.name[8:13]) + 2  # two segments ahead: a few seconds away
    async with http.get(f"{base}/live/sports/{run.name}/chunk-0-{soon:05d}.m4s") as r:
        assert r.status == 404
        cc = r.headers["Cache-Control"]  # never past the moment it can exist
        assert cc == "no-store" or (cc.startswith("public, max-age=") and int(cc[16:]) <= 5), cc
    async with http.get(f"{base}/live/sports/{run.name}/chunk-0-99999.m4s") as r:
        assert r.status == 404  # far ahead: its 404 may be kept until then
        assert int(r.headers["Cache-Control"].removeprefix("public, max-age=")) > 100_000
    os.kill(encoder._proc.pid, signal.SIGKILL)  # a dead encoder: 503s until it is back
    await _until(lambda: not encoder.running, 5)
    for path in ("manifest.mpd", f"{run.name}/chunk-0-{soon + 3:05d}.m4s"):
        async with http.get(f"{base}/live/sports/{path}") as r:
            assert r.status == 503 and int(r.headers["Retry-After"]) >= 1, path
            assert r.headers["Cache-Control"] == "no-store"
    async with http.get(url) as r:  # a complete segment of the old run is still whole
        assert r.status == 200 and await r.read() == body
    await _until(lambda: encoder.running and encoder.availability_start(), 15)
    assert encoder.run_dir is not None and encoder.run_dir != run
    new = encoder.run_dir.name
    for bad in (
        f"/live/sports/{run.name}/{segment.name}.tmp",
        f"/live/sports/{run.name}/../../etc/passwd",
        f"/live/sports/%2e%2e/{segment.name}",
        "/live/other/manifest.mpd",
    ):
        async with http.get(base + bad) as r:
            assert r.status in (400, 404), bad
            assert "no-store" in r.headers.get("Cache-Control", ""), bad
    for gone in (
        url,  # the first run's segment 2
        f"{base}/live/sports/0/chunk-0-00001.m4s",
        f"{base}/live/sports/{new}/chunk-0-00000.m4s",
    ):
        async with http.get(gone) as r:
            assert r.status == 404, gone  # an earlier run's, or before the first: for good
            assert r.headers["Cache-Control"] == "public, max-age=60", gone


async def test_a_growing_live_segment_streams_through_regional_and_edge(
    aiohttp_server, start_node, http, tmp_path: Path
) -> None:
    """Through edge -> regional -> origin, a segment still being encoded reaches two
    viewers chunk by chunk (their first bytes before it is complete), whole; it is
    stored when complete: the next request is an edge hit."""
    settings = OriginSettings(
        library=str(tmp_path), port=0, admin_port=0, live=("sports",), live_ladder="144:150k"
    )
    origin = await aiohttp_server(make_app(settings))
    regional = await start_node("regional-1", f"http://127.0.0.1:{origin.port}")
    edge = await start_node("edge-1", f"http://127.0.0.1:{regional.port}", cors_origin="*")
    encoder = origin.app[LIVE_KEY].encoders["sports"]
    await _until(lambda: encoder.run_dir is not None)
    run = encoder.run_dir
    assert run is not None
    segment = run / "chunk-0-00002.m4s"
    await _until(lambda: segment_state(segment) is SegmentState.GROWING)
    url = f"http://127.0.0.1:{edge.port}/live/sports/{run.name}/{segment.name}"

    async def view() -> tuple[bool, bytes]:
        async with http.get(url) as r:
            assert r.status == 200
            first = await r.content.readany()
            early = segment_state(segment) is SegmentState.GROWING
            return early, first + await r.read()

    results = await asyncio.gather(view(), view())
    whole = segment.read_bytes()
    assert [body == whole for _, body in results] == [True, True]
    assert all(early for early, _ in results), results  # chunks before the end
    async with http.get(url) as r:
        assert await r.read() == whole
        assert "edge-1; hit" in r.headers["Cache-Status"]
