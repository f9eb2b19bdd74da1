"""HLS next to DASH at the origin (issue 14): the packager writes playlists over the same
segment files, the origin types and caches them, and ``GET /`` names both manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from origin.app import make_app
from origin.packager import PackagingError, Rendition, make_sample
from origin.settings import OriginSettings
from shared.hls import MediaPlaylist, Multivariant, parse_playlist


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, origin_settings: OriginSettings
) -> TestClient[Any, Any]:
    return await aiohttp_client(make_app(origin_settings))


def _playlist(folder: Path, name: str) -> Multivariant | MediaPlaylist:
    return parse_playlist((folder / name).read_bytes(), f"/sample/{name}")


def test_the_sample_has_hls_playlists_over_the_mpds_segments(sample_library: Path) -> None:
    """master.m3u8: a variant per video rung (BANDWIDTH the peak of video + audio,
    AVERAGE-BANDWIDTH, RESOLUTION, CODECS, FRAME-RATE) with one audio group; each
    media playlist names exactly the files the MPD's template names, VOD and whole."""
    folder = sample_library / "sample"
    text = (folder / "master.m3u8").read_text()
    assert "#EXT-X-VERSION:7" in text and "#EXT-X-INDEPENDENT-SEGMENTS" in text
    master = _playlist(folder, "master.m3u8")
    assert isinstance(master, Multivariant)
    (audio,) = master.renditions
    assert (audio.type, audio.uri, audio.default) == ("AUDIO", "/sample/media_2.m3u8", True)
    assert [v.uri for v in master.variants] == ["/sample/media_0.m3u8", "/sample/media_1.m3u8"]
    assert [v.resolution for v in master.variants] == [(160, 90), (320, 180)]
    for v in master.variants:
        assert v.audio == audio.group_id and v.frame_rate == pytest.approx(30.0)
        assert v.codecs is not None and v.codecs.startswith("avc1.") and "mp4a.40.2" in v.codecs
        assert v.average_bandwidth is not None and 0 < v.average_bandwidth <= v.bandwidth
    low, high = master.variants
    assert low.bandwidth < high.bandwidth
    for rep in ("0", "1", "2"):
        media = _playlist(folder, f"media_{rep}.m3u8")
        assert isinstance(media, MediaPlaylist)
        assert media.endlist and media.playlist_type == "VOD" and media.independent_segments
        assert media.map_uri == f"/sample/init-{rep}.mp4"
        files = sorted(p.name for p in folder.glob(f"chunk-{rep}-*.m4s"))
        assert [s.uri for s in media.segments] == [f"/sample/{f}" for f in files]
        assert media.target_duration >= max(round(s.duration) for s in media.segments)
        assert all(s.program_date_time is None for s in media.segments)
        assert sum(s.duration for s in media.segments) == pytest.approx(6.0, abs=0.1)


@pytest.mark.parametrize(
    ("name", "content_type", "cache_control"),
    [
        ("master.m3u8", "application/vnd.apple.mpegurl", "public, max-age=60"),
        ("media_1.m3u8", "application/vnd.apple.mpegurl", "public, max-age=60"),
        ("manifest.mpd", "application/dash+xml", "public, max-age=2"),
    ],
)
async def test_origin_serves_playlists_typed_and_long_lived(
    client: TestClient[Any, Any], name: str, content_type: str, cache_control: str
) -> None:
    """A VOD title's playlists are whole when published (EXT-X-ENDLIST): fresh for
    ``--playlist-max-age`` (60 s), the MPD keeps ``--manifest-max-age``."""
    async with client.get(f"/sample/{name}") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == content_type
        assert resp.headers["Cache-Control"] == cache_control
        assert (await resp.read()).startswith(b"#EXTM3U" if name.endswith("m3u8") else b"<?xml")


async def test_origin_lists_both_manifests_per_title(client: TestClient[Any, Any]) -> None:
    async with client.get("/") as resp:
        (sample,) = await resp.json()
    assert sample["manifest"] == "/sample/manifest.mpd"
    assert sample["hls"] == "/sample/master.m3u8"


def test_a_failed_packaging_leaves_no_playlist(tmp_path: Path) -> None:
    """A title appears whole or not at all, playlists included."""
    with pytest.raises(PackagingError):
        make_sample(tmp_path / "t", duration=-1, renditions=[Rendition(90, 100_000)])
    assert not list(tmp_path.rglob("*.m3u8"))
