"""HLS, pure: playlists parsed and written (``playlist``).

The segment index (``shared.dash.index``) learns renditions and segments from the
playlists a node serves, as it does from MPDs: one set of CMAF segments, two
descriptions.
"""

from shared.hls.playlist import (
    MediaPlaylist,
    Multivariant,
    Rendition,
    Segment,
    Variant,
    is_playlist,
    parse_playlist,
    render_media,
    render_multivariant,
)

__all__ = [
    "MediaPlaylist",
    "Multivariant",
    "Rendition",
    "Segment",
    "Variant",
    "is_playlist",
    "parse_playlist",
    "render_media",
    "render_multivariant",
]
