"""Requests to a node's parents: one pooled ClientSession, timeouts, failover.

The only module that talks aiohttp-client; its exceptions are translated here
into ``shared.engine.errors`` (before the head: unavailable / timeout / bad
response; mid-body: ``TruncatedBody``). Each parent has a circuit breaker;
parents are tried in rendezvous order for the cache key, then the fallback.

Owner routing, on two levels: the machines of a point of presence (``peers``,
from ``--peer``/``--peers-dns``, this one being ``self_url``) and the workers
of one machine (``siblings``, set by the ``--workers`` supervisor, this one
being ``sibling_url``). Every member ranks the members of a level by
rendezvous hashing of the key, the same order everywhere; the first is the
key's *owner* at that level. A client's fill goes to the owning machine when
that is another one (marked ``PEER_HEADER: machine``); on the owning machine
(a client's, or a ``machine`` request) to the owning worker when that is
another one (marked ``worker``); a ``worker`` request goes to the parents. So
every member's misses of a key meet at one worker, which asks the parent once,
and no request is forwarded twice at one level (no loops). A dead owner is
skipped at once (refused connection), a failing one after its breaker opens;
either way the request goes on to the next route, then the parents.

Faults stay small:

- The last route is never closed: when every breaker refuses, the request still
  goes upstream (every candidate again, in order), unless the caller has a stale
  copy to serve instead (``fail_fast``).
- A request without a body that fails on a *reused* pooled connection before any
  response byte (the upstream closed it while idle: the keep-alive race) is sent
  once more on a new connection, as nginx's ``proxy_next_upstream error`` does.
  Pooled connections idle longer than ``idle_timeout`` are not reused.
- Read timeouts are ours (``asyncio.timeout`` around the head and each body
  read), not aiohttp's ``sock_read``: aiohttp 3.14 can re-arm that timer on a
  connection already back in the pool, and it later fails whichever request
  reuses the connection, at once (aio-libs/aiohttp#12953).
- A body longer than its ``Content-Length`` keeps exactly ``Content-Length``
  bytes and the connection is dropped (RFC 9112 §6.3; ``engine/framing.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import types
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from shared.engine.errors import (
    TruncatedBody,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shared.engine.framing import FramedConnector
from shared.policy.breaker import BreakerState, CircuitBreaker
from shared.policy.hashing import rendezvous_order
from shared.service.metrics import Metrics, UpstreamFaults

__all__ = [
    "CLIENT",
    "MACHINE",
    "PEER_HEADER",
    "UpstreamPool",
    "UpstreamResponse",
    "WORKER",
    "hop_of",
]

log = logging.getLogger(__name__)

PEER_HEADER = "Tiercdn-Peer"  # on a fill forwarded to its owner: the level it was sent at
CLIENT, MACHINE, WORKER = "client", "machine", "worker"  # a fill's hop: where it came from
_PEER_CONNECT = 0.5  # seconds: the longest connect to a peer (a vanished pod's address)
# Answers that count against a parent and move a safe request on to the next one.
_FAILOVER_STATUSES = frozenset({502, 503, 504})
# How a pooled connection the parent closed while idle fails, before any response byte.
_DEAD_CONNECTION = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientConnectionResetError,
)


class UpstreamResponse:
    """A parent's response head and a body iterator that raises ``TruncatedBody``."""

    def __init__(
        self, resp: aiohttp.ClientResponse, parent: str, metrics: Metrics, read_timeout: float
    ) -> None:
        self._resp = resp
        self.parent = parent
        self.status = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers
        self.content_length = resp.content_length
        self._metrics = metrics
        self._read_timeout = read_timeout

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a short body, or none for ``read_timeout``, raises
        ``TruncatedBody``."""
        content = self._resp.content
        try:
            while True:
                async with asyncio.timeout(self._read_timeout):
                    chunk = await content.readany()
                if not chunk:
                    return
                self._metrics.upstream_bytes.inc(len(chunk))
                yield chunk
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            raise TruncatedBody(f"upstream body cut short: {exc}") from exc
        except TimeoutError as exc:
            raise TruncatedBody("upstream body stalled (read timeout)") from exc


class _Attempt:
    """Per request, filled in by the pooled session's trace hooks."""

    __slots__ = ("reused",)

    def __init__(self) -> None:
        self.reused = False


class UpstreamPool:
    """The parents of one node, their breakers, and the sessions used to reach them.

    A request tries the parents in rendezvous order for its key, then the
    fallback (the origin, if configured), skipping parents whose breaker
    refuses. A safe request moves on when a parent is unreachable, times out
    before its head, or answers 502/503/504. When every breaker refuses, it
    goes to them all again in order (the last route), or with ``fail_fast``
    fails at once so the caller serves its stale copy without waiting.
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
        idle_timeout: float = 4.0,
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parents = [p.rstrip("/") for p in parents]
        self.fallback = fallback.rstrip("/")
        # sock_read stays off: read timeouts are ours (see the module docstring)
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        # an owner in this PoP answers a connect within a LAN round trip, or is gone
        self._peer_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(connect_timeout, _PEER_CONNECT)
        )
        self._read_timeout = read_timeout
        self._idle_timeout = idle_timeout
        self._connections = connections
        self._metrics = metrics
        self.faults = UpstreamFaults.create(metrics.registry)
        self._clock = clock
        self._breaker = breaker
        self.breakers: dict[str, CircuitBreaker] = {}
        self.peers: list[str] = []  # the other machines of this point of presence
        self.self_url = ""  # this machine, as its peers name it
        self.siblings: list[str] = []  # the other workers of this machine
        self.sibling_url = ""  # this worker, as its siblings name it
        self._members: frozenset[str] = frozenset()  # peers and siblings
        self.member_hosts: frozenset[str] = frozenset()  # their addresses: whose mark counts
        # (empty: this node routes to no owner, and a peer's mark means nothing here)
        self.reroute(parents, fallback)
        self._session: aiohttp.ClientSession | None = None  # pooled keep-alive connections
        self._fresh: aiohttp.ClientSession | None = None  # a new connection per request

    def reroute(self, parents: Sequence[str], fallback: str = "") -> None:
        """New parents and fallback (a reload): the session stays; a parent kept keeps
        its breaker, a new one starts closed. A request already sent to a parent
        dropped here finishes there."""
        self.parents = [p.rstrip("/") for p in parents]
        self.fallback = fallback.rstrip("/")
        every = [*self.parents, self.fallback] if self.fallback else self.parents
        self._members = frozenset([*self.peers, *self.siblings])
        self.member_hosts = frozenset(str(URL(m).host) for m in self._members)
        every = [*every, *self._members]
        self.breakers = {p: self.breakers.get(p) or self._breaker() for p in every}
        for parent in every:
            if self.breakers[parent].state is BreakerState.CLOSED:
                self._metrics.breaker_state.labels(parent).set(0)

    def repeer(self, peers: Sequence[str], self_url: str) -> None:
        """New members of this point of presence (``self_url`` is this one; it is not
        a peer of itself): only the keys of members that came or went move."""
        me = self_url.rstrip("/")
        self.self_url = me
        self.peers = sorted({p.rstrip("/") for p in peers} - {me})
        self.reroute(self.parents, self.fallback)

    def resibling(self, siblings: Sequence[str], self_url: str) -> None:
        """The workers of this machine (``self_url`` is this one), as ``repeer``."""
        me = self_url.rstrip("/")
        self.sibling_url = me
        self.siblings = sorted({p.rstrip("/") for p in siblings} - {me})
        self.reroute(self.parents, self.fallback)

    def owner(self, key: str) -> str:
        """The machine that owns ``key`` (``self_url`` when it is this one)."""
        return _owner(self.self_url, self.peers, key)

    def sibling_owner(self, key: str) -> str:
        """The worker of this machine that owns ``key`` (``sibling_url``: this one)."""
        return _owner(self.sibling_url, self.siblings, key)

    def retune_breakers(self, breaker: Callable[[], CircuitBreaker]) -> None:
        """New breaker thresholds (a reload): new breakers are made by ``breaker``;
        existing ones keep their state and counts and take its thresholds."""
        self._breaker = breaker
        model = breaker()
        for b in self.breakers.values():
            b.min_requests, b.error_rate = model.min_requests, model.error_rate
            b.window, b.cooldown = model.window, model.cooldown

    async def start(self) -> None:
        traces = aiohttp.TraceConfig()
        traces.on_connection_reuseconn.append(_reused)
        traces.on_connection_create_start.append(_created)
        pooled = FramedConnector(
            limit=0, limit_per_host=self._connections, keepalive_timeout=self._idle_timeout
        )
        self._session = self._new_session(pooled, [traces])
        self._fresh = self._new_session(FramedConnector(limit=0, force_close=True), [])

    def _new_session(
        self, connector: aiohttp.TCPConnector, traces: list[aiohttp.TraceConfig]
    ) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,  # bytes pass through as the parent encoded them
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            max_field_size=16384,
            trace_configs=traces,
        )

    async def close(self) -> None:
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None

    def order(self, key: str, hop: str = WORKER) -> list[str]:
        """Parents in the order a request for ``key`` tries them; first, by ``hop``
        (where the request came from), the owning machine and worker when others."""
        order = rendezvous_order(self.parents, key)
        if self.fallback:
            order.append(self.fallback)
        if hop == WORKER:
            return order
        owners = []
        if hop == CLIENT and self.peers and (owner := self.owner(key)) != self.self_url:
            owners.append(owner)
        if self.siblings and (owner := self.sibling_owner(key)) != self.sibling_url:
            owners.append(owner)
        return [*owners, *order]

    @contextlib.asynccontextmanager
    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        *,
        key: str,
        data: Any = None,
        fail_fast: bool = False,
        resuming: bool = False,
        hop: str = WORKER,
    ) -> AsyncIterator[UpstreamResponse]:
        """Send ``method target`` to the first parent for ``key`` that answers.

        ``target`` is the raw path and query, forwarded unchanged. ``fail_fast``:
        the caller has a stale copy to serve, so with every breaker open this fails
        at once (``UpstreamUnavailable``) instead of taking the last route.
        ``resuming``: this continues a body already counted as cut short, so cutting
        it again is not counted against the parent's breaker a second time.
        ``hop``: where a fill came from (``hop_of``): its owners, when other members,
        are asked first (the default, ``WORKER``: the parents only)."""
        safe = data is None and method in ("GET", "HEAD")
        last: UpstreamError | None = None
        for parent, more, last_route in self.routes(key, fail_fast, safe, hop):
            breaker = self.breakers[parent]
            started = time.monotonic()
            sent = headers
            if parent in self._members:
                sent = CIMultiDict(headers)
                sent[PEER_HEADER] = MACHINE if parent in self.peers else WORKER
            try:
                resp = await self._send(parent, method, target, sent, data)
            except asyncio.CancelledError:
                if not last_route:
                    breaker.abandon()  # frees the half-open probe it may hold
                raise
            except Exception as exc:
                last = self._translate(exc, parent)
                self._outcome(parent, type(last).__name__, ok=False)
                if more and not isinstance(last, UpstreamBadResponse):
                    log.warning("parent %s failed (%s), trying the next", parent, last)
                    continue
                raise last from exc
            self._metrics.upstream_seconds.observe(time.monotonic() - started)
            failed = resp.status in _FAILOVER_STATUSES
            if more and failed:
                self._outcome(parent, f"{resp.status // 100}xx", ok=False)
                resp.close()
                last = UpstreamUnavailable(f"{parent} answered {resp.status}")
                log.warning("parent %s answered %d, trying the next", parent, resp.status)
                continue
            try:
                yield UpstreamResponse(resp, parent, self._metrics, self._read_timeout)
            except TruncatedBody:
                self._outcome(parent, "TruncatedBody", ok=False, breaker=not resuming)
                raise
            except asyncio.CancelledError:
                if not last_route:
                    breaker.abandon()
                raise
            except BaseException:  # the caller declined the answer (a 5xx it won't serve)
                self._outcome(parent, f"{resp.status // 100}xx", ok=not failed)
                raise
            else:
                self._outcome(parent, f"{resp.status // 100}xx", ok=not failed)
            finally:
                # A body not read to its end poisons the connection: close it.
                if resp.content.at_eof():
                    resp.release()
                else:
                    resp.close()
            return
        if last is None:
            self.faults.refused.inc()
        raise last or UpstreamUnavailable("every parent's circuit breaker is open")

    def routes(
        self, key: str, fail_fast: bool, safe: bool, hop: str = WORKER
    ) -> Iterator[tuple[str, bool, bool]]:
        """``(parent, more, last_route)`` to try for ``key``: parents whose breaker
        allows a request now (``more``: a safe request could move on from it); if none
        did and not ``fail_fast``, every parent again, breakers aside (the last route).
        Lazy: a breaker's half-open probe is taken only when its parent is tried."""
        candidates = self.order(key, hop)
        tried = False
        for i, parent in enumerate(candidates):
            if self.breakers[parent].allow(self._clock()):
                tried = True
                now = self._clock()
                rest = candidates[i + 1 :]
                yield parent, safe and any(self.breakers[p].available(now) for p in rest), False
        if tried or fail_fast:
            return
        self.faults.last_route.inc()
        log.debug("every breaker open for %s: taking the last route", key)
        for i, parent in enumerate(candidates):
            yield parent, safe and i + 1 < len(candidates), True

    async def _send(
        self, parent: str, method: str, target: str, headers: Mapping[str, str], data: Any
    ) -> aiohttp.ClientResponse:
        """The response head of ``parent`` within the read timeout. A dead pooled
        connection (failed before any response byte) is replaced once by a new one."""
        assert self._session is not None and self._fresh is not None, "start() not awaited"
        url = URL(parent + target, encoded=True)
        attempt = _Attempt()
        try:
            async with asyncio.timeout(self._read_timeout):
                return await self._session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    trace_request_ctx=attempt,
                    timeout=self._peer_timeout if parent in self._members else self._timeout,
                )
        except _DEAD_CONNECTION as exc:
            if not attempt.reused or data is not None:
                raise
            log.info("pooled connection to %s was dead (%s): retrying on a new one", parent, exc)
            self.faults.fresh_retries.inc()
        async with asyncio.timeout(self._read_timeout):
            return await self._fresh.request(method, url, headers=headers, allow_redirects=False)

    def _outcome(self, parent: str, result: str, *, ok: bool, breaker: bool = True) -> None:
        self._metrics.upstream_requests.labels(parent, result).inc()
        state = self.breakers.get(parent)
        if state is None:  # dropped by a reload while this request was out
            return
        if not breaker:
            state.abandon()  # frees a half-open probe it may hold
            return
        changed = state.record(ok, self._clock())
        if changed is not None:
            log.warning("parent %s circuit breaker now %s %r", parent, changed.value, state)
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


def _owner(me: str, others: Sequence[str], key: str) -> str:
    """The member of ``me`` and ``others`` that owns ``key`` by rendezvous hashing."""
    return rendezvous_order([me, *others], key)[0] if others else me


def hop_of(mark: str | None) -> str:
    """A request's hop from its ``PEER_HEADER`` (absent: a client's; anything but
    ``machine``: routed no further)."""
    if mark is None:
        return CLIENT
    return MACHINE if mark == MACHINE else WORKER


async def _reused(
    session: aiohttp.ClientSession,
    context: types.SimpleNamespace,
    params: aiohttp.TraceConnectionReuseconnParams,
) -> None:
    """Trace hook: the attempt now in progress went out on a pooled connection."""
    if isinstance(context.trace_request_ctx, _Attempt):
        context.trace_request_ctx.reused = True


async def _created(
    session: aiohttp.ClientSession,
    context: types.SimpleNamespace,
    params: aiohttp.TraceConnectionCreateStartParams,
) -> None:
    """Trace hook: the attempt now in progress opens a new connection (aiohttp's own
    retry of an idempotent request does)."""
    if isinstance(context.trace_request_ctx, _Attempt):
        context.trace_request_ctx.reused = False


_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
