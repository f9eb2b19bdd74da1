"""DASH, pure: MPD parsing, segment templates and the segment index of learned templates.

Modules, each importing only those before it: ``presentation`` (the frozen model),
``template`` (SegmentTemplate expansion, ``segment_paths``), ``mpd`` (``parse_mpd``),
``index`` (``SegmentIndex``, path classification).
"""

from shared.dash.index import SegmentIndex, SegmentInfo, SegmentKind, is_manifest
from shared.dash.mpd import NS, parse_mpd
from shared.dash.presentation import ContentKind, Presentation, Representation, Stream, Timeline
from shared.dash.template import segment_paths

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
