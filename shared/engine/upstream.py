"""Requests to a node's parents: one pooled ClientSession, timeouts, failover.

The only module that talks aiohttp-client; its exceptions are translated here
into ``shared.engine.errors`` (before the head: unavailable / timeout / bad
response; mid-body: ``TruncatedBody``). Each parent has a circuit breaker;
parents are tried in rendezvous order for the cache key, then the fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from shared.engine.errors import (
    TruncatedBody,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shared.policy.breaker import BreakerState, CircuitBreaker
from shared.policy.hashing import rendezvous_order
from shared.service.metrics import Metrics

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


_FAILOVER_STATUSES = frozenset({502, 503, 504})


class UpstreamPool:
    """The parents of one node, their breakers, and the session used to reach them.

    A request tries the parents in rendezvous order for its key, then the
    fallback (the origin, if configured), skipping parents whose breaker is
    open. A safe request moves on when a parent is unreachable, times out
    before its head, or answers 502/503/504; with every breaker open it fails
    at once, so the caller can serve stale without waiting for a timeout.
    """

    def __init__(
        self,
        parents: Sequence[str],
        *,
        connect_timeout: float,
        read_timeout: float,
        connections: int,
        metrics: Metrics,
        fallback: str = "",
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parents = [p.rstrip("/") for p in parents]
        self.fallback = fallback.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._connections = connections
        self._metrics = metrics
        self._clock = clock
        every = [*self.parents, self.fallback] if self.fallback else self.parents
        self.breakers = {p: breaker() for p in every}
        for parent in every:
            metrics.breaker_state.labels(parent).set(0)
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

    def order(self, key: str) -> list[str]:
        """Parents in the order a request for ``key`` tries them."""
        order = rendezvous_order(self.parents, key)
        return [*order, self.fallback] if self.fallback else order

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
        """Send ``method target`` to the first parent for ``key`` that answers.

        ``target`` is the raw path and query, forwarded unchanged."""
        assert self._session is not None, "UpstreamPool.start() was not awaited"
        safe = data is None and method in ("GET", "HEAD")
        candidates = self.order(key)
        last: UpstreamError | None = None
        for i, parent in enumerate(candidates):
            if not self.breakers[parent].allow(self._clock()):
                continue
            more = safe and i + 1 < len(candidates)
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
                self.breakers[parent].abandon()
                raise
            except Exception as exc:
                last = self._translate(exc, parent)
                self._outcome(parent, type(last).__name__, ok=False)
                if more and not isinstance(last, UpstreamBadResponse):
                    log.warning("parent %s failed (%s), trying the next", parent, last)
                    continue
                raise last from exc
            self._metrics.upstream_seconds.observe(time.monotonic() - started)
            if more and resp.status in _FAILOVER_STATUSES:
                self._outcome(parent, f"{resp.status // 100}xx", ok=False)
                resp.close()
                last = UpstreamUnavailable(f"{parent} answered {resp.status}")
                log.warning("parent %s answered %d, trying the next", parent, resp.status)
                continue
            try:
                yield UpstreamResponse(resp, parent, self._metrics)
            except TruncatedBody:
                self._outcome(parent, "TruncatedBody", ok=False)
                raise
            except BaseException:
                self.breakers[parent].abandon()
                raise
            else:
                self._outcome(parent, f"{resp.status // 100}xx", ok=resp.status < 500)
            finally:
                # A body not read to its end poisons the connection: close it.
                if resp.content.at_eof():
                    resp.release()
                else:
                    resp.close()
            return
        raise last or UpstreamUnavailable("every parent's circuit breaker is open")

    def _outcome(self, parent: str, result: str, *, ok: bool) -> None:
        self._metrics.upstream_requests.labels(parent, result).inc()
        changed = self.breakers[parent].record(ok, self._clock())
        if changed is not None:
            log.warning("parent %s circuit breaker now %s", parent, changed.value)
            self._metrics.breaker_state.labels(parent).set(_STATE_VALUE[changed])

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
        return f"<UpstreamPool parents={self.parents} fallback={self.fallback or None}>"


_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
