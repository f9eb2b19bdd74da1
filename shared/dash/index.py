"""The segment index: segment templates learned from the MPDs a node serves, to classify paths.

Pure: no I/O, no clock. A cache node hands every manifest it serves to
``SegmentIndex.learn``; ``classify(path)`` then says whether a URL path is the
init or a media segment of a known representation (with its bitrate rank), and
``next_segments`` names the media segments after it (for prefetch), ``upcoming``
with the time each may be requested (a dynamic MPD's segment availability).
HLS playlists go to a ``PlaylistIndex`` (``shared.hls.index``), asked when no MPD
template matches: its segments are those a media playlist lists, its renditions
those a multivariant playlist names (unknown, so ``classify`` gives ``None``, while
no multivariant playlist naming the media playlist was learned).

Invariants:

- Bounded memory: at most ``max_presentations`` MPDs (LRU by MPD path; a
  ``classify`` hit counts as a use). A SegmentTimeline is kept as its runs
  (``S`` elements), never expanded, so ``r="1000000000"`` costs nothing.
- ``learn`` never raises: malformed XML, a document that is neither an MPD nor
  an HLS playlist gives ``None``; a representation whose template is invalid is
  skipped.
- Paths are compared as given (no percent-decoding); query strings and fragments
  are ignored, and paths produced by ``next_segments`` carry none.
- Classification is by template only (a number past the end of a static
  presentation still classifies; ``next_segments`` stops at the end). Candidates
  are indexed by the directory that precedes a template's first variable, so one
  lookup costs a dict probe per ancestor directory plus a regex per candidate.
  The first matching template wins, deepest directory first.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections import OrderedDict
from typing import NamedTuple

import shared.hls.index as hls_index  # a module import: shared.hls.index imports this package
from shared.dash.mpd import _strip, parse_mpd
from shared.dash.presentation import Presentation, Representation, Stream
from shared.dash.template import _compile, _expand
from shared.hls.playlist import MediaPlaylist, Multivariant, is_playlist

__all__ = [
    "SegmentIndex",
    "SegmentInfo",
    "SegmentKind",
    "is_manifest",
]


class SegmentKind(enum.Enum):
    INIT = "init"
    MEDIA = "media"


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentInfo:
    kind: SegmentKind
    representation: Representation
    mpd_path: str  # the MPD, or the HLS media playlist, that names the path
    number: int | None = None  # from the path ($Number$), or its HLS media sequence number
    time: int | None = None  # from the path, if the template has $Time$


_MAX_REMEMBERED = 16384  # next_segments answers kept (cleared whole when full)


def is_manifest(path: str) -> bool:
    """Does ``path`` (a request target: query allowed) name an MPD or an HLS playlist
    (``.m3u8``)? Asked per request."""
    if "?" in path or "#" in path:
        path = _strip(path)
    tail = path[-5:].lower()
    return tail[1:] == ".mpd" or tail == ".m3u8"


class _Matcher(NamedTuple):
    prefix: str  # literal text before the first variable
    pattern: re.Pattern[str]
    template: str
    kind: SegmentKind
    stream: Stream


class _Entry(NamedTuple):
    presentation: Presentation
    matchers: dict[str, tuple[_Matcher, ...]]  # by directory of the prefix


class SegmentIndex:
    """Presentations learned from MPDs (bounded LRU), HLS playlists (``hls``, bounded
    LRU), and path classification."""

    def __init__(self, max_presentations: int = 1024) -> None:
        if max_presentations < 1:
            raise ValueError(f"max_presentations must be >= 1, got {max_presentations}")
        self.max_presentations = max_presentations
        self.hls = hls_index.PlaylistIndex(max_presentations)
        # guarded by: single event loop (every method is synchronous)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_dir: dict[str, dict[str, None]] = {}  # directory -> MPD paths (ordered set)
        # path -> (k, its MPD or media playlist path or None, the next k (path, available
        # at)): cleared on any change
        self._next: dict[str, tuple[int, str | None, tuple[tuple[str, float | None], ...]]] = {}

    def __repr__(self) -> str:
        playlists = f", {self.hls!r}" if len(self.hls) else ""
        return (
            f"SegmentIndex(presentations={len(self._entries)}/{self.max_presentations},"
            f" dirs={len(self._by_dir)}{playlists})"
        )

    def __len__(self) -> int:
        return len(self._entries) + len(self.hls)

    def __contains__(self, mpd_path: object) -> bool:
        return mpd_path in self._entries or mpd_path in self.hls

    def learn(
        self, mpd_path: str, xml: bytes
    ) -> Presentation | Multivariant | MediaPlaylist | None:
        """Parse and remember (replacing any earlier version) an MPD or an HLS playlist;
        ``None`` if ``xml`` is neither."""
        if is_playlist(xml):
            playlist = self.hls.learn(mpd_path, xml)
            if playlist is not None:
                self._next.clear()  # a new or changed playlist: next segments may differ
            return playlist
        try:
            presentation = parse_mpd(xml, mpd_path)
        except ValueError:
            return None
        key = presentation.mpd_path
        self._forget(key)
        self._next.clear()  # a new or changed presentation: next segments may differ
        matchers = _matchers(presentation)
        if matchers:
            self._entries[key] = _Entry(presentation, matchers)
            for directory in matchers:
                self._by_dir.setdefault(directory, {})[key] = None
            while len(self._entries) > self.max_presentations:
                self._forget(next(iter(self._entries)))
        return presentation

    def classify(self, path: str) -> SegmentInfo | None:
        found = self._match(path)
        if found is not None:
            return found[0]
        listed = self.hls.find(path)
        if listed is None or listed.representation is None:
            return None
        kind = SegmentKind.INIT if listed.number is None else SegmentKind.MEDIA
        return SegmentInfo(kind, listed.representation, listed.playlist, listed.number)

    def is_media_playlist(self, path: str) -> bool:
        """Does a learned multivariant playlist name ``path`` (a query ignored) as one
        of its renditions' media playlists? (Such a playlist is not a title.)"""
        return self.hls.is_media_playlist(path.partition("?")[0])

    def next_segments(self, path: str, k: int) -> list[str]:
        """Paths of the ``k`` media segments after ``path`` in its representation."""
        return [p for p, _ in self.upcoming(path, k)]

    def upcoming(self, path: str, k: int) -> list[tuple[str, float | None]]:
        """The ``k`` media segments after ``path`` in its representation, each with the
        Unix time from which it may be requested (a dynamic MPD's timing; else None).

        Asked on every segment request at the edge (prefetch), hits included: the
        answer is kept per path until the index changes (``learn``, eviction)."""
        known = self._next.get(path)
        if known is None or known[0] != k:
            known = (k, *self._next_after(path, k))
            if len(self._next) >= _MAX_REMEMBERED:
                self._next.clear()
            self._next[path] = known
        elif known[1] is not None:  # the LRU touch ``_match`` or ``find`` makes
            if known[1] in self._entries:
                self._entries.move_to_end(known[1])
            else:
                self.hls.touch(known[1])
        return list(known[2])

    def _next_after(
        self, path: str, k: int
    ) -> tuple[str | None, tuple[tuple[str, float | None], ...]]:
        """``path``'s MPD or media playlist (None if none has it) and the next ``k``
        segments: by template, else as listed (never past a live playlist's end)."""
        found = self._match(path)
        if found is None:
            listed = self.hls.upcoming(path, k)
            if listed is None:
                return None, ()
            return listed[0], tuple((p, None) for p in listed[1])
        info, matcher = found
        if info.kind is not SegmentKind.MEDIA or k <= 0:
            return info.mpd_path, ()
        stream = matcher.stream
        timeline = stream.timeline
        if info.number is not None:
            index: int | None = info.number - stream.start_number
        else:
            index = None if info.time is None else timeline.index_of(info.time)
        if index is None or index < 0:
            return info.mpd_path, ()
        presentation = self._entries[info.mpd_path].presentation
        found_next = []
        for i in range(index + 1, index + 1 + k):
            time = timeline.time_at(i)
            if (timeline.length is not None and i >= timeline.length) or (
                time is None and info.time is not None
            ):
                break
            path_i = _expand(matcher.template, stream.start_number + i, time)
            found_next.append((path_i, presentation.available_at(stream, i)))
        return info.mpd_path, tuple(found_next)

    def _match(self, path: str) -> tuple[SegmentInfo, _Matcher] | None:
        path = _strip(path)
        end = len(path)
        while (end := path.rfind("/", 0, end)) >= 0:
            directory = path[: end + 1]
            for key in self._by_dir.get(directory, ()):
                for m in self._entries[key].matchers[directory]:
                    found = m.pattern.fullmatch(path) if path.startswith(m.prefix) else None
                    if found is None:
                        continue
                    number, time = _group(found, "Number"), _group(found, "Time")
                    if _expand(m.template, number, time) != path:
                        continue  # not the canonical form, e.g. a missing zero pad
                    self._entries.move_to_end(key)
                    rep = m.stream.representation
                    return SegmentInfo(m.kind, rep, key, number, time), m
        return None

    def _forget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._next.clear()
        for directory in () if entry is None else entry.matchers:
            keys = self._by_dir[directory]
            del keys[key]
            if not keys:
                del self._by_dir[directory]


def _group(match: re.Match[str], name: str) -> int | None:
    text = match.groupdict().get(name)
    return None if text is None else int(text)


def _matchers(presentation: Presentation) -> dict[str, tuple[_Matcher, ...]]:
    by_dir: dict[str, list[_Matcher]] = {}
    for stream in presentation.streams:
        for kind, template in (
            (SegmentKind.INIT, stream.initialization),
            (SegmentKind.MEDIA, stream.media),
        ):
            if template:
                prefix, pattern = _compile(template)
                directory = prefix[: prefix.rfind("/") + 1]
                by_dir.setdefault(directory, []).append(
                    _Matcher(prefix, pattern, template, kind, stream)
                )
    return {d: tuple(ms) for d, ms in by_dir.items()}
