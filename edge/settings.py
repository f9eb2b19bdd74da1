"""The edge's settings: the common cache settings plus the edge's own policies."""

from __future__ import annotations

import dataclasses
import os

from edge.player import valid_src
from shared.service.settings import CacheSettings, option

__all__ = ["EdgeSettings"]


@dataclasses.dataclass(frozen=True)
class EdgeSettings(CacheSettings):
    """An edge node: players talk to it (CORS, a player page, prefetch)."""

    cors_origin: str = option("", "Access-Control-Allow-Origin for browser players ('' = off)")
    player_dashjs_url: str = option(
        "https://cdn.jsdelivr.net/npm/dashjs@5/dist/modern/umd/dash.all.min.js",
        "dash.js for the edge's /player/ page: an http(s) URL, or a local file the edge"
        " serves at /player/dash.all.min.js ('' = no player page)",
    )
    player_hlsjs_url: str = option(
        "https://cdn.jsdelivr.net/npm/hls.js@1/dist/hls.min.js",
        "hls.js for the player page's .m3u8 sources: an http(s) URL, or a local file the edge"
        " serves at /player/hls.min.js ('' = the browser's own HLS, if any)",
    )
    prefetch: int = option(0, "after segment n, fetch n+1..n+k in the background (0 = off)")
    prefetch_concurrency: int = option(8, "prefetches in flight at once")

    def __post_init__(self) -> None:
        super().__post_init__()
        for flag, url in (
            ("--player-dashjs-url", self.player_dashjs_url),
            ("--player-hlsjs-url", self.player_hlsjs_url),
        ):
            if not url:
                continue
            if url.startswith(("http://", "https://")):
                if not valid_src(url):
                    raise ValueError(f"{flag} is not a valid http(s) URL: {url!r}")
            elif not os.path.isfile(url):
                raise ValueError(f"{flag} must be an http(s) URL or a file: {url!r}")
        if self.prefetch < 0 or self.prefetch_concurrency < 1:
            raise ValueError("--prefetch must be >= 0 and --prefetch-concurrency >= 1")
