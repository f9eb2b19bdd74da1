"""A live channel as HLS next to its DASH (issue 14): sliding-window media playlists
over the very segments the MPD names, through edge -> regional -> origin."""

from __future__ import annotations

import asyncio
import re
import subprocess

import pytest

from origin.app import make_app as make_origin_app
from origin.packager import _ffmpeg_exe
from origin.settings import OriginSettings
from shared.hls import MediaPlaylist, Multivariant, parse_playlist
from tests.helpers import url_of

pytestmark = pytest.mark.slow

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


async def _playlist(http, url: str, path: str) -> tuple[Multivariant | MediaPlaylist, dict]:
    async with http.get(url) as r:
        assert r.status == 200, (url, r.status)
        assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
        return parse_playlist(await r.read(), path), dict(r.headers)


@pytest.mark.timeout(60)
async def test_live_hls_slides_over_the_dash_segments_through_the_tiers(live_chain, http):
    """master.m3u8 names the current run's media playlists; each lists complete segments
    with RFC 3339 program date-times, its window slides as the encoder goes on, it is
    fresh for half a segment; a segment fetched via HLS is then an edge hit via the
    MPD's URL (one cache object); an earlier run's playlist is a 404."""
    log, edge, run, _ = await live_chain()
    base = f"{edge}/live/sports"
    master, headers = await _playlist(http, f"{base}/master.m3u8", "/live/sports/master.m3u8")
    assert isinstance(master, Multivariant)
    assert headers["Cache-Control"] == "public, max-age=1"
    (variant,) = master.variants
    (audio,) = master.renditions
    assert variant.uri == f"/live/sports/{run.name}/media_0.m3u8"
    assert audio.uri == f"/live/sports/{run.name}/media_1.m3u8"
    assert variant.audio == audio.group_id and variant.bandwidth > 0

    async def media() -> MediaPlaylist:
        found, _ = await _playlist(http, edge + variant.uri, variant.uri)
        assert isinstance(found, MediaPlaylist)
        return found

    first = await media()
    assert first.live and first.map_uri == f"/live/sports/{run.name}/init-0.mp4"
    assert all(_RFC3339.fullmatch(s.program_date_time or "") for s in first.segments)
    for s in first.segments:  # only complete segments are named
        assert (run / s.uri.rsplit("/", 1)[1]).is_file()
    # the window slides: a later playlist names a newer last segment
    deadline = asyncio.get_running_loop().time() + 8
    later = first
    while later.segments[-1].uri == first.segments[-1].uri:
        assert asyncio.get_running_loop().time() < deadline, "the playlist did not slide"
        await asyncio.sleep(0.5)
        later = await media()
    assert later.media_sequence + len(later.segments) > first.media_sequence + len(first.segments)
    # one cache object whichever protocol names it
    segment = later.segments[-1].uri
    async with http.get(edge + segment) as r:
        assert r.status == 200
        body = await r.read()
    async with http.get(f"{edge}/live/sports/manifest.mpd") as r:
        mpd = await r.text()
    assert f"<BaseURL>{run.name}/</BaseURL>" in mpd and "chunk-$RepresentationID$" in mpd
    async with http.get(edge + segment) as r:
        assert await r.read() == body
        assert "edge-1; hit" in r.headers["Cache-Status"]
    assert log.count(segment) == 1
    async with http.get(f"{base}/0/media_0.m3u8") as r:  # no such run
        assert r.status == 404


@pytest.mark.timeout(60)
async def test_ffmpegs_hls_demuxer_reads_the_live_channel_through_the_edge(live_chain):
    """ffmpeg's own HLS client reads master.m3u8 through edge and regional and decodes
    a few seconds of frames."""
    _, edge, _, _ = await live_chain()
    argv = [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    argv += ["-i", f"{edge}/live/sports/master.m3u8", "-t", "3", "-map", "0:v:0"]
    argv += ["-f", "framemd5", "-"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 0, err.decode()[-1000:]
    frames = [line for line in out.decode().splitlines() if line and not line.startswith("#")]
    assert len(frames) >= 60, len(frames)  # 3 s at 30 fps, allowing for the first GOP


@pytest.mark.timeout(60)
async def test_the_master_playlist_waits_for_its_media_playlists(aiohttp_server, tmp_path, http):
    """At a channel's start, master.m3u8 answers 503 (Retry-After) until every media
    playlist it names can be read whole: a player never gets a master whose rendition
    is still a 503 (hls.js gives up on it)."""
    settings = OriginSettings(
        library=str(tmp_path), port=0, admin_port=0, live=("sports",), live_ladder="144:150k"
    )
    origin = await aiohttp_server(make_origin_app(settings))
    base = f"{url_of(origin)}/live/sports"
    deadline = asyncio.get_running_loop().time() + 40
    statuses: set[int] = set()
    while True:
        assert asyncio.get_running_loop().time() < deadline, statuses
        async with http.get(f"{base}/master.m3u8") as r:
            statuses.add(r.status)
            if r.status == 503:
                assert r.headers["Retry-After"] == "1"
                await asyncio.sleep(0.05)
                continue
            assert r.status == 200
            master = parse_playlist(await r.read(), "/live/sports/master.m3u8")
            break
    assert 503 in statuses  # the channel was seen starting
    assert isinstance(master, Multivariant)
    for uri in [v.uri for v in master.variants] + [x.uri for x in master.renditions if x.uri]:
        async with http.get(url_of(origin) + uri) as r:
            assert r.status == 200, uri
