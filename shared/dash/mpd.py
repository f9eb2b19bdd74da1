"""Segment templates learned from the MPEG-DASH MPDs a node serves, to classify paths.

Pure: no I/O, no clock. A cache node hands every MPD it serves to
``SegmentIndex.learn``; ``classify(path)`` then says whether a URL path is the
init or a media segment of a known representation (with its bitrate rank), and
``next_segments`` names the media segments after it (for prefetch).
``segment_paths(presentation, lowest=, seconds=)`` lists what a pre-warm fetches.

Invariants:

- Bounded memory: at most ``max_presentations`` MPDs (LRU by MPD path; a
  ``classify`` hit counts as a use). A SegmentTimeline is kept as its runs
  (``S`` elements), never expanded, so ``r="1000000000"`` costs nothing.
- ``learn`` never raises: malformed XML or a document that is not an MPD gives
  ``None``; a representation whose template is invalid is skipped.
- Paths are compared as given (no percent-decoding); query strings and fragments
  are ignored, and paths produced by ``next_segments`` carry none.
- Classification is by template only (a number past the end of a static
  presentation still classifies; ``next_segments`` stops at the end). Candidates
  are indexed by the directory that precedes a template's first variable, so one
  lookup costs a dict probe per ancestor directory plus a regex per candidate.

Supported: ``SegmentTemplate`` at Period, AdaptationSet and Representation level
(the most specific attribute or SegmentTimeline wins) with ``$RepresentationID$``
``$Number$`` ``$Time$`` ``$Bandwidth$`` ``$$`` and ``%0<width>d``, addressed by
``duration`` or ``SegmentTimeline`` (``r="-1"`` runs to the next ``S@t``, else
to the period end; in a dynamic MPD, or with no known end, it stays open).
Dynamic MPDs have no last segment. ``BaseURL`` (first one per level) resolves
per RFC 3986 against the MPD's path; an absolute URL keeps only its path, since
a cache node is addressed by path. ``$Time$`` without a SegmentTimeline is
``presentationTimeOffset + i * duration``. Elements count in the DASH namespace or
in none. Not supported (paths stay unknown): SegmentBase, SegmentList,
``$SubNumber$``. The first matching template wins, deepest directory first.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import math
import re
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterator
from fractions import Fraction
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

__all__ = [
    "NS",
    "ContentKind",
    "Presentation",
    "Representation",
    "SegmentIndex",
    "SegmentInfo",
    "SegmentKind",
    "Stream",
    "Timeline",
    "is_manifest",
    "parse_mpd",
    "segment_paths",
]

NS = "urn:mpeg:dash:schema:mpd:2011"
_TOKEN = re.compile(r"\$([^$]*)\$")
_IDENT = re.compile(r"(RepresentationID|Number|Time|Bandwidth)(?:%0(\d{1,2})d)?")
_NUM = r"(\d+(?:\.\d+)?)"
_ISO = re.compile(
    rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?"
)
_ISO_UNITS = (365 * 86400, 30 * 86400, 86400, 3600, 60, 1)  # Y and M approximated


class ContentKind(enum.Enum):
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    OTHER = "other"


class SegmentKind(enum.Enum):
    INIT = "init"
    MEDIA = "media"


@dataclasses.dataclass(frozen=True, slots=True)
class Representation:
    id: str
    bandwidth: int  # bits per second
    kind: ContentKind
    rank: int  # by bandwidth within its AdaptationSet, 0 = lowest (ties: document order)
    ranks: int  # representations in that AdaptationSet
    width: int | None = None
    height: int | None = None
    period: int = 0  # index of its Period in the MPD


class _Run(NamedTuple):
    first: int  # index of the run's first segment
    t: int  # its start time, timescale units
    d: int  # duration of each segment in the run
    n: int | None  # segments in the run; None = open-ended


@dataclasses.dataclass(frozen=True, slots=True)
class Timeline:
    """Segment start times as runs of equal durations; index 0 = ``startNumber``."""

    runs: tuple[_Run, ...] = ()
    length: int | None = None  # segments in all; None = no known last segment

    def time_at(self, index: int) -> int | None:
        i = bisect.bisect_right(self.runs, index, key=lambda r: r.first) - 1
        if i < 0 or index < 0:
            return None
        run = self.runs[i]
        k = index - run.first
        return run.t + k * run.d if run.n is None or k < run.n else None

    def index_of(self, time: int) -> int | None:
        i = bisect.bisect_right(self.runs, time, key=lambda r: r.t) - 1
        if i < 0:
            return None
        run = self.runs[i]
        k, rest = divmod(time - run.t, run.d)
        return run.first + k if rest == 0 and (run.n is None or k < run.n) else None


@dataclasses.dataclass(frozen=True, slots=True)
class Stream:
    """One representation's addressing: templates resolved to absolute URL paths."""

    representation: Representation
    initialization: str | None  # e.g. "/t/init-0.mp4"
    media: str | None  # e.g. "/t/chunk-0-$Number%05d$.m4s"
    start_number: int
    timescale: int
    timeline: Timeline
    time_offset: int = 0  # presentationTimeOffset: the period's start, timescale units
    period_start: float = 0.0  # seconds from the presentation's start


@dataclasses.dataclass(frozen=True, slots=True)
class Presentation:
    mpd_path: str
    dynamic: bool
    duration: float | None  # mediaPresentationDuration, seconds
    streams: tuple[Stream, ...]

    @property
    def representations(self) -> tuple[Representation, ...]:
        return tuple(s.representation for s in self.streams)


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentInfo:
    kind: SegmentKind
    representation: Representation
    mpd_path: str
    number: int | None = None  # from the path, if the template has $Number$
    time: int | None = None  # from the path, if the template has $Time$


def is_manifest(path: str) -> bool:
    return _strip(path).lower().endswith(".mpd")


def parse_mpd(xml: bytes, mpd_path: str) -> Presentation:
    """The presentation an MPD describes; ``ValueError`` if ``xml`` is not an MPD."""
    try:  # expat >= 2.4.1 refuses entity bombs; ElementTree never fetches entities
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from None
    if not _is(root, "MPD"):
        raise ValueError(f"not an MPD: <{root.tag}>")
    mpd_path = "/" + _strip(mpd_path).lstrip("/")
    dynamic = root.get("type") == "dynamic"
    total = _seconds(root.get("mediaPresentationDuration"))
    base = _rebase(mpd_path, root)
    periods = _children(root, "Period")
    streams: list[Stream] = []
    start = Fraction(0)
    for index, period in enumerate(periods):
        explicit = _seconds(period.get("start"))
        start = start if explicit is None else explicit
        following = _seconds(periods[index + 1].get("start")) if index + 1 < len(periods) else None
        length = _seconds(period.get("duration"))
        if length is None and following is not None:
            length = following - start
        elif length is None and total is not None:
            length = total - start
        bounded = None if dynamic or length is None else max(length, Fraction(0))
        streams += _period(period, index, _rebase(base, period), bounded, float(start))
        start += length or 0
    duration = None if total is None else float(total)
    return Presentation(mpd_path, dynamic, duration, tuple(streams))


def segment_paths(
    presentation: Presentation,
    *,
    lowest: int | None = None,
    seconds: float | None = None,
    limit: int = 100_000,
) -> list[str]:
    """The URL paths to pre-warm for ``presentation``: init segments first, then media
    segments in order of their start time.

    Video: every representation, or the ``lowest`` k by rank in each AdaptationSet;
    audio, text and other kinds: all. Media: the segments that overlap the first
    ``seconds`` of the presentation (all when ``None``; a static presentation ends
    at its duration). An open-ended list (a dynamic MPD without a finite
    SegmentTimeline, or no known end and no ``seconds``) gives no media segments,
    since which segments exist depends on the clock. ``ValueError`` on a bad
    argument or more than ``limit`` paths."""
    if lowest is not None and lowest < 1:
        raise ValueError(f"lowest must be >= 1, got {lowest}")
    if seconds is not None and not seconds >= 0:  # also refuses NaN
        raise ValueError(f"seconds must be >= 0, got {seconds}")
    inits: dict[str, None] = {}  # ordered sets: a shared init or segment counts once
    media: dict[str, float] = {}
    for stream in presentation.streams:
        rep = stream.representation
        if rep.kind is ContentKind.VIDEO and lowest is not None and rep.rank >= lowest:
            continue
        if stream.initialization and not _has_variables(stream.initialization):
            inits[_expand(stream.initialization, None, None)] = None
        for path, start in _media(stream, presentation.dynamic, seconds):
            media.setdefault(path, start)
            if len(inits) + len(media) > limit:
                raise ValueError(f"more than {limit} segments; ask for fewer seconds")
    ordered = sorted(media, key=media.__getitem__)  # stable: document order within a time
    return [*inits, *ordered]


def _has_variables(template: str) -> bool:
    return any(_IDENT.fullmatch(t[1]) for t in _TOKEN.finditer(template))


def _media(stream: Stream, dynamic: bool, seconds: float | None) -> Iterator[tuple[str, float]]:
    """(path, start in presentation seconds) of the stream's media segments, in order."""
    timeline, template = stream.timeline, stream.media
    if template is None or not timeline.runs or (timeline.length is None and seconds is None):
        return
    if dynamic and timeline.length is None:
        return
    uses_time = "$Time" in template
    i = 0
    while timeline.length is None or i < timeline.length:
        time = timeline.time_at(i)
        if time is None:  # a gap in the runs cannot happen; an end can
            return
        start = stream.period_start + (time - stream.time_offset) / stream.timescale
        if seconds is not None and start >= seconds:
            return
        yield _expand(template, stream.start_number + i, time if uses_time else None), start
        i += 1


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
    """Presentations learned from MPDs (bounded LRU), and path classification."""

    def __init__(self, max_presentations: int = 1024) -> None:
        if max_presentations < 1:
            raise ValueError(f"max_presentations must be >= 1, got {max_presentations}")
        self.max_presentations = max_presentations
        # guarded by: single event loop (every method is synchronous)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_dir: dict[str, dict[str, None]] = {}  # directory -> MPD paths (ordered set)

    def __repr__(self) -> str:
        return (
            f"SegmentIndex(presentations={len(self._entries)}/{self.max_presentations},"
            f" dirs={len(self._by_dir)})"
        )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, mpd_path: object) -> bool:
        return mpd_path in self._entries

    def learn(self, mpd_path: str, xml: bytes) -> Presentation | None:
        """Parse and remember (replacing any earlier version); ``None`` if not an MPD."""
        try:
            presentation = parse_mpd(xml, mpd_path)
        except ValueError:
            return None
        key = presentation.mpd_path
        self._forget(key)
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
        return None if found is None else found[0]

    def next_segments(self, path: str, k: int) -> list[str]:
        """Paths of the ``k`` media segments after ``path`` in its representation."""
        found = self._match(path)
        if found is None or found[0].kind is not SegmentKind.MEDIA or k <= 0:
            return []
        info, matcher = found
        stream = matcher.stream
        timeline = stream.timeline
        if info.number is not None:
            index: int | None = info.number - stream.start_number
        else:
            index = None if info.time is None else timeline.index_of(info.time)
        if index is None or index < 0:
            return []
        paths = []
        for i in range(index + 1, index + 1 + k):
            time = timeline.time_at(i)
            if (timeline.length is not None and i >= timeline.length) or (
                time is None and info.time is not None
            ):
                break
            paths.append(_expand(matcher.template, stream.start_number + i, time))
        return paths

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
        for directory in () if entry is None else entry.matchers:
            keys = self._by_dir[directory]
            del keys[key]
            if not keys:
                del self._by_dir[directory]


# --- parsing -------------------------------------------------------------------------


def _is(el: ET.Element, name: str) -> bool:
    return el.tag in (name, f"{{{NS}}}{name}")


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _is(c, name)]


def _child(el: ET.Element | None, name: str) -> ET.Element | None:
    found = [] if el is None else _children(el, name)
    return found[0] if found else None


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _positive(text: str | None) -> int | None:
    value = _int(text)
    return value if value is not None and value > 0 else None


def _seconds(text: str | None) -> Fraction | None:
    match = None if text is None else _ISO.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        return None
    return sum(
        (Fraction(g or 0) * u for g, u in zip(match.groups(), _ISO_UNITS, strict=True)), Fraction(0)
    )


def _strip(path: str) -> str:
    return path.partition("?")[0].partition("#")[0]


def _rebase(base: str, el: ET.Element) -> str:
    url = _child(el, "BaseURL")
    text = "" if url is None or url.text is None else url.text.strip()
    return urljoin(base, text) if text else base


def _kind(aset: ET.Element, rep: ET.Element) -> ContentKind:
    for hint in (aset.get("contentType"), aset.get("mimeType"), rep.get("mimeType")):
        major = (hint or "").partition("/")[0].lower()
        if major in ("video", "audio", "text"):
            return ContentKind(major)
    names = ("mimeType", "codecs")
    hints = " ".join(el.get(n) or "" for el in (aset, rep) for n in names).lower()
    return (
        ContentKind.TEXT if any(w in hints for w in ("ttml", "vtt", "stpp")) else ContentKind.OTHER
    )


def _period(
    period: ET.Element, index: int, base: str, length: Fraction | None, start: float
) -> list[Stream]:
    streams = []
    for aset in _children(period, "AdaptationSet"):
        reps = _children(aset, "Representation")
        rates = [_int(r.get("bandwidth")) or 0 for r in reps]
        order = sorted(range(len(reps)), key=lambda i: (rates[i], i))
        rank_of = {i: rank for rank, i in enumerate(order)}
        for i, el in enumerate(reps):
            rep = Representation(
                id=el.get("id", ""),
                bandwidth=rates[i],
                kind=_kind(aset, el),
                rank=rank_of[i],
                ranks=len(reps),
                width=_int(el.get("width") or aset.get("width")),
                height=_int(el.get("height") or aset.get("height")),
                period=index,
            )
            levels = (period, aset, el)
            stream = _stream(rep, _rebase(_rebase(base, aset), el), levels, length, start)
            if stream is not None:
                streams.append(stream)
    return streams


def _stream(
    rep: Representation,
    base: str,
    levels: tuple[ET.Element, ...],
    length: Fraction | None,
    period_start: float = 0.0,
) -> Stream | None:
    attrs: dict[str, str] = {}
    timeline_el = None
    for level in levels:
        template = _child(level, "SegmentTemplate")
        if template is not None:
            attrs.update(template.attrib)
            own = _child(template, "SegmentTimeline")
            timeline_el = timeline_el if own is None else own
    init = _resolve(attrs.get("initialization"), rep, base)
    media = _resolve(attrs.get("media"), rep, base)
    if init is None and media is None:
        return None
    timescale = _positive(attrs.get("timescale")) or 1
    offset = _int(attrs.get("presentationTimeOffset")) or 0
    end = None if length is None else offset + length * timescale
    duration = _positive(attrs.get("duration"))
    if timeline_el is not None:
        timeline = _timeline(timeline_el, end)
    elif duration is not None:
        count = None if end is None else math.ceil((end - offset) / duration)
        timeline = Timeline((_Run(0, offset, duration, count),), count)
    else:
        timeline = Timeline()
    start = _int(attrs.get("startNumber"))
    number = 1 if start is None else start
    return Stream(rep, init, media, number, timescale, timeline, offset, period_start)


def _timeline(el: ET.Element, end: Fraction | None) -> Timeline:
    runs: list[_Run] = []
    first = t = 0
    entries = _children(el, "S")
    for i, s in enumerate(entries):
        explicit = _int(s.get("t"))
        t = t if explicit is None else explicit
        d, r = _positive(s.get("d")), _int(s.get("r")) or 0
        if d is None:
            continue
        n: int | None = r + 1
        if r < 0:  # -1: repeat until the next S@t, else the period end
            after = _int(entries[i + 1].get("t")) if i + 1 < len(entries) else None
            stop = after if after is not None else end
            n = None if stop is None else max(0, math.ceil((stop - t) / d))
        if n is None:
            runs.append(_Run(first, t, d, None))
            return Timeline(tuple(runs), None)
        if n:
            runs.append(_Run(first, t, d, n))
        first, t = first + n, t + n * d
    return Timeline(tuple(runs), first)


# --- templates -----------------------------------------------------------------------


def _fmt(value: int, width: str | None) -> str:
    return f"{value:0{width}d}" if width else str(value)


def _resolve(template: str | None, rep: Representation, base: str) -> str | None:
    """``template`` with the representation's constants filled in, as an absolute path."""
    if template is None:
        return None
    out, pos = [], 0
    for token in _TOKEN.finditer(template):
        out.append(template[pos : token.start()])
        pos = token.end()
        ident = _IDENT.fullmatch(token[1])
        if not token[1]:
            out.append("$$")
        elif ident is None or (ident[1] == "RepresentationID" and ident[2]):
            return None
        elif ident[1] == "RepresentationID":
            out.append(rep.id.replace("$", "$$"))
        elif ident[1] == "Bandwidth":
            out.append(_fmt(rep.bandwidth, ident[2]))
        else:
            out.append(token[0])
    out.append(template[pos:])
    return urlsplit(urljoin(base, "".join(out))).path


def _compile(template: str) -> tuple[str, re.Pattern[str]]:
    """The literal prefix and the regex of a resolved template ($Number$, $Time$, $$ left)."""
    parts, prefix, pos, seen = [], None, 0, set()
    for token in _TOKEN.finditer(template):
        parts.append(re.escape(template[pos : token.start()]))
        pos = token.end()
        ident = _IDENT.fullmatch(token[1])
        if ident is None:  # "$$"
            parts.append(re.escape("$"))
            continue
        if prefix is None:
            prefix = _TOKEN.sub("$", template[: token.start()])
        name = ident[1]
        parts.append(f"(?P={name})" if name in seen else rf"(?P<{name}>\d{{{ident[2] or 1},}})")
        seen.add(name)
    parts.append(re.escape(template[pos:]))
    return _TOKEN.sub("$", template) if prefix is None else prefix, re.compile("".join(parts))


def _expand(template: str, number: int | None, time: int | None) -> str:
    def value(token: re.Match[str]) -> str:
        ident = _IDENT.fullmatch(token[1])
        if ident is None:
            return "$"
        found = number if ident[1] == "Number" else time
        return token[0] if found is None else _fmt(found, ident[2])

    return _TOKEN.sub(value, template)


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
