"""The playlist index, pure (``shared.hls.index`` through ``shared.dash.SegmentIndex``):
renditions ranked by BANDWIDTH, segments classified and named next as listed, bounded
LRU memory, and odd or garbage playlists that teach what they can and never raise."""

from __future__ import annotations

import random

import pytest

from shared.dash import ContentKind, SegmentIndex, SegmentKind, is_manifest
from shared.hls import (
    Listed,
    MediaPlaylist,
    Multivariant,
    PlaylistIndex,
    media_playlists,
    parse_playlist,
    segment_paths,
)
from shared.hls.index import MAX_RENDITIONS
from shared.policy.shedding import Priority, priority_of

pytestmark = pytest.mark.timeout(30)

MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="en",DEFAULT=YES,URI="media_a.m3u8"
#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="sub",NAME="en",URI="subs/en.m3u8"
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="in-band"
#EXT-X-STREAM-INF:BANDWIDTH=2000000,RESOLUTION=1280x720,AUDIO="aud"
media_hi.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION=320x180,AUDIO="aud"
media_lo.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,AUDIO="aud"
media_mid.m3u8
"""


def media(name: str, first: int = 1, count: int = 4, *, sequence: int = 1, end: bool = True) -> str:
    """A media playlist of ``count`` 2 s segments ``<name>-<n>.m4s`` from ``first``."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:2"]
    lines += [f"#EXT-X-MEDIA-SEQUENCE:{sequence}", f'#EXT-X-MAP:URI="init-{name}.mp4"']
    for n in range(first, first + count):
        lines += ["#EXTINF:2.0,", f"{name}-{n}.m4s"]
    return "\n".join([*lines, *(["#EXT-X-ENDLIST"] if end else [])]) + "\n"


def multivariant(text: str, path: str) -> Multivariant:
    parsed = parse_playlist(text, path)
    assert isinstance(parsed, Multivariant)
    return parsed


def media_playlist(text: str, path: str) -> MediaPlaylist:
    parsed = parse_playlist(text, path)
    assert isinstance(parsed, MediaPlaylist)
    return parsed


def learned(*playlists: tuple[str, str], index: SegmentIndex | None = None) -> SegmentIndex:
    index = SegmentIndex() if index is None else index
    for path, text in playlists:
        assert index.learn(path, text.encode()) is not None, path
    return index


TITLE = (
    ("/t/master.m3u8", MASTER),
    ("/t/media_lo.m3u8", media("lo")),
    ("/t/media_mid.m3u8", media("mid")),
    ("/t/media_hi.m3u8", media("hi")),
    ("/t/media_a.m3u8", media("a")),
)


def test_classify_names_rendition_rank_by_bandwidth_and_media_sequence_number() -> None:
    """Variants rank by BANDWIDTH (0 = lowest) among all variants; the number of a
    segment is the playlist's media sequence number plus its position."""
    index = learned(*TITLE)
    for name, rank, bandwidth in (("lo", 0, 300_000), ("mid", 1, 900_000), ("hi", 2, 2_000_000)):
        info = index.classify(f"/t/{name}-3.m4s")
        assert info is not None
        assert (info.kind, info.mpd_path, info.number) == (
            SegmentKind.MEDIA,
            f"/t/media_{name}.m3u8",
            3,
        )
        rep = info.representation
        assert (rep.rank, rep.ranks, rep.bandwidth, rep.kind) == (
            rank,
            3,
            bandwidth,
            ContentKind.VIDEO,
        )
    assert index.classify("/t/media_hi.m3u8") is None  # a playlist is not a segment
    assert index.classify("/t/hi-9.m4s") is None  # not listed


def test_classify_gives_the_init_of_ext_x_map() -> None:
    """The EXT-X-MAP URI is its rendition's INIT segment, with no number."""
    info = learned(*TITLE).classify("/t/init-mid.mp4")
    assert info is not None
    assert (info.kind, info.number, info.representation.rank) == (SegmentKind.INIT, None, 1)


def test_audio_and_subtitle_renditions_are_rank_0_of_1() -> None:
    """EXT-X-MEDIA with a URI: a single-rung set (BASE priority); without a URI: nothing."""
    index = learned(*TITLE, ("/t/subs/en.m3u8", media("sub")))
    audio = index.classify("/t/a-1.m4s")
    subs = index.classify("/t/subs/sub-1.m4s")
    assert audio is not None and subs is not None
    assert (audio.representation.kind, audio.representation.rank) == (ContentKind.AUDIO, 0)
    assert (subs.representation.kind, subs.representation.ranks) == (ContentKind.TEXT, 1)
    assert (
        len(media_playlists(multivariant(MASTER, "/t/master.m3u8"))) == 5
    )  # three variants, audio, subtitles


def test_shedding_priority_follows_bandwidth() -> None:
    """Top rung first, bottom rung and audio last of the media, init and playlists kept."""
    index = learned(*TITLE)
    assert priority_of("/t/hi-1.m4s", index.classify("/t/hi-1.m4s")) is Priority.MEDIA_TOP
    assert priority_of("/t/mid-1.m4s", index.classify("/t/mid-1.m4s")) is Priority.MEDIA_MID
    assert priority_of("/t/lo-1.m4s", index.classify("/t/lo-1.m4s")) is Priority.MEDIA_BASE
    assert priority_of("/t/a-1.m4s", index.classify("/t/a-1.m4s")) is Priority.MEDIA_BASE
    assert priority_of("/t/init-hi.mp4", index.classify("/t/init-hi.mp4")) is Priority.INIT
    for path in ("/t/master.m3u8", "/t/media_hi.m3u8?_HLS_msn=3&_HLS_part=1"):
        assert priority_of(path, index.classify(path)) is Priority.MANIFEST


def test_rank_ties_keep_document_order_and_a_repeated_uri_counts_once() -> None:
    """Equal BANDWIDTH: the earlier variant ranks lower; the same URI twice is one rung."""
    text = "#EXTM3U\n" + "".join(
        f"#EXT-X-STREAM-INF:BANDWIDTH={bw}\n{uri}\n"
        for bw, uri in ((500, "b.m3u8"), (500, "a.m3u8"), (900, "b.m3u8"), (100, "c.m3u8"))
    )
    index = PlaylistIndex()
    index.learn("/x/master.m3u8", text)
    index.learn("/x/b.m3u8", media("b"))
    index.learn("/x/a.m3u8", media("a"))
    b, a = index.find("/x/b-1.m4s"), index.find("/x/a-1.m4s")
    assert a is not None and b is not None
    assert a.representation is not None and b.representation is not None
    assert (b.representation.rank, a.representation.rank, a.representation.ranks) == (1, 2, 3)
    assert b.representation.bandwidth == 500  # its first listing


def test_a_media_playlist_without_its_multivariant_is_unknown_but_still_prefetched() -> None:
    """No multivariant seen: classify says None (unknown priority); upcoming still names
    the next listed segments, and the media playlist counts as a title."""
    index = learned(("/t/media_hi.m3u8", media("hi")))
    assert index.classify("/t/hi-1.m4s") is None
    assert index.next_segments("/t/hi-1.m4s", 2) == ["/t/hi-2.m4s", "/t/hi-3.m4s"]
    assert index.hls.find("/t/hi-1.m4s") == Listed("/t/media_hi.m3u8", 1, None)
    assert not index.is_media_playlist("/t/media_hi.m3u8")
    learned(("/t/master.m3u8", MASTER), index=index)
    assert index.is_media_playlist("/t/media_hi.m3u8?_HLS_msn=4")
    assert not index.is_media_playlist("/t/master.m3u8")
    info = index.classify("/t/hi-1.m4s")
    assert info is not None and info.representation.rank == 2


def test_upcoming_names_the_next_listed_segments_and_stops_at_the_end() -> None:
    """The next k listed, none after the last; an init has none; a query is ignored."""
    index = learned(*TITLE)
    assert index.upcoming("/t/lo-1.m4s?token=x", 2) == [
        ("/t/lo-2.m4s", None),
        ("/t/lo-3.m4s", None),
    ]
    assert index.next_segments("/t/lo-3.m4s", 5) == ["/t/lo-4.m4s"]
    assert index.next_segments("/t/lo-4.m4s", 5) == []
    assert index.next_segments("/t/init-lo.mp4", 5) == []
    assert index.next_segments("/t/lo-1.m4s", 0) == []
    assert index.next_segments("/t/nope-1.m4s", 3) == []


def test_upcoming_never_passes_a_live_playlists_edge_and_follows_its_reloads() -> None:
    """A live playlist names only what exists: nothing after its last segment until a
    reload lists more; the kept answers are dropped when a playlist is learned."""
    index = learned(("/live/v.m3u8", media("v", 10, 3, sequence=10, end=False)))
    assert index.next_segments("/live/v-12.m4s", 3) == []
    assert index.next_segments("/live/v-11.m4s", 3) == ["/live/v-12.m4s"]
    learned(("/live/v.m3u8", media("v", 11, 3, sequence=11, end=False)), index=index)
    assert index.next_segments("/live/v-12.m4s", 3) == ["/live/v-13.m4s"]
    assert index.next_segments("/live/v-10.m4s", 3) == []  # slid out of the window
    assert index.hls.find("/live/v-13.m4s") == Listed("/live/v.m3u8", 13, None)


def test_unknown_tags_are_skipped_and_the_rest_learned() -> None:
    """Tags the parser does not know (LL-HLS parts, hints, vendor tags) change nothing."""
    text = media("u").replace(
        "#EXTINF:2.0,\nu-2.m4s",
        '#EXT-X-PART:DURATION=0.5,URI="u-2.0.m4s"\n#X-VENDOR-THING:yes=1\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="u-3.0.m4s"\n#EXTINF:2.0,\nu-2.m4s',
    )
    index = learned(("/t/u.m3u8", text))
    assert index.next_segments("/t/u-1.m4s", 2) == ["/t/u-2.m4s", "/t/u-3.m4s"]
    assert index.hls.find("/t/u-2.0.m4s") is None


def test_relative_and_absolute_uris_resolve_to_paths() -> None:
    """../ and folders resolve against the playlist; a full URL keeps only its path."""
    text = (
        '#EXTM3U\n#EXT-X-MAP:URI="/abs/init.mp4"\n#EXTINF:2,\n../up/a.m4s\n'
        "#EXTINF:2,\nsub/b.m4s\n#EXTINF:2,\nhttps://cdn.example/else/c.m4s?sig=1\n"
        "#EXTINF:2,\n/root/d.m4s\n#EXT-X-ENDLIST\n"
    )
    index = learned(("/t/hls/v.m3u8", text))
    assert index.next_segments("/t/up/a.m4s", 5) == [
        "/t/hls/sub/b.m4s",
        "/else/c.m4s",
        "/root/d.m4s",
    ]
    assert index.hls.find("/abs/init.mp4") == Listed("/t/hls/v.m3u8", None, None)


def test_byte_ranges_of_one_file_name_it_once() -> None:
    """Parts of one file: found at its first listing; the next segments are other files."""
    text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:5\n" + "".join(
        f"#EXTINF:1,\n#EXT-X-BYTERANGE:1000@{1000 * i}\n{name}\n"
        for i, name in enumerate(["f.mp4", "f.mp4", "f.mp4", "g.mp4", "g.mp4", "h.mp4"])
    )
    index = learned(("/t/v.m3u8", text))
    assert index.hls.find("/t/f.mp4") == Listed("/t/v.m3u8", 5, None)
    assert index.hls.find("/t/g.mp4") == Listed("/t/v.m3u8", 8, None)
    assert index.next_segments("/t/f.mp4", 2) == ["/t/g.mp4", "/t/h.mp4"]


def test_discontinuities_keep_counting_positions() -> None:
    """EXT-X-DISCONTINUITY (an ad, a new encoder) is one more listed segment boundary."""
    text = media("d").replace(
        "#EXTINF:2.0,\nd-3.m4s", "#EXT-X-DISCONTINUITY\n#EXTINF:2.0,\nd-3.m4s"
    )
    index = learned(("/t/d.m3u8", text))
    assert index.next_segments("/t/d-2.m4s", 2) == ["/t/d-3.m4s", "/t/d-4.m4s"]
    assert index.hls.find("/t/d-4.m4s") == Listed("/t/d.m3u8", 4, None)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"#EXTM3U\n\xff\xfe\x00 not utf-8",
        b"#EXTM3U\n#EXTINF:nan,\nx.m4s\n#EXTINF:-1,\ny.m4s\n#EXT-X-MEDIA-SEQUENCE:zz\n",
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=oops\nv.m3u8\n#EXT-X-STREAM-INF:\n\n",
        b'#EXTM3U\n#EXT-X-MAP:URI=""\n#EXT-X-BYTERANGE:@\n#EXTINF:,\n\n',
        b"<?xml version='1.0'?><MPD><broken",
        b"#EXTM3U" + bytes(range(256)) * 4,
    ],
)
def test_garbage_never_raises(garbage: bytes) -> None:
    """learn gives a playlist or None and never raises; what was learned before stays."""
    index = learned(*TITLE)
    index.learn("/t/media_lo.m3u8", garbage)  # the same path as a learned playlist
    index.learn("/t/other.m3u8", garbage)
    index.classify("/t/x.m4s")
    index.next_segments("/t/x.m4s", 3)
    assert index.classify("/t/hi-1.m4s") is not None


def test_random_bytes_never_raise() -> None:
    """Random bodies that start like a playlist, seeded: learn, classify, upcoming survive."""
    rng = random.Random(14)
    alphabet = b'#EXT-X-:=,@"\n/.m4s3u8ABCDINFSTREAM0123456789 \xff'
    index = SegmentIndex()
    for i in range(300):
        body = b"#EXTM3U\n" + bytes(rng.choice(alphabet) for _ in range(rng.randrange(400)))
        index.learn(f"/r/{i % 7}.m3u8", body)
        index.classify(f"/r/{i % 5}.m4s")
        index.upcoming(f"/r/{i % 5}.m4s", 3)


def test_media_playlists_are_a_bounded_lru() -> None:
    """At most max_playlists media playlists; a find counts as a use; evicted ones forget
    their segments."""
    index = PlaylistIndex(max_playlists=2)
    index.learn("/a.m3u8", media("a"))
    index.learn("/b.m3u8", media("b"))
    assert index.find("/a-1.m4s") is not None  # a is now the most recent
    index.learn("/c.m3u8", media("c"))
    assert "/b.m3u8" not in index and "/a.m3u8" in index and "/c.m3u8" in index
    assert index.find("/b-1.m4s") is None and index.find("/init-b.mp4") is None
    assert len(index) == 2
    assert "media=2/2" in repr(index)


def test_segments_are_bounded_in_all() -> None:
    """At most max_segments paths: the oldest playlists go; one larger than the budget
    is not indexed."""
    index = PlaylistIndex(max_segments=12)
    index.learn("/a.m3u8", media("a", count=5))  # 6 paths with the init
    index.learn("/b.m3u8", media("b", count=5))
    index.learn("/c.m3u8", media("c", count=5))
    assert "/a.m3u8" not in index and index.find("/c-5.m4s") is not None
    index.learn("/d.m3u8", media("d", count=20))
    assert "/d.m3u8" not in index and index.find("/d-1.m4s") is None
    assert index.find("/c-1.m4s") is not None  # kept


def test_multivariants_are_a_bounded_lru_and_renditions_capped() -> None:
    """At most max_playlists multivariant playlists; their renditions go with them; at
    most MAX_RENDITIONS renditions per playlist."""
    index = PlaylistIndex(max_playlists=1)
    index.learn("/one/master.m3u8", MASTER)
    index.learn("/two/master.m3u8", MASTER)
    assert not index.is_media_playlist("/one/media_hi.m3u8")
    assert index.is_media_playlist("/two/media_hi.m3u8")
    huge = "#EXTM3U\n" + "".join(
        f"#EXT-X-STREAM-INF:BANDWIDTH={i}\nv{i}.m3u8\n" for i in range(MAX_RENDITIONS + 50)
    )
    index.learn("/huge/master.m3u8", huge)
    assert index.is_media_playlist(f"/huge/v{MAX_RENDITIONS - 1}.m3u8")
    assert not index.is_media_playlist(f"/huge/v{MAX_RENDITIONS}.m3u8")


def test_segment_index_counts_and_holds_playlists() -> None:
    """len and ``in`` of SegmentIndex include learned playlists (the edge's prefetch asks)."""
    index = SegmentIndex()
    assert len(index) == 0
    learned(("/t/media_lo.m3u8", media("lo")), index=index)
    assert len(index) == 1 and "/t/media_lo.m3u8" in index
    assert "PlaylistIndex(media=1/1024" in repr(index)
    assert index.learn("/t/x.m3u8", b"#EXTM3U junk \xff") is None


def test_is_manifest_knows_hls_playlists() -> None:
    """.m3u8 (any case, with a query) is a manifest, as .mpd; segments are not."""
    for path in ("/t/master.m3u8", "/t/A.M3U8", "/t/media_0.m3u8?_HLS_msn=3&_HLS_part=0"):
        assert is_manifest(path)
    for path in ("/t/chunk.m4s", "/t/m3u8", "/t/x.m3u", "/t/manifest.mpd.bak"):
        assert not is_manifest(path)
    assert is_manifest("/t/manifest.mpd") and is_manifest("/mpd.MPD?x")


def test_prewarm_paths_choose_rungs_and_seconds() -> None:
    """media_playlists: the lowest k video variants plus every audio/subtitle rendition;
    segment_paths: inits first, then segments by start within the first seconds."""
    master = multivariant(MASTER, "/t/master.m3u8")
    assert media_playlists(master, lowest=1) == [
        "/t/media_lo.m3u8",
        "/t/media_a.m3u8",
        "/t/subs/en.m3u8",
    ]
    lo, a = (media_playlist(media(n), f"/t/media_{n}.m3u8") for n in ("lo", "a"))
    assert segment_paths([lo, a], seconds=3) == [
        "/t/init-lo.mp4",
        "/t/init-a.mp4",
        "/t/lo-1.m4s",
        "/t/a-1.m4s",
        "/t/lo-2.m4s",
        "/t/a-2.m4s",
    ]
    assert len(segment_paths([lo, a])) == 10
    with pytest.raises(ValueError, match="lowest"):
        media_playlists(master, lowest=0)
    with pytest.raises(ValueError, match="seconds"):
        segment_paths([lo], seconds=float("nan"))
    with pytest.raises(ValueError, match="more than 3"):
        segment_paths([lo], limit=3)


def test_a_kept_upcoming_answer_still_counts_as_a_use() -> None:
    """upcoming answered from its kept answers touches the media playlist's LRU slot."""
    index = SegmentIndex(max_presentations=2)
    learned(("/a.m3u8", media("a")), ("/b.m3u8", media("b")), index=index)
    assert index.next_segments("/a-1.m4s", 1) == ["/a-2.m4s"]
    assert index.next_segments("/b-1.m4s", 1) == ["/b-2.m4s"]
    assert index.next_segments("/a-1.m4s", 1) == ["/a-2.m4s"]  # kept: a is the latest use
    learned(("/c.m3u8", media("c")), index=index)
    assert "/a.m3u8" in index and "/b.m3u8" not in index


def test_limits_must_be_positive() -> None:
    """A zero limit is a ValueError, not an index that forgets everything."""
    for kw in ({"max_playlists": 0}, {"max_segments": 0}):
        with pytest.raises(ValueError, match="limits"):
            PlaylistIndex(**kw)
