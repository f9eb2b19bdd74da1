"""The viewers load test's pure HLS parts: playlists -> the viewer's ladder and segment
list (the same files as the MPD's), protocol plans, titles, origin requests per object."""

from __future__ import annotations

import pytest

from loadtest.dashclient import dash_tracks
from loadtest.hlsclient import hls_track, segment_clock, variant_label, variant_ladder
from loadtest.player import Request, ViewerLog, plan_protocols, plan_viewers
from loadtest.titles import Title, grouped_titles, listed_titles
from loadtest.viewerreport import origin_objects, targets
from shared.dash import parse_mpd
from shared.hls import MediaPlaylist, Multivariant, parse_playlist

MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="other",DEFAULT=NO,URI="media_9.m3u8"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="main",DEFAULT=YES,URI="media_2.m3u8"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="elsewhere",NAME="x",DEFAULT=YES,URI="media_8.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=400000,RESOLUTION=320x180,AUDIO="aud"
media_1.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=250000,RESOLUTION=160x90,AUDIO="aud"
media_0.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=450000,RESOLUTION=320x180,AUDIO="aud"
media_1.m3u8
"""


def media(rep: int, durations: tuple[float, ...] = (2.0, 2.0, 2.0), end: bool = True) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2"]
    lines += ["#EXT-X-MEDIA-SEQUENCE:1", "#EXT-X-PLAYLIST-TYPE:VOD"]
    lines.append(f'#EXT-X-MAP:URI="init-{rep}.mp4"')
    for n, d in enumerate(durations, 1):
        lines += [f"#EXTINF:{d:.6f},", f"chunk-{rep}-{n:05d}.m4s"]
    return "\n".join([*lines, *(["#EXT-X-ENDLIST"] if end else [])]) + "\n"


# the same title as an MPD: reps 0 and 1 video, 2 audio, 3 segments of 2 s
MPD = b"""<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT6S">
  <Period id="0" start="PT0S">
    <AdaptationSet contentType="video">
      <Representation id="0" bandwidth="100000" width="160" height="90">
        <SegmentTemplate timescale="1000000" duration="2000000"
          initialization="init-$RepresentationID$.mp4"
          media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      </Representation>
      <Representation id="1" bandwidth="200000" width="320" height="180">
        <SegmentTemplate timescale="1000000" duration="2000000"
          initialization="init-$RepresentationID$.mp4"
          media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      </Representation>
    </AdaptationSet>
    <AdaptationSet contentType="audio">
      <Representation id="2" bandwidth="128000">
        <SegmentTemplate timescale="1000000" duration="2000000"
          initialization="init-$RepresentationID$.mp4"
          media="chunk-$RepresentationID$-$Number%05d$.m4s" startNumber="1"/>
      </Representation>
    </AdaptationSet>
  </Period>
</MPD>"""


def multivariant(text: str = MASTER) -> Multivariant:
    playlist = parse_playlist(text, "/t/master.m3u8")
    assert isinstance(playlist, Multivariant)
    return playlist


def media_playlist(text: str, path: str) -> MediaPlaylist:
    playlist = parse_playlist(text, path)
    assert isinstance(playlist, MediaPlaylist)
    return playlist


def test_variant_ladder_sorts_by_bandwidth_and_finds_the_default_audio() -> None:
    """Rank 0 is the lowest BANDWIDTH, one rung per media playlist; the audio is the
    DEFAULT rendition of the lowest variant's group."""
    video, audio = variant_ladder(multivariant())
    assert [(v.uri, v.bandwidth) for v in video] == [
        ("/t/media_0.m3u8", 250_000),
        ("/t/media_1.m3u8", 400_000),
    ]
    assert audio is not None and (audio.name, audio.uri) == ("main", "/t/media_2.m3u8")
    assert [variant_label(v) for v in video] == ["90p 250 kb/s", "180p 400 kb/s"]


@pytest.mark.parametrize(
    "text",
    [
        MASTER.replace(',AUDIO="aud"', ""),  # audio muxed into the variants
        MASTER.replace(',URI="media_2.m3u8"', "").replace(',URI="media_9.m3u8"', ""),
    ],
    ids=["no audio group", "renditions without a URI"],
)
def test_variant_ladder_without_a_separate_audio_playlist(text: str) -> None:
    video, audio = variant_ladder(multivariant(text))
    assert len(video) == 2 and audio is None


def test_variant_ladder_refuses_a_playlist_without_variants() -> None:
    with pytest.raises(ValueError, match="no variant"):
        variant_ladder(Multivariant("/t/master.m3u8", ()))


def test_hls_track_is_the_init_and_segments_in_order() -> None:
    """EXT-X-MAP is the init segment; URIs resolve against the playlist's folder."""
    track = hls_track(media_playlist(media(1), "/t/media_1.m3u8"), "180p", 400_000)
    assert (track.label, track.bandwidth, track.init) == ("180p", 400_000, "/t/init-1.mp4")
    assert track.segments == tuple(f"/t/chunk-1-{n:05d}.m4s" for n in (1, 2, 3))


def test_hls_and_dash_name_the_same_segment_files() -> None:
    """The viewer's tracks from the playlists are the MPD's, file for file: one cache
    object per segment whichever protocol asks."""
    video, audio, clock = dash_tracks(parse_mpd(MPD, "/t/manifest.mpd"))
    for rep in (0, 1):
        hls = hls_track(media_playlist(media(rep), f"/t/media_{rep}.m3u8"), "", 0)
        assert (hls.init, hls.segments) == (video[rep].init, video[rep].segments)
    sound = hls_track(media_playlist(media(2), "/t/media_2.m3u8"), "", 0)
    assert audio is not None and (sound.init, sound.segments) == (audio.init, audio.segments)
    assert segment_clock(media_playlist(media(0), "/t/media_0.m3u8"), 3) == clock


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (media(0, end=False), "live"),
        (media(0, durations=()), "no segment"),
        (
            media(0).replace(
                "#EXTINF:2.000000,\nchunk-0-00002",
                "#EXTINF:2.0,\n#EXT-X-BYTERANGE:100@0\nchunk-0-00002",
            ),
            "byte-range",
        ),
    ],  # fmt: skip
    ids=["live", "empty", "byte ranges"],
)
def test_hls_track_refuses_what_a_vod_viewer_cannot_play(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        hls_track(media_playlist(text, "/t/media_0.m3u8"), "", 0)


def test_segment_clock_adds_up_extinf() -> None:
    playlist = media_playlist(media(0, durations=(2.0, 1.5, 2.5)), "/t/media_0.m3u8")
    assert segment_clock(playlist, 3) == [0.0, 2.0, 3.5, 6.0]
    assert segment_clock(playlist, 2) == [0.0, 2.0, 3.5]
    with pytest.raises(ValueError):
        segment_clock(playlist, 4)
    zero = media_playlist(media(0, durations=(2.0, 0.0)), "/t/media_0.m3u8")
    with pytest.raises(ValueError):
        segment_clock(zero, 2)


@pytest.mark.parametrize("viewers", [0, 1, 7, 200])
def test_plan_protocols_mix_is_half_and_half_and_seeded(viewers: int) -> None:
    mixed = plan_protocols("mix", viewers, seed=3)
    assert mixed.count("hls") == viewers // 2 and mixed.count("dash") == viewers - viewers // 2
    assert mixed == plan_protocols("mix", viewers, seed=3)
    assert plan_protocols("hls", viewers, seed=3) == ["hls"] * viewers


def test_plan_viewers_mix_keeps_the_dash_plans_and_names_each_protocols_manifest() -> None:
    """Titles, offsets and links are those of a DASH run of the same seed; an HLS
    viewer gets its title's multivariant playlist."""
    titles = [Title(f"/t{i}/manifest.mpd", f"/t{i}/master.m3u8") for i in range(4)]
    kw = {"ramp": 10.0, "alpha": 1.0, "links": (1e6, 8e6), "seed": 5}
    dash = plan_viewers("steady", 40, titles, **kw)  # type: ignore[arg-type]
    mix = plan_viewers("steady", 40, titles, protocol="mix", **kw)  # type: ignore[arg-type]
    assert [(p.offset, p.link_bps) for p in dash] == [(p.offset, p.link_bps) for p in mix]
    for d, m in zip(dash, mix, strict=True):
        want = (
            d.manifest
            if m.protocol == "dash"
            else d.manifest.replace("manifest.mpd", "master.m3u8")
        )
        assert m.manifest == want
    assert sum(p.protocol == "hls" for p in mix) == 20


def test_plan_viewers_refuses_a_title_without_the_protocol() -> None:
    with pytest.raises(ValueError, match="no hls manifest"):
        plan_viewers("steady", 4, [Title("/t/manifest.mpd", None)], ramp=1.0, alpha=1.0,
                     links=None, seed=1, protocol="mix")  # fmt: skip


def test_titles_from_a_listing_and_from_paths() -> None:
    """The origin's listing names both manifests; paths given by hand group by folder."""
    listing = [
        {"manifest": "/a/manifest.mpd", "hls": "/a/master.m3u8"},
        {"manifest": "/b/manifest.mpd"},
        {"name": "live", "hls": "/live/x.m3u8"},
    ]
    assert listed_titles(listing) == [
        Title("/a/manifest.mpd", "/a/master.m3u8"),
        Title("/b/manifest.mpd", None),
    ]
    paths = ["/a/manifest.mpd", "/b/master.m3u8", "/a/master.m3u8", "/a/other.mpd"]
    assert grouped_titles(paths) == [
        Title("/a/manifest.mpd", "/a/master.m3u8"),
        Title(None, "/b/master.m3u8"),
    ]


def _log(protocol: str, *paths: str) -> ViewerLog:
    log = ViewerLog("/t/m", protocol)
    for p in paths:
        kind = "init" if "init" in p else "playlist" if p.endswith(".m3u8") else "video"
        log.requests.append(Request(0.0, kind, 0, 0.01, 0.02, 100, "", p))
    return log


def test_origin_objects_by_who_asked() -> None:
    """Objects asked for by DASH only, HLS only and both, each with its origin requests;
    manifests counted apart."""
    logs = [
        _log("dash", "/t/init-0.mp4", "/t/a.m4s", "/t/d.m4s"),
        _log("hls", "/t/master.m3u8", "/t/init-0.mp4", "/t/a.m4s", "/t/h.m4s"),
    ]
    counts = {"/t/init-0.mp4": {200: 1}, "/t/a.m4s": {200: 2}, "/t/d.m4s": {200: 1},
              "/t/master.m3u8": {200: 1}, "/t/media_0.m3u8": {200: 1},
              "/t/manifest.mpd": {200: 1}}  # fmt: skip
    found = origin_objects(logs, counts)
    assert {k: (v["objects"], v["requests"], v["max_per_object"]) for k, v in found.items()
            if k != "manifests"} == {
        "dash_only": (1, 1, 1), "hls_only": (1, 0, 0), "both": (2, 3, 2), "all": (4, 4, 2),
    }  # fmt: skip
    assert found["all"]["objects_over_one"] == 1 and found["all"]["objects_missing"] == 1
    assert found["manifests"] == {"mpd": 1, "playlists": 2}
    summary = {"scenario": "steady", "requests": {"errors": 0}, "origin_objects": found}
    assert [g["pass"] for g in targets(summary)] == [True, False]
    assert [g["pass"] for g in targets({**summary, "scenario": "chaos"})] == [True, None]
