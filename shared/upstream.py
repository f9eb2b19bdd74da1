"""Requests to a node's parents: one pooled ClientSession, timeouts, failover.

The only module that talks aiohttp-client; its exceptions are translated here
into ``shared.errors`` (before the head: unavailable / timeout / bad
response; mid-body: ``TruncatedBody``). Parents are tried in rendezvous order
for the cache key, moving on when one cannot be reached at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from shared.errors import (
    TruncatedBody,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shared.hashring import rendezvous_order
from shared.metrics import Metrics

__all__ = ["UpstreamPool", "UpstreamResponse"]

log = logging.getLogger(__name__)


class UpstreamResponse:
    """A parent's response head and a body iterator that raises ``TruncatedBody``."""

    def __init__(self, resp: aiohttp.ClientResponse, parent: str, metrics: Metrics) -> None:
        self._resp = resp
        self.parent = parent
        self.status = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers
        self.content_length = resp.content_length
        self._metrics = metrics

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a short or stalled body raises ``TruncatedBody``."""
        try:
            async for chunk in self._resp.content.iter_any():
                self._metrics.upstream_bytes.inc(len(chunk))
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise TruncatedBody(f"upstream body cut short: {exc}") from exc
        except TimeoutError as exc:
            raise TruncatedBody("upstream body stalled (read timeout)") from exc


class UpstreamPool:
    """The parents of one node and the session used to reach them."""

    def __init__(
        self,
        parents: Sequence[str],
        *,
        connect_timeout: float,
        read_timeout: float,
        connections: int,
        metrics: Metrics,
    ) -> None:
        self.parents = [p.rstrip("/") for p in parents]
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._connections = connections
        self._metrics = metrics
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=self._connections, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,  # bytes pass through as the parent encoded them
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            max_field_size=16384,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        *,
        key: str,
        data: Any = None,
    ) -> AsyncIterator[UpstreamResponse]:
        """Send ``method target`` to the first reachable parent for ``key``.

        ``target`` is the raw path and query, forwarded unchanged."""
        assert self._session is not None, "UpstreamPool.start() was not awaited"
        order = rendezvous_order(self.parents, key)
        last: UpstreamError | None = None
        for i, parent in enumerate(order):
            started = time.monotonic()
            try:
                resp = await self._session.request(
                    method,
                    URL(parent + target, encoded=True),
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last = self._translate(exc, parent)
                self._metrics.upstream_requests.labels(type(last).__name__).inc()
                # Only an unreachable parent is worth the next one: a timeout or a
                # bad answer may be load the next parent should not inherit.
                if isinstance(last, UpstreamUnavailable) and data is None and i + 1 < len(order):
                    log.warning("parent %s unreachable (%s), trying the next", parent, last)
                    continue
                raise last from exc
            self._metrics.upstream_seconds.observe(time.monotonic() - started)
            self._metrics.upstream_requests.labels(f"{resp.status // 100}xx").inc()
            try:
                yield UpstreamResponse(resp, parent, self._metrics)
            finally:
                # A body not read to its end poisons the connection: close it.
                if resp.content.at_eof():
                    resp.release()
                else:
                    resp.close()
            return
        assert last is not None
        raise last

    @staticmethod
    def _translate(exc: BaseException, parent: str) -> UpstreamError:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return UpstreamTimeout(f"connect to {parent} timed out")
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(f"{parent} sent no response head in time")
        if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionError):
            return UpstreamUnavailable(f"{parent} unreachable: {exc}")
        if isinstance(exc, aiohttp.ClientResponseError):
            return UpstreamBadResponse(f"{parent} sent an invalid response: {exc.message}")
        return UpstreamBadResponse(f"{parent}: {exc!r}")

    def __repr__(self) -> str:
        return f"<UpstreamPool parents={self.parents}>"
