"""Listeners: one TCP listener per application, a deadline on every connection.

``Listener`` serves an application (through its own ``web.AppRunner``, for the
app's startup and cleanup) on a socket whose protocol factory makes a
``shared.service.connection.Connection`` per client, under the listener's
``ConnectionLimits``: header, keep-alive and send timeouts, vetted request
heads, quiet client faults. Beyond ``max_connections`` open connections it
makes a ``Refusal`` instead (``503`` with ``Retry-After``, then close),
counted and logged at most once a second. ``ListenerCollector`` exposes the
counts of some listeners to Prometheus at scrape time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_log import AccessLogger as AiohttpAccessLogger
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shared.service.connection import Connection, ConnectionLimits, ConnectionStats, Refusal
from shared.service.handoff import inherited

__all__ = ["Listener", "ListenerCollector"]

log = logging.getLogger(__name__)


class Listener:
    """One application served on ``host:port`` under ``limits``."""

    def __init__(
        self,
        app: web.Application,
        host: str | None,
        port: int,
        *,
        limits: ConnectionLimits,
        name: str = "main",
        access_log: logging.Logger | None = None,
        access_log_class: type[AbstractAccessLogger] = AiohttpAccessLogger,
        backlog: int = 4096,
        max_field_size: int = 8190,
        also: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.app, self.host, self.limits, self.backlog = app, host, limits, backlog
        self.also = list(also)  # more addresses serving the same app (a worker's peer port)
        self._more: list[asyncio.Server] = []
        self.stats = ConnectionStats(name)
        self._port = port
        self._handler_args: dict[str, Any] = {
            "keepalive_timeout": limits.keepalive_timeout,
            "access_log": access_log,
            "access_log_class": access_log_class,
            "max_field_size": max_field_size,  # aiohttp's default; the admin's is larger
        }
        self._runner = web.AppRunner(app, handle_signals=False, **self._handler_args)
        self._server: asyncio.Server | None = None
        self._warn_after = 0.0  # loop time of the next over-cap warning

    @property
    def port(self) -> int:
        """The bound port (the requested one before ``start``)."""
        if self._server is not None:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def start(self) -> None:
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        # A flash crowd opens thousands of connections at once: a deep accept queue
        # (the kernel caps it at net.core.somaxconn) instead of SYN retries.
        sock = inherited(self.host, self._port)  # handed over by tiercdn up: serve it
        if sock is not None:
            self._server = await loop.create_server(self._protocol, sock=sock, backlog=self.backlog)
        else:
            self._server = await loop.create_server(
                self._protocol, self.host, self._port, backlog=self.backlog, reuse_address=True
            )
        for host, port in self.also:
            sock = inherited(host, port)
            if sock is not None:
                more = await loop.create_server(self._protocol, sock=sock, backlog=self.backlog)
            else:
                more = await loop.create_server(
                    self._protocol, host, port, backlog=self.backlog, reuse_address=True
                )
            self._more.append(more)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            # Linux aborts a connection whose sent bytes stay unacknowledged (or whose
            # client keeps its window shut) this long, whoever wrote them: sendfile
            # too, which bypasses the transport. Accepted sockets inherit it.
            ms = max(1, int(self.limits.send_timeout * 1000))
            for sock in [x for server in (self._server, *self._more) for x in server.sockets]:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)

    async def stop(self) -> None:
        """Stop accepting, close idle connections, let handlers finish, run cleanup."""
        if self._server is not None:
            self._server.close()
        for more in self._more:
            more.close()
        await self._runner.cleanup()

    def _protocol(self) -> asyncio.BaseProtocol:
        stats, cap = self.stats, self.limits.max_connections
        if cap and stats.open >= cap:
            stats.refused += 1
            loop = asyncio.get_running_loop()
            if loop.time() >= self._warn_after:
                self._warn_after = loop.time() + 1.0
                log.warning(
                    "listener %s: %d connections open (--max-connections): answering 503, "
                    "%d refused so far",
                    stats.name,
                    stats.open,
                    stats.refused,
                )
            return Refusal()
        server = self._runner.server
        assert server is not None, "start() first"
        stats.open += 1  # here, not in connection_made: an accept burst must see it
        stats.accepted += 1
        loop = asyncio.get_running_loop()
        return Connection(server, self.limits, stats, loop=loop, **self._handler_args)

    def __repr__(self) -> str:
        return f"<Listener {self.stats.name} {self.host}:{self.port} {self.stats!r}>"


class ListenerCollector(Collector):
    """``tiercdn_connections_*`` and ``tiercdn_client_errors_total`` of some listeners."""

    def __init__(self, stats: Iterable[ConnectionStats]) -> None:
        self.stats = tuple(stats)

    def collect(self) -> Iterator[Metric]:
        opened = GaugeMetricFamily(
            "tiercdn_connections_open", "Client connections open, by listener", labels=["listener"]
        )
        accepted = CounterMetricFamily(
            "tiercdn_connections_accepted", "Client connections served, by listener",
            labels=["listener"],
        )  # fmt: skip
        refused = CounterMetricFamily(
            "tiercdn_connections_refused",
            "Connections answered 503 and closed at --max-connections, by listener",
            labels=["listener"],
        )
        errors = CounterMetricFamily(
            "tiercdn_client_errors",
            "Client faults (timeouts, malformed requests, aborts) by listener and reason",
            labels=["listener", "reason"],
        )
        for s in self.stats:
            opened.add_metric([s.name], s.open)
            accepted.add_metric([s.name], s.accepted)
            refused.add_metric([s.name], s.refused)
            for fault, n in s.faults.items():
                errors.add_metric([s.name, fault.value], n)
        yield from (opened, accepted, refused, errors)

    def describe(self) -> Iterator[Metric]:
        return iter(())
