"""HLS playlists (RFC 8216, and its draft successor's tags a cache meets): parse and write.

Pure: no I/O, no clock. ``parse_playlist(text, path)`` gives a ``Multivariant`` (the
variants and renditions a player chooses from) or a ``MediaPlaylist`` (one
rendition's segments); ``render_multivariant`` and ``render_media`` write them back.
URIs are resolved against the playlist's path (RFC 3986) and kept as absolute
paths, since a cache node is addressed by path: an absolute URL keeps only its
path, a query string is dropped.

Invariants:

- ``parse_playlist`` raises ``ValueError`` only when the text is not a playlist
  (no ``#EXTM3U`` first line, or not text). Anything else it cannot read is
  skipped: unknown tags, a malformed attribute list or ``EXTINF``, a URI line
  without its ``EXTINF``. A cache learns what it can and never fails a request
  because of a playlist.
- Bounded: at most ``MAX_ENTRIES`` segments or variants are kept per playlist.
- Byte ranges (``EXT-X-BYTERANGE``) are kept with their segment: such a segment is
  a part of a file, and the same path may appear more than once.
- ``render_*`` then ``parse_playlist`` gives back the same values (a test pins it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from urllib.parse import urljoin, urlsplit

__all__ = [
    "MAX_ENTRIES",
    "MediaPlaylist",
    "Multivariant",
    "Rendition",
    "Segment",
    "Variant",
    "is_playlist",
    "parse_playlist",
    "render_media",
    "render_multivariant",
]

MAX_ENTRIES = 100_000
_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


@dataclasses.dataclass(frozen=True, slots=True)
class Variant:
    """``EXT-X-STREAM-INF`` and the media playlist it names."""

    uri: str  # absolute path of the media playlist
    bandwidth: int  # peak bits per second
    average_bandwidth: int | None = None
    resolution: tuple[int, int] | None = None  # width, height
    codecs: str | None = None
    frame_rate: float | None = None
    audio: str | None = None  # GROUP-ID of its audio renditions


@dataclasses.dataclass(frozen=True, slots=True)
class Rendition:
    """``EXT-X-MEDIA``: an alternative rendition (audio, subtitles) of a group."""

    type: str  # AUDIO, VIDEO, SUBTITLES, CLOSED-CAPTIONS
    group_id: str
    name: str
    uri: str | None = None  # absolute path of its media playlist (None: in the variant)
    default: bool = False
    channels: str | None = None
    language: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Multivariant:
    path: str
    variants: tuple[Variant, ...]
    renditions: tuple[Rendition, ...] = ()
    independent_segments: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Segment:
    uri: str  # absolute path
    duration: float  # EXTINF, seconds
    byterange: tuple[int, int | None] | None = None  # length, offset (None: after the last)
    program_date_time: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class MediaPlaylist:
    path: str
    target_duration: int
    media_sequence: int  # the number of the first segment listed
    segments: tuple[Segment, ...]
    map_uri: str | None = None  # EXT-X-MAP: the init segment
    endlist: bool = False  # no more segments: VOD, or an ended event
    playlist_type: str | None = None  # VOD or EVENT
    independent_segments: bool = False

    @property
    def live(self) -> bool:
        """More segments will come (no ``EXT-X-ENDLIST``)."""
        return not self.endlist


def is_playlist(body: bytes) -> bool:
    """Does ``body`` start as an HLS playlist (``#EXTM3U``, a BOM and blanks allowed)?"""
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:7] == b"#EXTM3U"


def parse_playlist(text: bytes | str, path: str) -> Multivariant | MediaPlaylist:
    """The playlist ``text`` (served at ``path``) describes; ``ValueError`` if none."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text") from None
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not a playlist: no #EXTM3U")
    path = "/" + path.partition("?")[0].partition("#")[0].lstrip("/")
    if any(line.startswith("#EXT-X-STREAM-INF:") for line in lines):
        return _multivariant(lines, path)
    return _media(lines, path)


def _resolve(base: str, uri: str) -> str:
    return urlsplit(urljoin(base, uri.strip())).path


def _attrs(text: str) -> dict[str, str]:
    return {m[1]: m[2].strip('"') for m in _ATTR.finditer(text)}


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        value = None if text is None else float(text)
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and value >= 0 else None


def _multivariant(lines: list[str], path: str) -> Multivariant:
    variants: list[Variant] = []
    renditions: list[Rendition] = []
    pending: dict[str, str] | None = None
    for line in lines:
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = _attrs(line[18:])
        elif line.startswith("#EXT-X-MEDIA:"):
            a = _attrs(line[13:])
            if "TYPE" in a and "GROUP-ID" in a and len(renditions) < MAX_ENTRIES:
                uri = _resolve(path, a["URI"]) if a.get("URI") else None
                renditions.append(
                    Rendition(
                        a["TYPE"],
                        a["GROUP-ID"],
                        a.get("NAME", ""),
                        uri,
                        a.get("DEFAULT") == "YES",
                        a.get("CHANNELS"),
                        a.get("LANGUAGE"),
                    )
                )
        elif not line.startswith("#") and pending is not None:
            bandwidth = _int(pending.get("BANDWIDTH"))
            if bandwidth is not None and len(variants) < MAX_ENTRIES:
                size = pending.get("RESOLUTION", "").lower().partition("x")
                w, h = _int(size[0]), _int(size[2])
                variants.append(
                    Variant(
                        _resolve(path, line),
                        bandwidth,
                        _int(pending.get("AVERAGE-BANDWIDTH")),
                        (w, h) if w is not None and h is not None else None,
                        pending.get("CODECS"),
                        _float(pending.get("FRAME-RATE")),
                        pending.get("AUDIO"),
                    )
                )
            pending = None
    independent = "#EXT-X-INDEPENDENT-SEGMENTS" in lines
    return Multivariant(path, tuple(variants), tuple(renditions), independent)


def _media(lines: list[str], path: str) -> MediaPlaylist:
    target, sequence = 0, 0
    segments: list[Segment] = []
    map_uri = playlist_type = None
    duration: float | None = None
    byterange: tuple[int, int | None] | None = None
    date: str | None = None
    endlist = independent = False
    for line in lines:
        if not line.startswith("#"):
            if duration is not None and len(segments) < MAX_ENTRIES:
                segments.append(Segment(_resolve(path, line), duration, byterange, date))
            duration, byterange, date = None, None, None
        elif line.startswith("#EXTINF:"):
            duration = _float(line[8:].partition(",")[0])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = _int(line[22:]) or 0
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = _int(line[22:]) or 0
        elif line.startswith("#EXT-X-MAP:"):
            uri = _attrs(line[11:]).get("URI")
            map_uri = _resolve(path, uri) if uri else map_uri
        elif line.startswith("#EXT-X-BYTERANGE:"):
            length, _, offset = line[17:].partition("@")
            n = _int(length)
            byterange = None if n is None else (n, _int(offset) if offset else None)
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            date = line[25:]
        elif line.startswith("#EXT-X-PLAYLIST-TYPE:"):
            playlist_type = line[21:]
        elif line == "#EXT-X-ENDLIST":
            endlist = True
        elif line == "#EXT-X-INDEPENDENT-SEGMENTS":
            independent = True
    return MediaPlaylist(
        path, target, sequence, tuple(segments), map_uri, endlist, playlist_type, independent
    )


def _relative(base: str, path: str) -> str:
    """``path`` as a URI relative to the playlist at ``base`` when in its folder."""
    folder = base[: base.rfind("/") + 1]
    return path[len(folder) :] if path.startswith(folder) else path


def _rate(value: float) -> str:
    return f"{value:.3f}"


def render_multivariant(playlist: Multivariant) -> str:
    """The multivariant playlist's text (version 7, URIs relative to its folder)."""
    out = ["#EXTM3U", "#EXT-X-VERSION:7"]
    if playlist.independent_segments:
        out.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for r in playlist.renditions:
        attrs = [f"TYPE={r.type}", f'GROUP-ID="{r.group_id}"', f'NAME="{r.name}"']
        attrs.append(f"DEFAULT={'YES' if r.default else 'NO'}")
        attrs.append(f"AUTOSELECT={'YES' if r.default else 'NO'}")
        if r.language:
            attrs.append(f'LANGUAGE="{r.language}"')
        if r.channels:
            attrs.append(f'CHANNELS="{r.channels}"')
        if r.uri:
            attrs.append(f'URI="{_relative(playlist.path, r.uri)}"')
        out.append("#EXT-X-MEDIA:" + ",".join(attrs))
    for v in playlist.variants:
        attrs = [f"BANDWIDTH={v.bandwidth}"]
        if v.average_bandwidth is not None:
            attrs.append(f"AVERAGE-BANDWIDTH={v.average_bandwidth}")
        if v.resolution is not None:
            attrs.append(f"RESOLUTION={v.resolution[0]}x{v.resolution[1]}")
        if v.codecs:
            attrs.append(f'CODECS="{v.codecs}"')
        if v.frame_rate is not None:
            attrs.append(f"FRAME-RATE={_rate(v.frame_rate)}")
        if v.audio:
            attrs.append(f'AUDIO="{v.audio}"')
        out += ["#EXT-X-STREAM-INF:" + ",".join(attrs), _relative(playlist.path, v.uri)]
    return "\n".join(out) + "\n"


def render_media(playlist: MediaPlaylist) -> str:
    """The media playlist's text (version 7, URIs relative to its folder)."""
    out = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{playlist.target_duration}",
        f"#EXT-X-MEDIA-SEQUENCE:{playlist.media_sequence}",
    ]
    if playlist.playlist_type:
        out.append(f"#EXT-X-PLAYLIST-TYPE:{playlist.playlist_type}")
    if playlist.independent_segments:
        out.append("#EXT-X-INDEPENDENT-SEGMENTS")
    if playlist.map_uri:
        out.append(f'#EXT-X-MAP:URI="{_relative(playlist.path, playlist.map_uri)}"')
    for s in playlist.segments:
        if s.program_date_time:
            out.append(f"#EXT-X-PROGRAM-DATE-TIME:{s.program_date_time}")
        out.append(f"#EXTINF:{s.duration:.6f},")
        if s.byterange is not None:
            length, offset = s.byterange
            out.append(f"#EXT-X-BYTERANGE:{length}" + ("" if offset is None else f"@{offset}"))
        out.append(_relative(playlist.path, s.uri))
    if playlist.endlist:
        out.append("#EXT-X-ENDLIST")
    return "\n".join(out) + "\n"
