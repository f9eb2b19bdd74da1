"""A live channel through edge -> regional -> origin: what the tiers do for the live
edge's storms (a real encoder: the bundled ffmpeg in real time)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from origin.packager import SAMPLE_FPS, _ffmpeg_exe
from shared.dash import parse_mpd
from shared.engine.node import NODE
from tests.helpers import eventually

pytestmark = pytest.mark.slow


async def test_live_prefetch_never_asks_before_a_segments_availability(live_chain, http):
    """A viewer at the live edge asks for segment 2 while it is encoded; the edge's
    prefetch (depth 2) defers 3 and 4 to their availability times from the MPD
    (availabilityStartTime, segment end, availabilityTimeOffset): the origin sees each
    once, never early, and never a 404 for them."""
    log, edge, run, edge_server = await live_chain(prefetch=2)
    base = f"{edge}/live/sports"
    async with http.get(f"{base}/manifest.mpd") as r:
        assert r.status == 200
        presentation = parse_mpd(await r.read(), "/live/sports/manifest.mpd")
    (video, audio) = presentation.streams
    assert presentation.availability_start is not None and video.availability_offset > 0
    async with http.get(f"{base}/{run.name}/chunk-0-00002.m4s") as r:
        assert r.status == 200
        await r.read()
    # The MPD's times for segments 3 and 4 (index 2, 3 from startNumber 1):
    due: dict[int, float] = {}
    for n in (3, 4):
        at = presentation.available_at(video, n - video.start_number)
        assert at is not None
        due[n] = at
    paths = {n: f"/live/sports/{run.name}/chunk-0-{n:05d}.m4s" for n in due}
    await eventually(lambda: log.count(paths[4]), 15)
    for n, path in paths.items():
        (arrived, status) = next((t, s) for t, p, s in log.seen if p == path)
        assert arrived >= due[n] - 0.05, (n, arrived - due[n])  # never before (clock slack)
        assert arrived - due[n] < 1.0, (n, arrived - due[n])  # but as soon as it is due
        assert status == 200 and log.count(path) == 1
    counts = edge_server.app[NODE].metrics.prefetches
    assert counts.labels("deferred")._value.get() >= 2
    assert not any(p.endswith("chunk-1-00003.m4s") for _, p, _ in log.seen)  # no audio asked


async def test_live_storms_reach_the_origin_once_per_tier(live_chain, http):
    """300 viewers at once: polling the manifest for 3 s costs one origin request per
    max-age (1 s); a wave for a segment not yet available, one; a segment number far
    in the future, before the first or of another run, one, and then none (its 404 is
    kept at the edge); the live segment itself, one."""
    log, edge, run, edge_server = await live_chain()
    base = f"{edge}/live/sports"
    viewers = 300

    async def get(path: str) -> int:
        async with http.get(base + path) as r:
            await r.read()
            return r.status

    async def wave(path: str) -> list[int]:
        return list(await asyncio.gather(*(get(path) for _ in range(viewers))))

    started = time.monotonic()
    polls = 0
    while time.monotonic() - started < 3.0:
        assert await wave("/manifest.mpd") == [200] * viewers
        polls += 1
        await asyncio.sleep(0.25)
    manifests = log.count("/live/sports/manifest.mpd")
    assert log.regional is not None
    from_edge = log.regional.count("/live/sports/manifest.mpd")
    assert polls >= 4 and 1 <= manifests <= 5, (polls, manifests)  # ~3 s / 1 s + 1
    assert 1 <= from_edge <= 5, (polls, from_edge)
    print(f"manifest: {polls} waves of {viewers} viewers in 3 s -> {from_edge} edge->regional,")
    print(f"  {manifests} regional->origin requests")

    ahead = f"/{run.name}/chunk-0-00040.m4s"  # ~76 s ahead: its 404 lasts until then
    statuses = await asyncio.gather(wave(ahead), wave(f"/{run.name}/chunk-0-00006.m4s"))
    assert list(statuses) == [[404] * viewers] * 2
    assert log.count(f"/live/sports{ahead}") == 1
    assert log.count(f"/live/sports/{run.name}/chunk-0-00006.m4s") == 1
    assert await wave(ahead) == [404] * viewers  # from the edge's cache
    assert log.count(f"/live/sports{ahead}") == 1

    live = f"/{run.name}/chunk-0-00002.m4s"  # being encoded, or just complete
    assert await wave(live) == [200] * viewers
    assert log.count(f"/live/sports{live}") == 1 and log.regional.count(f"/live/sports{live}") == 1
    for gone in (f"/{run.name}/chunk-0-00000.m4s", "/0/chunk-0-00001.m4s"):  # never again
        assert await wave(gone) == [404] * viewers
        assert await wave(gone) == [404] * viewers
        assert log.count(f"/live/sports{gone}") == 1


async def test_ffmpeg_reads_a_live_channel_through_the_edge(live_chain, tmp_path: Path):
    """ffmpeg's own DASH client (the bundled ffmpeg) plays the dynamic MPD through edge
    and regional from the live edge: 6 s of video frames, in order, no error."""
    log, edge, run, _ = await live_chain()
    proc = await asyncio.create_subprocess_exec(
        _ffmpeg_exe(),
        *("-hide_banner", "-nostdin", "-v", "error", "-i", f"{edge}/live/sports/manifest.mpd"),
        *("-map", "0:v:0", "-t", "6", "-f", "framecrc", "-"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 45)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    frames = [line for line in out.decode().splitlines() if line and not line.startswith("#")]
    assert len(frames) >= 6 * SAMPLE_FPS - 2, len(frames)
    media = {p for _, p, _ in log.seen if p.startswith(f"/live/sports/{run.name}/chunk-0-")}
    assert len(media) >= 3  # it followed the live edge, segment after segment
