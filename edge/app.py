"""The edge node: the shared engine with edge policies (players talk to it)."""

from __future__ import annotations

from aiohttp import web

from shared.proxy import make_app as make_node_app
from shared.settings import CacheSettings
from shared.units import parse_size

__all__ = ["DEFAULTS", "make_app"]

DEFAULTS = {
    "name": "edge-1",
    "port": 8080,
    "admin_port": 9080,
    "cache_bytes": parse_size("256MiB"),
    "upstream": ("http://127.0.0.1:8081",),
}


def make_app(settings: CacheSettings) -> web.Application:
    """The edge's proxy app (edge-only policies such as prefetch hook in here)."""
    return make_node_app(settings)
