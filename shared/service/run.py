"""Process plumbing: logging, uvloop, and running a node's listeners.

The only module that configures logging. ``serve`` runs the main app and its
admin app on their own listeners (``open_listeners``: both under the same
``ConnectionLimits``, see ``shared.service.listener``) until SIGINT/SIGTERM,
then shuts both down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CollectorRegistry

from shared.service.connection import ConnectionLimits
from shared.service.limits import raise_fd_limit
from shared.service.listener import Listener, ListenerCollector

__all__ = ["AccessLogger", "configure_logging", "open_listeners", "run", "serve"]

log = logging.getLogger(__name__)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Log to stderr, one line per record (JSON lines if ``as_json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class AccessLogger(AbstractAccessLogger):
    """One line per request: method, path, status, bytes, time and Cache-Status."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.1fms "%s"',
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            response.body_length,
            time * 1000,
            response.headers.get("Cache-Status", "-"),
        )


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# A token of any size is judged by the admin app (401/403), not refused by the parser.
ADMIN_MAX_FIELD = 128 * 1024


async def open_listeners(
    app: web.Application,
    host: str,
    port: int,
    admin: web.Application | None = None,
    admin_host: str = "127.0.0.1",
    admin_port: int | None = None,
    *,
    limits: ConnectionLimits | None = None,
    access_log: bool = False,
    registry: CollectorRegistry | None = None,
) -> list[Listener]:
    """Start ``app``'s listener, then ``admin``'s (unless ``admin_port`` is None; 0 is
    any free port); their counts go to ``registry`` when one is given. The caller
    stops them (``Listener.stop``), last first."""
    limits = limits or ConnectionLimits()
    listeners = [
        Listener(
            app,
            host,
            port,
            limits=limits,
            access_log=logging.getLogger("tiercdn.access") if access_log else None,
            access_log_class=AccessLogger,
        )
    ]
    if admin is not None and admin_port is not None:
        listeners.append(
            Listener(
                admin,
                admin_host,
                admin_port,
                limits=limits,
                name="admin",
                max_field_size=ADMIN_MAX_FIELD,
            )
        )
    started: list[Listener] = []
    try:
        for listener in listeners:
            await listener.start()
            started.append(listener)
    except BaseException:
        for listener in reversed(started):
            with contextlib.suppress(Exception):
                await listener.stop()
        raise
    if registry is not None:
        registry.register(ListenerCollector(listener.stats for listener in listeners))
    return listeners


async def serve(
    app: web.Application,
    host: str,
    port: int,
    admin: web.Application | None = None,
    admin_host: str = "127.0.0.1",
    admin_port: int = 0,
    access_log: bool = False,
    ready_message: str | None = None,
    limits: ConnectionLimits | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Run ``app`` (and ``admin``, unless ``admin_port`` is 0) until SIGINT or SIGTERM,
    then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    listeners = await open_listeners(
        app,
        host,
        port,
        admin,
        admin_host,
        admin_port or None,
        limits=limits,
        access_log=access_log,
        registry=registry,
    )
    try:
        log.info("listening on %s", ", ".join(f"{x.host}:{x.port}" for x in listeners))
        if ready_message:
            print(ready_message, flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        for listener in reversed(listeners):
            with contextlib.suppress(Exception):
                await listener.stop()


def run(coro_factory: Any, *, use_uvloop: bool = True) -> int:
    """Run ``coro_factory()`` (on uvloop unless told otherwise); a bind error
    becomes a clear message. The origin keeps the stock loop: it has
    ``loop.sendfile`` (uvloop does not), which ``web.FileResponse`` uses."""
    raise_fd_limit()  # a flash crowd is thousands of sockets
    if use_uvloop:
        _install_uvloop()
    started = time.monotonic()
    try:
        asyncio.run(coro_factory())
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    log.info("stopped after %.1fs", time.monotonic() - started)
    return 0
