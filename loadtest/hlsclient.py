"""The HLS side of the load tests' player: a parsed playlist as the viewer walks it.

Playlists are parsed by ``shared.hls.parse_playlist``; this module reads what a
VOD viewer needs from them, as ``loadtest.dashclient`` does from an MPD:

- ``variant_ladder``: the multivariant playlist's video variants by ``BANDWIDTH``
  (rank 0 = the lowest; one per media playlist) and the audio rendition they name
  (``AUDIO`` group, ``DEFAULT=YES`` first; None when the audio is in the variants).
- ``hls_track``: one media playlist as a ``loadtest.track.Track``: ``EXT-X-MAP``
  as the init segment, the segment URIs in order, the variant's ``BANDWIDTH``
  as the rate the ABR reckons with (as hls.js does: the variant's whole rate,
  audio included).
- ``segment_clock``: the media clock from the ``EXTINF`` durations.

Pure: no I/O. A playlist the viewer cannot play (live, byte ranges, no segments)
is a ``ValueError`` naming why.
"""

from __future__ import annotations

from loadtest.track import Track
from shared.hls import MediaPlaylist, Multivariant, Rendition, Variant

__all__ = ["hls_track", "segment_clock", "variant_label", "variant_ladder"]


def variant_ladder(playlist: Multivariant) -> tuple[list[Variant], Rendition | None]:
    """Video variants by ``BANDWIDTH`` (the first of each media playlist) and the audio
    rendition of the lowest one's ``AUDIO`` group; ``ValueError`` if it has no variant."""
    variants: dict[str, Variant] = {}
    for v in sorted(playlist.variants, key=lambda v: v.bandwidth):
        variants.setdefault(v.uri, v)
    if not variants:
        raise ValueError("no variant in the multivariant playlist")
    video = list(variants.values())
    group = video[0].audio
    audio = [
        r
        for r in playlist.renditions
        if r.type == "AUDIO" and r.group_id == group and r.uri is not None
    ]
    return video, min(audio, key=lambda r: not r.default, default=None)


def variant_label(variant: Variant) -> str:
    """``"720p 3189 kb/s"``: a variant as the report names it."""
    size = f"{variant.resolution[1]}p " if variant.resolution else ""
    return f"{size}{variant.bandwidth / 1000:.0f} kb/s"


def hls_track(playlist: MediaPlaylist, label: str, bandwidth: int) -> Track:
    """The media ``playlist`` as a track; ``ValueError`` unless a VOD one of whole files."""
    if playlist.live:
        raise ValueError(f"{playlist.path}: no EXT-X-ENDLIST (live), not a VOD playlist")
    if not playlist.segments:
        raise ValueError(f"{playlist.path}: no segment")
    if any(s.byterange is not None for s in playlist.segments):
        raise ValueError(f"{playlist.path}: byte-range segments are not played")
    return Track(label, bandwidth, playlist.map_uri, tuple(s.uri for s in playlist.segments))


def segment_clock(playlist: MediaPlaylist, count: int) -> list[float]:
    """Seconds of media time at which each of the first ``count`` segments starts, and
    where the last one ends (``count + 1`` values), from ``EXTINF``."""
    if not 0 < count <= len(playlist.segments):
        raise ValueError(f"{playlist.path}: {count} segments asked, {len(playlist.segments)}")
    clock = [0.0]
    for s in playlist.segments[:count]:
        if s.duration <= 0:
            raise ValueError(f"{playlist.path}: a segment of {s.duration} s")
        clock.append(clock[-1] + s.duration)
    return clock
