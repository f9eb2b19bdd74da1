"""Reload (SIGHUP): the origin reads its settings again and applies them while it serves.

Live: everything read per request. Cache-Control of manifests, segments and
errors, both CDN-Cache-Control values, the faults (delay, rate, status, reset
rate: the last two as ``PUT /faults`` sets them, and only when the file changed
them), the log level, the name in /stats, and the library: a new path is a new
``Library`` (cheap: it resolves the root and starts empty caches; titles are
listed and paths resolved per request anyway), refused like a bad file if it is
not a directory. Listeners (hosts, ports, connection limits), the access log,
JSON logging, ``fault_control`` (admin routes made at start) and the live channels
(``--live``, ``--live-ladder``: a reload never starts, stops or re-encodes a channel)
need a restart: they are named and keep their old values.

Nothing in flight is cut: a response already started keeps its open file and
its headers. The shared parts (``diff``, ``reload_with``) are the cache nodes'.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from origin.app import CURRENT_KEY, FAULTS_KEY
from origin.library import Library
from origin.settings import OriginSettings
from shared.service.reload import diff, reload_with

__all__ = ["LIVE", "RESTART", "apply", "checked", "reload"]

RESTART = frozenset(
    {
        *("host", "port", "admin_host", "admin_port", "max_connections"),
        *("client_header_timeout", "keepalive_timeout", "send_timeout"),
        *("access_log", "access_log_file", "log_json", "fault_control"),
        *("live", "live_ladder"),  # channels and their encoders are made at start
    }
)
LIVE = frozenset(f.name for f in dataclasses.fields(OriginSettings)) - RESTART


def apply(app: web.Application, new: OriginSettings) -> list[str]:
    """Apply ``new`` to the origin ``app``; the changed fields as flags, those not
    applied marked ``"--port (needs a restart)"``."""
    current = app[CURRENT_KEY]
    s, live, changes = diff(current.settings, new, LIVE)
    if "library" in live:
        current.library = Library(Path(s.library))
    faults = app[FAULTS_KEY]
    if "fault_status" in live:
        faults.status = s.fault_status
    if "fault_reset_rate" in live:
        faults.reset_rate = s.fault_reset_rate
    if "log_level" in live:
        logging.getLogger().setLevel(s.log_level.upper())
    current.settings = s
    return changes


def checked(read: Callable[[], OriginSettings]) -> Callable[[], OriginSettings]:
    """``read``, refusing settings whose library is not a directory (as ``load``
    refuses a bad value: ``SystemExit`` with one ``error:`` line)."""

    def read_checked() -> OriginSettings:
        settings = read()
        if not Path(settings.library).is_dir():
            raise SystemExit(f"error: library directory not found: {settings.library}")
        return settings

    return read_checked


async def reload(app: web.Application, read: Callable[[], OriginSettings]) -> list[str] | None:
    """SIGHUP: ``read`` the settings again as the origin started, apply them; None
    when they are refused (one ERROR line, the old settings kept)."""
    name = app[CURRENT_KEY].settings.name
    return await reload_with(name, checked(read), lambda new: apply(app, new))
