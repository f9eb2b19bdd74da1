"""A live channel as a low-latency player sees it: segment availability, the live edge,
a throughput ABR and a buffer that stalls.

Pure: no I/O, no clock (``now`` is a parameter). ``parse_channel`` reads a dynamic MPD
(``shared.dash.parse_mpd`` for the streams, plus the timing it leaves out:
``availabilityStartTime``, ``availabilityTimeOffset``, the ``ServiceDescription``
latency target, the run's ``BaseURL``).

Invariants:

- Segment ``n`` (``$Number$``) covers media ``[(n - startNumber) * d, + d)`` after
  ``AST + Period@start``; in LL-DASH it may be asked for once its first chunk can
  exist: ``AST + period start + (n - startNumber) * d + d - availabilityTimeOffset``
  (``availability``). The live edge is the newest segment available at ``now``.
- ``Playhead``: a viewer plays segment ``first`` from ``max(its media start +
  latency target, its completion)`` on; segment ``n`` is due ``(n - first) * d``
  later, plus every stall so far; it stalls when it is complete (video and audio)
  only after it is due, for as long as it is late.
- ``next_rung`` moves up at most one rung at a time and only with headroom; it
  steps down at once when a segment was late or the estimate no longer carries the rung.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from loadtest.dashclient import ladder, media_path
from shared.dash import Stream, parse_mpd

__all__ = [
    "HEADROOM",
    "Channel",
    "Playhead",
    "Throughput",
    "next_rung",
    "parse_channel",
    "parse_max_age",
]

HEADROOM = 0.7  # a rung needs its bandwidth within this share of the estimate
_NS = "{urn:mpeg:dash:schema:mpd:2011}"


@dataclasses.dataclass(frozen=True)
class Channel:
    """One run of a live channel: its streams and its timing (epoch seconds)."""

    mpd_path: str
    base: str  # the run's BaseURL: a new run (encoder restart) has a new one
    ast: float  # availabilityStartTime
    period_start: float  # seconds after ``ast``
    segment: float  # seconds per segment (SegmentTemplate@duration / @timescale)
    offset: float  # availabilityTimeOffset, seconds
    latency: float  # the ServiceDescription's latency target, seconds
    start_number: int
    video: tuple[Stream, ...]  # by rank, 0 = lowest bitrate
    audio: Stream | None

    def media_start(self, n: int) -> float:
        """When segment ``n``'s media starts being encoded."""
        return self.ast + self.period_start + (n - self.start_number) * self.segment

    def availability(self, n: int) -> float:
        """When segment ``n`` may be asked for: its first chunk exists (LL-DASH)."""
        return self.media_start(n) + self.segment - self.offset

    def live_edge(self, now: float) -> int:
        """The newest segment available at ``now`` (``start_number`` before any is)."""
        since = now - self.availability(self.start_number)
        return self.start_number + max(0, math.floor(since / self.segment))

    def path(self, stream: Stream, n: int) -> str:
        """The URL path of segment ``n`` of ``stream``."""
        return media_path(stream, n - self.start_number)

    @property
    def bandwidths(self) -> list[int]:
        return [s.representation.bandwidth for s in self.video]


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def parse_channel(xml: bytes, mpd_path: str) -> Channel:
    """The live channel a dynamic MPD describes; ``ValueError`` if it is not one."""
    presentation = parse_mpd(xml, mpd_path)
    root = ET.fromstring(xml)
    ast = root.get("availabilityStartTime")
    if not presentation.dynamic or ast is None:
        raise ValueError("not a live (dynamic) MPD with an availabilityStartTime")
    video, audio = ladder(presentation)
    if not video or not video[0].timeline.runs:
        raise ValueError("no video stream addressed by SegmentTemplate@duration")
    template = root.find(f".//{_NS}SegmentTemplate")
    offset = float(template.get("availabilityTimeOffset", "0")) if template is not None else 0.0
    target = root.find(f"{_NS}ServiceDescription/{_NS}Latency")
    base = root.find(f"{_NS}BaseURL")
    first = video[0]
    return Channel(
        mpd_path=mpd_path,
        base="" if base is None or base.text is None else base.text.strip(),
        ast=_epoch(ast),
        period_start=first.period_start,
        segment=first.timeline.runs[0].d / first.timescale,
        offset=0.0 if math.isinf(offset) else offset,
        latency=int(target.get("target", "3000")) / 1000 if target is not None else 3.0,
        start_number=first.start_number,
        video=tuple(video),
        audio=audio,
    )


def parse_max_age(cache_control: str, default: float = 1.0) -> float:
    """``max-age`` of a Cache-Control value in seconds (``default`` without one)."""
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.strip().isdigit():
            return float(value)
    return default


class Throughput:
    """An EWMA of what a link carries while bytes flow: a chunked live segment takes
    its whole duration to arrive, so only the time spent receiving counts (the
    gaps spent waiting for the encoder's next chunk do not)."""

    def __init__(self, weight: float = 0.5) -> None:
        self.weight = weight
        self.bps: float | None = None

    def add(self, size: int, busy: float) -> None:
        sample = 8 * size / max(busy, 1e-3)
        self.bps = (
            sample if self.bps is None else self.weight * sample + (1 - self.weight) * self.bps
        )

    def __repr__(self) -> str:
        return f"<Throughput {self.bps or 0:.0f} b/s>"


def next_rung(rung: int, bandwidths: Sequence[int], bps: float | None, late: bool) -> int:
    """The rung for the next segment: down one when the last was late, else the
    highest the estimate carries with ``HEADROOM``, climbing one rung at a time."""
    if late:
        return max(0, rung - 1)
    if bps is None:
        return rung
    fits = [i for i, b in enumerate(bandwidths) if b <= HEADROOM * bps]
    target = fits[-1] if fits else 0
    return min(target, rung + 1)


class Playhead:
    """A viewer's playback of segments ``first``, ``first + 1``, ... (see the module)."""

    def __init__(self, first: int, media_start: float, latency: float, segment: float) -> None:
        self.first, self.segment = first, segment
        self.target = media_start + latency  # when it would like to play ``first``
        self.media_start = media_start
        self.started: float | None = None  # when ``first`` started playing
        self.stalled = 0.0  # seconds stalled so far
        self.stalls = 0

    def due(self, n: int) -> float | None:
        """When segment ``n`` starts playing if nothing stalls from now on."""
        if self.started is None:
            return None
        return self.started + (n - self.first) * self.segment + self.stalled

    def arrived(self, n: int, complete: float) -> float:
        """Segment ``n`` is complete at ``complete``: the stall it causes (seconds)."""
        due = self.due(n)
        if due is None:
            self.started = max(self.target, complete)
            return 0.0
        late = max(0.0, complete - due)
        if late > 0:
            self.stalled += late
            self.stalls += 1
        return late

    @property
    def latency(self) -> float | None:
        """Wall clock minus the media time being played (after the last segment)."""
        return None if self.started is None else self.started - self.media_start + self.stalled

    def __repr__(self) -> str:
        return f"<Playhead from {self.first} stalls={self.stalls} ({self.stalled:.2f}s)>"
