"""The DASH presentation model: what an MPD describes, as small frozen values.

Pure: no I/O, no clock. ``parse_mpd`` (``shared.dash.mpd``) builds a ``Presentation``;
``segment_paths`` (``shared.dash.template``) and the ``SegmentIndex``
(``shared.dash.index``) read it.

Invariants:

- Every value is frozen. A ``Stream``'s templates are already resolved to absolute
  URL paths, with only ``$Number$``, ``$Time$`` and ``$$`` left to expand.
- A SegmentTimeline is kept as its runs (``S`` elements), never expanded, so
  ``r="1000000000"`` costs nothing. ``Timeline.length`` is ``None`` when there is
  no known last segment.
- Times are facts of the document: ``Presentation.availability_start`` is a Unix
  time read from the MPD, never compared with a clock here (``available_at`` takes
  none: the caller holds the clock).
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
from typing import NamedTuple

__all__ = [
    "ContentKind",
    "Presentation",
    "Representation",
    "Stream",
    "Timeline",
]


class ContentKind(enum.Enum):
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    OTHER = "other"


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

    def end_at(self, index: int) -> int | None:
        """The end time of segment ``index`` (its start plus its duration), or None."""
        start = self.time_at(index)
        if start is None:
            return None
        run = self.runs[bisect.bisect_right(self.runs, index, key=lambda r: r.first) - 1]
        return start + run.d

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
    availability_offset: float = 0.0  # availabilityTimeOffset, seconds (low latency: > 0)


@dataclasses.dataclass(frozen=True, slots=True)
class Presentation:
    mpd_path: str
    dynamic: bool
    duration: float | None  # mediaPresentationDuration, seconds
    streams: tuple[Stream, ...]
    availability_start: float | None = None  # availabilityStartTime, Unix seconds (dynamic)

    @property
    def representations(self) -> tuple[Representation, ...]:
        return tuple(s.representation for s in self.streams)

    def available_at(self, stream: Stream, index: int) -> float | None:
        """Unix time from which segment ``index`` of ``stream`` may be requested, in a
        dynamic presentation (ISO/IEC 23009-1 §5.3.9.5.3: availabilityStartTime +
        Period@start + the segment's end - availabilityTimeOffset); None when static
        or when the MPD does not say."""
        if not self.dynamic or self.availability_start is None:
            return None
        end = stream.timeline.end_at(index)
        if end is None:
            return None
        media_end = stream.period_start + (end - stream.time_offset) / stream.timescale
        return self.availability_start + media_end - stream.availability_offset
