"""The regional node (origin shield): the shared engine with shield policies."""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from regional.settings import RegionalSettings
from shared.engine.node import make_app as make_node_app
from shared.service.units import parse_size

__all__ = ["DEFAULTS", "make_app"]

DEFAULTS = {
    "name": "regional-1",
    "port": 8081,
    "admin_port": 9081,
    "cache_bytes": parse_size("1GiB"),
    "upstream": ("http://127.0.0.1:8082",),
    # The shield protects the origin: at most 1000 fetches/s (bursts of 200) and
    # 128 at once; beyond that, stale copies or a fast 503 + Retry-After.
    "origin_rate": 1000.0,
    "origin_burst": 200,
    "origin_concurrency": 128,
    # The shield keeps the catalogue on disk (memory is its hot tier): restarts keep it.
    "disk_path": "cache/regional-1",
    "disk_bytes": parse_size("10GiB"),
}


def make_app(
    settings: RegionalSettings, *, clock: Callable[[], float] = time.time
) -> web.Application:
    """The regional's proxy app (shield policies such as the origin budget hook in here)."""
    return make_node_app(settings, clock=clock)
