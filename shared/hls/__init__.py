"""HLS, pure: playlists parsed and written (``playlist``), and the playlist index
(``index``: renditions and listed segments learned from the playlists a node serves).

The segment index (``shared.dash.index``) hands HLS playlists to a ``PlaylistIndex``,
as it learns MPDs itself: one set of CMAF segments, two descriptions.
``shared.hls.index`` imports ``shared.dash.presentation`` and ``shared.dash.index``
imports ``shared.hls.index`` as a module, so either package may be imported first.
"""

from shared.hls.index import Listed, PlaylistIndex, media_playlists, segment_paths
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
    "Listed",
    "MediaPlaylist",
    "Multivariant",
    "PlaylistIndex",
    "Rendition",
    "Segment",
    "Variant",
    "is_playlist",
    "media_playlists",
    "parse_playlist",
    "render_media",
    "render_multivariant",
    "segment_paths",
]
