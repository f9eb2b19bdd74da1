"""Process plumbing: logging, uvloop, and running a node's listeners.

The only module that configures logging (the access log's pieces are in
``shared.service.accesslog``); with ``--log-json`` every line, the ready line
on stdout included, is one JSON object. ``serve`` runs the main app and its
admin app on their own listeners (``open_listeners``: both under the same
``ConnectionLimits``, see ``shared.service.listener``) until SIGINT/SIGTERM,
then shuts both down. SIGHUP never stops a process: a cache node reloads
(``shared.service.reload``), anything else logs and ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from shared.service import handoff
from shared.service.accesslog import (
    ACCESS,
    AccessLogger,
    JsonFormatter,
    ReopeningFileHandler,
    mark_prepared,
)
from shared.service.connection import ConnectionLimits
from shared.service.limits import raise_fd_limit
from shared.service.listener import Listener, ListenerCollector

__all__ = [
    "AccessLogger",
    "configure_logging",
    "open_listeners",
    "reopen_log_files",
    "run",
    "serve",
]

log = logging.getLogger(__name__)


_READY = logging.getLogger("tiercdn.ready")  # the ready line, on stdout


def configure_logging(
    level: str = "INFO", as_json: bool = False, access_log_file: str = ""
) -> None:
    """Log to stderr, one line per record (JSON lines if ``as_json``), the ready line
    to stdout; access lines to ``access_log_file`` instead when one is given
    (reopened on SIGUSR1, see ``serve``)."""
    formatter: logging.Formatter = JsonFormatter()
    if not as_json:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    ready = logging.StreamHandler(sys.stdout)
    ready.setFormatter(JsonFormatter() if as_json else logging.Formatter("%(message)s"))
    _READY.handlers[:], _READY.propagate = [ready], False
    _READY.setLevel(logging.INFO)
    access = logging.getLogger(ACCESS)
    for old in access.handlers:
        old.close()
    access.handlers[:], access.propagate = [], True
    if access_log_file:
        file = ReopeningFileHandler(access_log_file)
        file.setFormatter(formatter)
        access.handlers[:], access.propagate = [file], False
        access.setLevel(logging.INFO)  # asking for a file asks for the lines


def reopen_log_files() -> None:
    """Start a new access log file at the same path (SIGUSR1: logrotate moved it)."""
    for handler in logging.getLogger(ACCESS).handlers:
        if isinstance(handler, ReopeningFileHandler):
            handler.reopen()


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
    name: str = "",
    also: Sequence[tuple[str, int]] = (),
) -> list[Listener]:
    """Start ``app``'s listener, then ``admin``'s (unless ``admin_port`` is None; 0 is
    any free port); their counts go to ``registry`` when one is given. The caller
    stops them (``Listener.stop``), last first. ``app``'s access lines (``access_log``,
    or an access log file configured) name the node ``name``."""
    limits = limits or ConnectionLimits()
    access_log = access_log or bool(logging.getLogger(ACCESS).handlers)  # a file asks for it
    access = logging.getLogger(f"{ACCESS}.{name}" if name else ACCESS)
    if access_log and mark_prepared not in app.on_response_prepare:
        app.on_response_prepare.append(mark_prepared)
    listeners = [
        Listener(
            app,
            host,
            port,
            limits=limits,
            access_log=access if access_log else None,
            access_log_class=AccessLogger,
            also=also,
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
    name: str = "",
    on_hup: Callable[[], None] | None = None,
    also: Sequence[tuple[str, int]] = (),
) -> None:
    """Run ``app`` (and ``admin``, unless ``admin_port`` is 0) until SIGINT or SIGTERM,
    then stop cleanly; SIGUSR1 reopens the access log file; SIGHUP calls ``on_hup``
    (a reload), or is logged and ignored: it never stops the process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)
    loop.add_signal_handler(signal.SIGHUP, on_hup or _ignore_hup)
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
        name=name,
        also=also,
    )
    try:
        where = [f"{x.host}:{x.port}" for x in listeners] + [f"{h}:{p}" for h, p in also]
        log.info("listening on %s", ", ".join(where))
        handoff.ready()  # a supervisor waiting for this process (a graceful restart)
        if ready_message and _READY.handlers:
            _READY.info(ready_message)
        elif ready_message:  # logging not configured: a plain line
            print(ready_message, flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        for listener in reversed(listeners):
            with contextlib.suppress(Exception):
                await listener.stop()


def _ignore_hup() -> None:
    log.info("SIGHUP ignored: nothing here reloads (restart to change settings)")


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
        if any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers):
            log.error("error: %s", exc)  # --log-json: even this line is JSON
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    log.info("stopped after %.1fs", time.monotonic() - started)
    return 0
