"""A rendition as a VOD player walks it, whichever manifest described it.

A DASH MPD (``loadtest.dashclient.dash_tracks``) and an HLS media playlist
(``loadtest.hlsclient.hls_track``) of the same CMAF title name the same files:
one init segment and the media segments in order. The player (``loadtest.player``)
walks a ``Track`` without knowing which protocol it came from, so both protocols
share its buffer, its ABR and its reports.

Pure and frozen.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Track"]


@dataclasses.dataclass(frozen=True)
class Track:
    """One rendition: its init segment and media segments as URL paths, and its rate."""

    label: str  # how the report names it: ``"240p 400 kb/s"``
    bandwidth: int  # bits/s the ABR reckons with (DASH ``@bandwidth``, HLS ``BANDWIDTH``)
    init: str | None  # URL path of the init segment; None: self-initialising segments
    segments: tuple[str, ...]  # URL paths of the media segments, first to last
