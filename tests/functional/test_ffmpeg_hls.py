"""A real HLS client (ffmpeg's hls demuxer) plays the sample through edge → regional → origin.

ffmpeg reads ``master.m3u8`` from the edge, follows every variant's media
playlist (EXT-X-MAP init, fMP4 segments) and decodes every frame. Then its DASH
client reads the MPD: the segments are the same files under the same URLs, so
the origin is never asked for one again.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import pytest

from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from tests.helpers import SAMPLE_SECONDS, OriginLog, url_of

pytestmark = pytest.mark.slow

FPS = 30  # the sample's frame rate (FRAME-RATE in master.m3u8)
SEGMENT = re.compile(r"/sample/(init-\w+\.mp4|chunk-\w+-\d+\.m4s)")


async def ffmpeg(*args: str, seconds: float = 60) -> tuple[int, str, str]:
    """Run the bundled ffmpeg; its exit code, stdout and stderr."""
    argv = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", *args]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(seconds):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def hls_chain(aiohttp_server: Any, start_node: Any, sample_library: Path):
    """origin → regional → edge, with what the origin and the edge each answered."""
    origin_log, edge_log = OriginLog(), OriginLog()
    app = make_origin_app(OriginSettings(library=str(sample_library), port=0, admin_port=0))
    app.middlewares.append(origin_log.middleware)
    origin = await aiohttp_server(app)
    regional = await start_node("regional-1", url_of(origin))
    edge = await start_node("edge-1", url_of(regional), middlewares=[edge_log.middleware])
    return url_of(edge), origin_log, edge_log


@pytest.mark.timeout(90)
async def test_ffmpeg_hls_demuxer_decodes_master_playlist_through_the_chain(hls_chain):
    """ffmpeg's HLS client decodes every frame of every variant and the audio from the
    edge, exit 0 and no error; each segment reaches the origin once; ffmpeg's DASH client
    then finds them all cached (one cache object whichever protocol named it)."""
    edge, origin_log, edge_log = hls_chain
    code, out, err = await ffmpeg(
        "-i", edge + "/sample/master.m3u8", "-map", "0", "-f", "framemd5", "-"
    )  # fmt: skip
    assert code == 0 and err.strip() == "", err[-2000:]

    # framemd5: "stream, dts, pts, duration, size, hash" per decoded frame
    frames = Counter(
        int(line.split(",")[0]) for line in out.splitlines() if line and not line.startswith("#")
    )
    types = dict(re.findall(r"#media_type (\d+): (\w+)", out))
    video = [frames[int(i)] for i, kind in types.items() if kind == "video"]
    audio = [frames[int(i)] for i, kind in types.items() if kind == "audio"]
    print(f"\nffmpeg hls: video frames per variant {video}, audio frames {audio}")
    assert len(video) == 2, types  # both rungs of the sample's ladder
    assert all(n >= (SAMPLE_SECONDS - 0.5) * FPS for n in video), video
    assert audio and all(n > 0 for n in audio), audio

    asked = [(path, status) for _, path, status in edge_log.seen]
    assert all(status in (200, 206) for _, status in asked), asked  # ffmpeg asks bytes=0-
    paths = {path for path, _ in asked}
    assert {"/sample/master.m3u8", "/sample/media_0.m3u8", "/sample/media_1.m3u8"} <= paths
    segments = {p for p in paths if SEGMENT.fullmatch(p)}
    assert len([p for p in segments if p.endswith(".m4s")]) >= 3 * (SAMPLE_SECONDS // 2)
    assert all(origin_log.count(p) == 1 for p in segments), origin_log.seen

    # The MPD names the very same segment URLs: ffmpeg's DASH client finds them cached.
    before = len(origin_log.seen)
    code, _, err = await ffmpeg(
        "-i", edge + "/sample/manifest.mpd", "-t", "3", "-map", "0", "-f", "null", "-"
    )  # fmt: skip
    assert code == 0, err[-2000:]
    dash_paths = [path for _, path, _ in edge_log.seen[len(asked) :]]
    assert segments & set(dash_paths), dash_paths
    again = [path for _, path, _ in origin_log.seen[before:] if SEGMENT.fullmatch(path)]
    assert again == [], again
