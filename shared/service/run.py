"""Process plumbing: logging, uvloop, and running a node's listeners.

The only module that configures logging. ``serve`` runs the main app and its
admin app on their own listeners until SIGINT/SIGTERM, then shuts both down.
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

from shared.service.limits import raise_fd_limit

__all__ = ["AccessLogger", "configure_logging", "run", "serve"]

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


async def serve(
    app: web.Application,
    host: str,
    port: int,
    admin: web.Application | None = None,
    admin_host: str = "127.0.0.1",
    admin_port: int = 0,
    access_log: bool = False,
    ready_message: str | None = None,
) -> None:
    """Run ``app`` (and ``admin``) until SIGINT or SIGTERM, then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runners: list[web.AppRunner] = []
    try:
        runner = web.AppRunner(
            app,
            access_log=logging.getLogger("tiercdn.access") if access_log else None,
            access_log_class=AccessLogger,
            handle_signals=False,
        )
        await runner.setup()
        runners.append(runner)
        # A flash crowd opens thousands of connections at once: a deep accept queue
        # (the kernel caps it at net.core.somaxconn) instead of SYN retries.
        await web.TCPSite(runner, host, port, reuse_address=True, backlog=4096).start()
        if admin is not None and admin_port:
            admin_runner = web.AppRunner(admin, access_log=None, handle_signals=False)
            await admin_runner.setup()
            runners.append(admin_runner)
            await web.TCPSite(admin_runner, admin_host, admin_port, reuse_address=True).start()
        log.info("listening on http://%s:%d (admin %s:%d)", host, port, admin_host, admin_port)
        if ready_message:
            print(ready_message, flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        for r in reversed(runners):
            with contextlib.suppress(Exception):
                await r.cleanup()


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
