"""The playlist index: renditions and segments learned from the HLS playlists a node serves.

Pure: no I/O, no clock. ``SegmentIndex.learn`` (``shared.dash.index``) hands every
HLS playlist to ``PlaylistIndex.learn``. A multivariant playlist says which media
playlist is which rendition (a ``Representation``: its ``BANDWIDTH``, its rank among
the variants by bandwidth); a media playlist says which segment paths it lists, in
order, and its ``EXT-X-MAP`` init. ``find(path)`` says where a segment is listed;
``upcoming(path, k)`` names the next ``k`` listed after it. ``media_playlists`` and
``segment_paths`` list what a pre-warm fetches, as ``shared.dash.segment_paths``.

Invariants:

- ``learn`` never raises: a body that is not a playlist gives ``None``; what the
  parser cannot read it skips (``shared.hls.playlist``).
- Bounded memory: at most ``max_playlists`` media playlists and as many
  multivariant ones (each LRU by path; a ``find`` hit counts as a use), at most
  ``max_segments`` segment paths in all (a media playlist naming more is not
  indexed), at most ``MAX_RENDITIONS`` renditions per multivariant playlist.
- Nothing is guessed: the next segments are those the playlist lists, so a live
  playlist, which names only segments that exist, is never read past its live edge.
- A segment whose media playlist no learned multivariant names has no
  representation (``Listed.representation is None``): its bitrate is unknown.
- A path listed twice (byte ranges of one file) is found at its first listing; a
  path listed by two media playlists belongs to the one learned last (a live
  playlist's reload replaces the previous one).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from shared.dash.presentation import ContentKind, Representation
from shared.hls.playlist import MediaPlaylist, Multivariant, Variant, parse_playlist

__all__ = [
    "MAX_RENDITIONS",
    "Listed",
    "PlaylistIndex",
    "media_playlists",
    "renditions",
    "segment_paths",
]

MAX_RENDITIONS = 1024  # per multivariant playlist: those after are not indexed
_KINDS = {"AUDIO": ContentKind.AUDIO, "VIDEO": ContentKind.VIDEO, "SUBTITLES": ContentKind.TEXT}
_INIT = -1  # the position of a media playlist's EXT-X-MAP


class Listed(NamedTuple):
    """Where a media playlist lists a path."""

    playlist: str  # the media playlist's path
    number: int | None  # media sequence number; None for the EXT-X-MAP init
    representation: Representation | None  # None: no learned multivariant names it


class _Media(NamedTuple):
    sequence: int  # EXT-X-MEDIA-SEQUENCE: the number of paths[0]
    paths: tuple[str, ...]  # the segments listed, in order (repeats kept)
    init: str | None


def renditions(playlist: Multivariant) -> dict[str, Representation]:
    """Media playlist path -> the rendition it carries. Variants (video): ranked by
    ``BANDWIDTH`` among the variants, 0 = lowest (ties: document order; a path named
    twice counts once, at its first); renditions with a URI (audio, subtitles): rank
    0 of 1, as a single-rung DASH AdaptationSet."""
    variants: dict[str, Variant] = {}
    for v in playlist.variants:
        variants.setdefault(v.uri, v)
    ranked = sorted(variants.values(), key=lambda v: v.bandwidth)  # stable
    out: dict[str, Representation] = {}
    for rank, v in enumerate(ranked):
        w, h = v.resolution or (None, None)
        kind = ContentKind.VIDEO
        out[v.uri] = Representation(v.uri, v.bandwidth, kind, rank, len(ranked), w, h)
    for r in playlist.renditions:
        if r.uri is not None and r.uri not in out:
            kind = _KINDS.get(r.type, ContentKind.OTHER)
            out[r.uri] = Representation(r.uri, 0, kind, 0, 1)
    return dict(itertools.islice(out.items(), MAX_RENDITIONS))


def media_playlists(playlist: Multivariant, *, lowest: int | None = None) -> list[str]:
    """The media playlists a pre-warm of ``playlist`` fetches: every rendition's, or of
    the video variants only the ``lowest`` k by bandwidth (audio, subtitles: all)."""
    if lowest is not None and lowest < 1:
        raise ValueError(f"lowest must be >= 1, got {lowest}")
    return [
        uri
        for uri, rep in renditions(playlist).items()
        if rep.kind is not ContentKind.VIDEO or lowest is None or rep.rank < lowest
    ]


def segment_paths(
    playlists: Iterable[MediaPlaylist], *, seconds: float | None = None, limit: int = 100_000
) -> list[str]:
    """The paths a pre-warm fetches from media ``playlists``: each ``EXT-X-MAP`` init
    first, then the segments listed, in order of their start (``EXTINF`` summed from
    the first listed), those that start within the first ``seconds`` (all when
    ``None``); a path counts once. ``ValueError`` on a bad argument or more than
    ``limit`` paths."""
    if seconds is not None and not seconds >= 0:  # also refuses NaN
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    inits: dict[str, None] = {}  # ordered sets
    media: dict[str, float] = {}
    for playlist in playlists:
        if playlist.map_uri is not None:
            inits[playlist.map_uri] = None
        start = 0.0
        for segment in playlist.segments:
            if seconds is not None and start >= seconds:
                break
            media.setdefault(segment.uri, start)
            start += segment.duration
            if len(inits) + len(media) > limit:
                raise ValueError(f"more than {limit} segments; ask for fewer seconds")
    return [*inits, *sorted(media, key=media.__getitem__)]  # stable: playlist order in a time


class PlaylistIndex:
    """Media and multivariant playlists learned (bounded LRU), and where segments are listed."""

    def __init__(self, max_playlists: int = 1024, max_segments: int = 200_000) -> None:
        if max_playlists < 1 or max_segments < 1:
            raise ValueError(f"limits must be >= 1, got {max_playlists=} {max_segments=}")
        self.max_playlists = max_playlists
        self.max_segments = max_segments
        # guarded by: single event loop (every method is synchronous)
        self._media: OrderedDict[str, _Media] = OrderedDict()  # by media playlist path
        self._where: dict[str, tuple[str, int]] = {}  # segment path -> (playlist, position)
        self._multi: OrderedDict[str, tuple[str, ...]] = OrderedDict()  # -> media paths named
        self._renditions: dict[str, tuple[str, Representation]] = {}  # media path -> (multi, rep)

    def __repr__(self) -> str:
        return (
            f"PlaylistIndex(media={len(self._media)}/{self.max_playlists},"
            f" multivariant={len(self._multi)}, segments={len(self._where)}/{self.max_segments})"
        )

    def __len__(self) -> int:
        return len(self._media) + len(self._multi)

    def __contains__(self, path: object) -> bool:
        return path in self._media or path in self._multi

    def learn(self, path: str, body: bytes | str) -> Multivariant | MediaPlaylist | None:
        """Parse and remember (replacing any earlier version); ``None`` if not a playlist."""
        try:
            playlist = parse_playlist(body, path)
        except ValueError:
            return None
        if isinstance(playlist, Multivariant):
            self._learn_multivariant(playlist)
        else:
            self._learn_media(playlist)
        return playlist

    def is_media_playlist(self, path: str) -> bool:
        """Does a learned multivariant playlist name ``path`` (no query) as a rendition?"""
        return path in self._renditions

    def find(self, path: str) -> Listed | None:
        """Where ``path`` (a query ignored) is listed, if a learned media playlist lists it."""
        where = self._where.get(path.partition("?")[0])
        if where is None:
            return None
        playlist, position = where
        media = self._touch(playlist)
        named = self._renditions.get(playlist)
        if named is not None:
            self._multi.move_to_end(named[0])
        number = None if position == _INIT else media.sequence + position
        return Listed(playlist, number, None if named is None else named[1])

    def upcoming(self, path: str, k: int) -> tuple[str, tuple[str, ...]] | None:
        """``path``'s media playlist and the next ``k`` distinct paths it lists after
        ``path`` (none after an init); ``None`` if no learned playlist lists ``path``."""
        path = path.partition("?")[0]
        where = self._where.get(path)
        if where is None:
            return None
        playlist, position = where
        media = self._touch(playlist)
        if position == _INIT or k <= 0:
            return playlist, ()
        found: dict[str, None] = {}  # ordered set: byte ranges name one file many times
        for p in itertools.islice(media.paths, position + 1, position + 1 + 16 * k):
            if p != path:
                found[p] = None
                if len(found) == k:
                    break
        return playlist, tuple(found)

    def touch(self, playlist: str) -> None:
        """Count a use of the media playlist ``playlist`` (an answer kept by the caller)."""
        if playlist in self._media:
            self._media.move_to_end(playlist)

    def _touch(self, playlist: str) -> _Media:
        self._media.move_to_end(playlist)
        return self._media[playlist]

    def _learn_multivariant(self, playlist: Multivariant) -> None:
        self._forget_multivariant(playlist.path)
        named = renditions(playlist)
        self._multi[playlist.path] = tuple(named)
        for uri, rep in named.items():
            self._renditions[uri] = (playlist.path, rep)
        while len(self._multi) > self.max_playlists:
            self._forget_multivariant(next(iter(self._multi)))

    def _learn_media(self, playlist: MediaPlaylist) -> None:
        key = playlist.path
        self._forget_media(key)
        paths = tuple(s.uri for s in playlist.segments)
        if len(paths) + 1 > self.max_segments:
            return  # more than the whole budget: not indexed
        self._media[key] = _Media(playlist.media_sequence, paths, playlist.map_uri)
        for position, path in enumerate(paths):
            if self._where.get(path, ("",))[0] != key:  # a repeat keeps its first listing
                self._where[path] = (key, position)
        if playlist.map_uri is not None:
            self._where[playlist.map_uri] = (key, _INIT)
        while len(self._where) > self.max_segments or len(self._media) > self.max_playlists:
            self._forget_media(next(iter(self._media)))

    def _forget_media(self, key: str) -> None:
        media = self._media.pop(key, None)
        if media is None:
            return
        for path in (*media.paths, *(() if media.init is None else (media.init,))):
            if self._where.get(path, ("",))[0] == key:
                del self._where[path]

    def _forget_multivariant(self, key: str) -> None:
        for uri in self._multi.pop(key, ()):
            if self._renditions.get(uri, ("",))[0] == key:
                del self._renditions[uri]
