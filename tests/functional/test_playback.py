"""A real DASH client (ffmpeg's dash demuxer) plays the title through edge → regional → origin."""

from __future__ import annotations

import asyncio
import subprocess

import imageio_ffmpeg
import pytest

pytestmark = pytest.mark.slow


async def test_playback_ffmpeg_dash_client_plays_through_the_chain(chain):
    """ffmpeg reads the MPD and decodes every representation from the edge without an error.

    ``-t`` stops just short of the end: ffmpeg's dash demuxer asks for one segment
    past a static presentation's last (a 404 from any server, origin included)."""
    manifest = chain.url("/sample/manifest.mpd")
    proc = await asyncio.create_subprocess_exec(
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error",
        "-i", manifest, "-t", "3", "-map", "0", "-f", "null", "-",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    assert stderr.decode().strip() == ""
    stats = chain.edge_node.counts
    assert sum(stats.values()) >= 10  # MPD, 3 init segments, every media segment
    assert chain.regional_node.counts.total() <= sum(stats.values())
