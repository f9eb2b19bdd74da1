"""SegmentTemplate expansion (ISO/IEC 23009-1 §5.3.9.4.4), and the paths a pre-warm fetches.

Pure: no I/O, no clock. ``segment_paths(presentation, lowest=, seconds=)`` lists what
a pre-warm fetches. A template is filled in two steps: ``_resolve`` at parse time
(``$RepresentationID$``, ``$Bandwidth$``, then the BaseURL), ``_expand`` per segment
(``$Number$``, ``$Time$``); ``_compile`` turns a resolved template into the regex
that recognises its paths. The ``_`` helpers are for the package's other modules.

Supported: ``$RepresentationID$`` ``$Number$`` ``$Time$`` ``$Bandwidth$`` ``$$`` and
``%0<width>d``. Not supported (the template is invalid, ``_resolve`` gives ``None``):
``$SubNumber$``, any other identifier, and a width on ``$RepresentationID$``.

Invariants:

- Paths produced here carry no query string or fragment.
- ``_expand`` is the canonical form: a path that a template's regex matches but
  that does not expand back to itself (e.g. a missing zero pad) is not a segment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from shared.dash.presentation import ContentKind, Presentation, Representation, Stream

__all__ = ["segment_paths"]

_TOKEN = re.compile(r"\$([^$]*)\$")
_IDENT = re.compile(r"(RepresentationID|Number|Time|Bandwidth)(?:%0(\d{1,2})d)?")


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
