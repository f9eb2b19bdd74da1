"""DASH, pure: MPD parsing, segment templates and the segment index of learned templates."""

from shared.dash.mpd import (
    NS,
    ContentKind,
    Presentation,
    Representation,
    SegmentIndex,
    SegmentInfo,
    SegmentKind,
    Stream,
    Timeline,
    is_manifest,
    parse_mpd,
    segment_paths,
)

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
