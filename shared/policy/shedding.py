"""Request admission (load shedding): which misses a loaded node refuses first.

Pure: the caller counts what is in flight and answers a shed with a cheap 503
(``Retry-After`` is its business). Hits never reach the shedder (DESIGN
invariant 7: hits are never shed).

Each ``Priority`` may use a share of each cap; the least protected stop first,
so under load players step down in quality instead of stalling:

==========================  ======  ====================================
priority                    share   what
==========================  ======  ====================================
MEDIA_TOP                   50 %    highest-bitrate rung of its AdaptationSet
MEDIA_HIGH                  62.5 %  upper rungs
MEDIA_MID, UNKNOWN          75 %    middle rungs; paths no manifest taught us
MEDIA_LOW                   87.5 %  lower rungs
MEDIA_BASE                  100 %   lowest rung (and single-rung sets: audio, text)
INIT, MANIFEST              110 %   a reserve beyond the cap (at least one slot)
==========================  ======  ====================================

Rungs come from the segment index: an MPD's AdaptationSets, or an HLS multivariant
playlist's variants ranked by ``BANDWIDTH`` (its audio and subtitle renditions are
single rungs); MPDs and HLS playlists (``.m3u8``) are MANIFEST.

A request is admitted while the count in flight (not counting itself) is below
``ceil(cap * share)``. The request cap applies to every miss; the fill cap only
to one that needs an upstream fetch (``needs_fill``): joining a fill already in
flight costs no upstream work. Both over: ``SHED_REQUESTS``.

Invariant: a more protected priority is never shed where a less protected one
is admitted (shares are monotonic in ``Priority``).
"""

from __future__ import annotations

import enum

from shared.dash import SegmentInfo, SegmentKind, is_manifest

__all__ = ["Priority", "Shed", "Shedder", "media_priority", "priority_of"]


class Priority(enum.IntEnum):
    """How protected a miss is; higher = shed later. ``name.lower()`` makes a label."""

    MEDIA_TOP = 0
    MEDIA_HIGH = 1
    MEDIA_MID = 2
    UNKNOWN = 3
    MEDIA_LOW = 4
    MEDIA_BASE = 5
    INIT = 6
    MANIFEST = 7


class Shed(enum.Enum):
    ADMIT = "admit"
    SHED_REQUESTS = "shed_requests"  # over this priority's share of max_requests
    SHED_FILLS = "shed_fills"  # over this priority's share of max_fills


_SHARE_PERMILLE = {  # integers, so a limit is exact: ceil(10 * 1.1) is 11, not 12
    Priority.MEDIA_TOP: 500,
    Priority.MEDIA_HIGH: 625,
    Priority.MEDIA_MID: 750,
    Priority.UNKNOWN: 750,
    Priority.MEDIA_LOW: 875,
    Priority.MEDIA_BASE: 1000,
    Priority.INIT: 1100,
    Priority.MANIFEST: 1100,
}
_BETWEEN = (Priority.MEDIA_LOW, Priority.MEDIA_MID, Priority.MEDIA_HIGH)  # inner rungs


def media_priority(rank: int, ranks: int) -> Priority:
    """A media rung's priority: the lowest is BASE, the highest TOP, the rest in between."""
    if ranks <= 1 or rank <= 0:
        return Priority.MEDIA_BASE
    if rank >= ranks - 1:
        return Priority.MEDIA_TOP
    step = round(4 * rank / (ranks - 1))  # 1..3 for inner rungs, proportional to position
    return _BETWEEN[min(3, max(1, step)) - 1]


def priority_of(path: str, info: SegmentInfo | None) -> Priority:
    """Priority of a miss on ``path``; ``info`` is ``SegmentIndex.classify(path)``."""
    if is_manifest(path):
        return Priority.MANIFEST
    if info is None:
        return Priority.UNKNOWN
    if info.kind is SegmentKind.INIT:
        return Priority.INIT
    return media_priority(info.representation.rank, info.representation.ranks)


def _limits(cap: int) -> dict[Priority, int]:
    return {p: -(-cap * share // 1000) for p, share in _SHARE_PERMILLE.items()}


class Shedder:
    """Caps on concurrent requests and fills, shared out by priority. Holds no counts."""

    def __init__(self, max_requests: int, max_fills: int) -> None:
        self.resize(max_requests, max_fills)

    def resize(self, max_requests: int, max_fills: int) -> None:
        """New caps (a reload); misses already admitted keep running."""
        if max_requests < 1 or max_fills < 1:
            raise ValueError(f"caps must be >= 1, got {max_requests=} {max_fills=}")
        self.max_requests = max_requests
        self.max_fills = max_fills
        self._requests = _limits(max_requests)
        self._fills = _limits(max_fills)

    def __repr__(self) -> str:
        return f"Shedder(max_requests={self.max_requests}, max_fills={self.max_fills})"

    def limits(self, priority: Priority) -> tuple[int, int]:
        """(requests, fills) that may be in flight before ``priority`` is shed."""
        return self._requests[priority], self._fills[priority]

    def decide(
        self,
        priority: Priority,
        requests_in_flight: int,
        fills_in_flight: int,
        *,
        needs_fill: bool,
    ) -> Shed:
        """Admit a miss, or say which cap sheds it; counts exclude this request."""
        if requests_in_flight >= self._requests[priority]:
            return Shed.SHED_REQUESTS
        if needs_fill and fills_in_flight >= self._fills[priority]:
            return Shed.SHED_FILLS
        return Shed.ADMIT
