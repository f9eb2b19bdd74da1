"""HLS playlists, pure (``shared.hls``): what is read from real and odd playlists, what
is skipped, and that writing then reading gives the same values back."""

from __future__ import annotations

import pytest

from shared.hls import (
    MediaPlaylist,
    Multivariant,
    Rendition,
    Segment,
    Variant,
    is_playlist,
    parse_playlist,
    render_media,
    render_multivariant,
)
from shared.hls.playlist import MAX_ENTRIES

MASTER = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="group_A1",NAME="audio_0",DEFAULT=YES,CHANNELS="2",URI="media_3.m3u8"
#EXT-X-STREAM-INF:BANDWIDTH=940000,AVERAGE-BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2",FRAME-RATE=25.000,AUDIO="group_A1"
media_1.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=330000,RESOLUTION=320x180,CODECS="avc1.64000d,mp4a.40.2",AUDIO="group_A1"
media_0.m3u8
"""

MEDIA = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:1
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-MAP:URI="init-1.mp4"
#EXTINF:2.000000,
chunk-1-00001.m4s
#EXTINF:2.000000,
chunk-1-00002.m4s
#EXTINF:1.500000,
chunk-1-00003.m4s
#EXT-X-ENDLIST
"""


def test_a_multivariant_playlist_gives_its_variants_and_audio_group() -> None:
    found = parse_playlist(MASTER, "/sample/master.m3u8")
    assert isinstance(found, Multivariant)
    assert found.independent_segments
    assert found.renditions == (
        Rendition("AUDIO", "group_A1", "audio_0", "/sample/media_3.m3u8", True, "2", None),
    )
    top, low = found.variants
    assert top == Variant(
        "/sample/media_1.m3u8",
        940000,
        800000,
        (640, 360),
        "avc1.64001e,mp4a.40.2",
        25.0,
        "group_A1",
    )
    assert (low.uri, low.bandwidth, low.average_bandwidth) == ("/sample/media_0.m3u8", 330000, None)


def test_a_media_playlist_gives_its_segments_init_and_end() -> None:
    found = parse_playlist(MEDIA.encode(), "/sample/media_1.m3u8?token=x")
    assert isinstance(found, MediaPlaylist)
    assert found.path == "/sample/media_1.m3u8"  # the query is not part of a cache path
    assert (found.target_duration, found.media_sequence) == (2, 1)
    assert found.map_uri == "/sample/init-1.mp4"
    assert [s.uri for s in found.segments] == [f"/sample/chunk-1-0000{n}.m4s" for n in (1, 2, 3)]
    assert [s.duration for s in found.segments] == [2.0, 2.0, 1.5]
    assert found.endlist and not found.live and found.playlist_type == "VOD"


def test_uris_resolve_relative_absolute_and_full_urls_to_paths() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        "#EXTINF:2,\n../other/a.m4s\n"
        "#EXTINF:2,\n/abs/b.m4s\n"
        "#EXTINF:2,\nhttps://cdn.example/full/c.m4s?sig=1\n"
        "#EXTINF:2,\nsub/d.m4s\n"
    )
    found = parse_playlist(text, "/t/hls/media.m3u8")
    assert isinstance(found, MediaPlaylist)
    assert [s.uri for s in found.segments] == [
        "/t/other/a.m4s",
        "/abs/b.m4s",
        "/full/c.m4s",
        "/t/hls/sub/d.m4s",
    ]


def test_byte_ranges_keep_the_same_file_per_part() -> None:
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        '#EXT-X-MAP:URI="all.mp4",BYTERANGE="800@0"\n'
        "#EXTINF:2,\n#EXT-X-BYTERANGE:1000@800\nall.mp4\n"
        "#EXTINF:2,\n#EXT-X-BYTERANGE:1200\nall.mp4\n"
        "#EXTINF:2,\n#EXT-X-BYTERANGE:junk\nall.mp4\n"
    )
    found = parse_playlist(text, "/t/v.m3u8")
    assert isinstance(found, MediaPlaylist)
    assert [s.byterange for s in found.segments] == [(1000, 800), (1200, None), None]
    assert {s.uri for s in found.segments} == {"/t/all.mp4"}


def test_unknown_tags_discontinuities_and_broken_lines_are_skipped() -> None:
    text = (
        "\ufeff#EXTM3U\r\n#EXT-X-TARGETDURATION:2\r\n#EXT-X-FUTURE-TAG:WHATEVER=1\r\n"
        "#EXT-X-DISCONTINUITY\r\n#EXTINF:2,title\r\na.m4s\r\n"
        "orphan.m4s\r\n"  # a URI without EXTINF
        "#EXTINF:nan,\r\nnan.m4s\r\n"  # a duration that is no number
        "#EXTINF:-1,\r\nneg.m4s\r\n"
        '#EXT-X-DATERANGE:ID="x\r\n'  # an attribute list cut short
        "#EXT-X-DISCONTINUITY\r\n#EXTINF:1.5,\r\nb.m4s\r\n"
    )
    found = parse_playlist(text.encode(), "/t/v.m3u8")
    assert isinstance(found, MediaPlaylist)
    assert [(s.uri, s.duration) for s in found.segments] == [("/t/a.m4s", 2.0), ("/t/b.m4s", 1.5)]
    assert found.live  # no ENDLIST


def test_a_variant_without_bandwidth_or_with_garbage_attributes_is_skipped() -> None:
    text = (
        "#EXTM3U\n"
        "#EXT-X-STREAM-INF:RESOLUTION=1x1\nno-bandwidth.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=abc\nbad.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=500,RESOLUTION=wide,FRAME-RATE=inf\nok.m3u8\n"
        "#EXT-X-MEDIA:NAME=no-type\n"
    )
    found = parse_playlist(text, "/t/m.m3u8")
    assert isinstance(found, Multivariant)
    assert found.variants == (Variant("/t/ok.m3u8", 500),)
    assert found.renditions == ()


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00\xff\xfe binary", b"<MPD/>", b"EXTM3U\n#EXTINF:2,\na.m4s", b"#EXTM3\n"],
)
def test_what_is_not_a_playlist_is_a_value_error(garbage: bytes) -> None:
    assert not is_playlist(garbage)
    with pytest.raises(ValueError):
        parse_playlist(garbage, "/t/x.m3u8")


def test_is_playlist_allows_a_bom_and_leading_blanks() -> None:
    assert is_playlist(b"\xef\xbb\xbf\r\n #EXTM3U\n")
    assert is_playlist(MASTER.encode())


def test_a_huge_playlist_keeps_at_most_max_entries() -> None:
    body = "#EXTM3U\n" + "#EXTINF:1,\ns.m4s\n" * (MAX_ENTRIES + 5)
    found = parse_playlist(body, "/t/v.m3u8")
    assert isinstance(found, MediaPlaylist)
    assert len(found.segments) == MAX_ENTRIES


def test_render_then_parse_gives_the_same_values_back() -> None:
    master = parse_playlist(MASTER, "/sample/master.m3u8")
    media = MediaPlaylist(
        "/live/x/media_0.m3u8",
        2,
        41,
        (
            Segment("/live/x/a.m4s", 2.0, None, "2026-12-02T10:00:00.000Z"),
            Segment("/live/x/b.m4s", 1.96, (100, 0)),
        ),
        "/live/x/init.mp4",
        independent_segments=True,
    )
    assert isinstance(master, Multivariant)
    assert parse_playlist(render_multivariant(master), master.path) == master
    assert parse_playlist(render_media(media), media.path) == media
    text = render_media(media)
    assert "#EXT-X-VERSION:7" in text and "#EXT-X-ENDLIST" not in text
    assert '#EXT-X-MAP:URI="init.mp4"' in text  # relative to the playlist's folder
