"""MPD parsing: the presentation an MPEG-DASH MPD (ISO/IEC 23009-1) describes.

Pure: no I/O, no clock. ``parse_mpd(xml, mpd_path)`` gives a ``Presentation`` whose
streams carry their templates resolved to absolute URL paths.

Invariants:

- Malformed XML or a document that is not an MPD raises ``ValueError`` (which
  ``SegmentIndex.learn`` turns into ``None``). A representation whose template is
  invalid is skipped.
- The XML parser never fetches entities and refuses entity bombs (expat >= 2.4.1).
- A SegmentTimeline is kept as its runs, never expanded (see ``Timeline``).

Supported: ``SegmentTemplate`` at Period, AdaptationSet and Representation level
(the most specific attribute or SegmentTimeline wins), addressed by ``duration`` or
``SegmentTimeline`` (``r="-1"`` runs to the next ``S@t``, else to the period end; in
a dynamic MPD, or with no known end, it stays open). Dynamic MPDs have no last
segment; their ``availabilityStartTime`` and each template's
``availabilityTimeOffset`` say when a segment may be requested
(``Presentation.available_at``). ``BaseURL`` (first one per level) resolves per
RFC 3986 against the MPD's path; an absolute URL keeps only its path, since a cache
node is addressed by path.
``$Time$`` without a SegmentTimeline is ``presentationTimeOffset + i * duration``.
Elements count in the DASH namespace or in none. Not supported (paths stay
unknown): SegmentBase, SegmentList.
"""

from __future__ import annotations

import datetime
import math
import re
import xml.etree.ElementTree as ET
from fractions import Fraction
from urllib.parse import urljoin

from shared.dash.presentation import (
    ContentKind,
    Presentation,
    Representation,
    Stream,
    Timeline,
    _Run,
)
from shared.dash.template import _resolve

__all__ = ["NS", "parse_mpd"]

NS = "urn:mpeg:dash:schema:mpd:2011"
_NUM = r"(\d+(?:\.\d+)?)"
_ISO = re.compile(
    rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?"
)
_ISO_UNITS = (365 * 86400, 30 * 86400, 86400, 3600, 60, 1)  # Y and M approximated


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
    start_time = _instant(root.get("availabilityStartTime")) if dynamic else None
    return Presentation(mpd_path, dynamic, duration, tuple(streams), start_time)


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


def _instant(text: str | None) -> float | None:
    """An xs:dateTime as Unix seconds (no zone = UTC); None if absent or unreadable."""
    try:
        when = datetime.datetime.fromisoformat((text or "").strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def _offset(text: str | None) -> float:
    """availabilityTimeOffset in seconds: ``INF`` is every segment at once; bad = 0."""
    try:
        value = float(text) if text is not None else 0.0
    except ValueError:
        return 0.0
    return value if value >= 0 else 0.0  # inf allowed; NaN and negatives are not


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
    ato = _offset(attrs.get("availabilityTimeOffset"))
    return Stream(rep, init, media, number, timescale, timeline, offset, period_start, ato)


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
