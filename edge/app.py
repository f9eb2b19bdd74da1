"""The edge node: the shared engine with edge policies (players talk to it)."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from edge.cors import install_cors
from edge.player import install_player
from edge.prefetch import Prefetcher
from edge.settings import EdgeSettings
from shared.engine.node import NODE
from shared.engine.node import make_app as make_node_app
from shared.service.units import parse_size

__all__ = ["DEFAULTS", "make_app"]

DEFAULTS = {
    "name": "edge-1",
    "port": 8080,
    "admin_port": 9080,
    "cache_bytes": parse_size("256MiB"),
    "upstream": ("http://127.0.0.1:8081",),
    "cors_origin": "*",
    "prefetch": 2,
}


def make_app(settings: EdgeSettings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The engine plus the edge's policies: prefetch, CORS and a player page."""
    app = make_node_app(settings, clock=clock)
    node = app[NODE]
    if settings.prefetch:
        prefetch = Prefetcher(
            node, depth=settings.prefetch, concurrency=settings.prefetch_concurrency
        )
        node.on_request.append(prefetch)
    if settings.cors_origin:
        install_cors(node, settings.cors_origin)
    if settings.player_dashjs_url:
        install_player(app, settings.player_dashjs_url, settings.player_hlsjs_url)
    return app
