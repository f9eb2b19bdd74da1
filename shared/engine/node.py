"""One cache node: its parts, its lifecycle and the verbs operators use.

A node is a store, a fetcher (fills in flight and their tasks), parents with
breakers, an origin budget, a shedder, metrics and the driver that handles
requests. It knows no tier: an edge or a regional is this node with its own
settings, plus whatever policy the tier plugs into ``on_request`` (the edge's
prefetch) or into the app (CORS, the player page).

Invariants pinned by tests: one upstream request per key at a time; nothing
partial is stored or passed off as whole; a fill belongs to the node
(``Node.tasks``), not to the request that started it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from shared.dash import SegmentIndex
from shared.engine.budget import OriginBudget
from shared.engine.decide import FillKey, Policy, freshness, validators
from shared.engine.driver import Driver
from shared.engine.errors import UpstreamError
from shared.engine.fetcher import Fetcher
from shared.engine.outcome import Outcome
from shared.engine.responses import Responder
from shared.engine.tasks import TaskGroup
from shared.engine.upstream import UpstreamPool
from shared.http import Lookup, target_list
from shared.policy.breaker import CircuitBreaker
from shared.policy.shedding import Shedder
from shared.service.discovery import Discovery
from shared.service.metrics import Metrics
from shared.service.settings import CacheSettings
from shared.service.units import format_size
from shared.store import DiskStore, MemoryStore, Store, TieredStore

__all__ = ["NODE", "Node", "Preflight", "RequestHook", "make_app"]

log = logging.getLogger(__name__)

RequestHook = Callable[[str, web.Request], None]  # (cache key, request), before the lookup
Preflight = Callable[[web.Request], web.StreamResponse | None]  # an OPTIONS answered here
_MAX_TITLES = 4096
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
_FRONT_METHODS = ("GET", "HEAD")


class Node:
    """One cache node: store, fetcher, parents, budget, metrics and the driver."""

    def __init__(self, settings: CacheSettings, *, clock: Callable[[], float] = time.time) -> None:
        s = self.settings = settings
        self.name = s.name
        self.clock = clock
        self.metrics = m = Metrics.create()
        self.tasks = TaskGroup()
        memory = MemoryStore(s.cache_bytes, policy=s.admission)
        self.store: Store = memory
        if s.disk_path:
            disk = DiskStore(Path(s.disk_path), s.disk_bytes, s.admission)
            self.store = TieredStore(
                memory,
                disk,
                spawn=lambda coro, name: self.tasks.spawn(coro, name=name),
                promote_limit=s.max_object_bytes,
                disk_limit=s.disk_max_object_bytes,
            )
        self.upstream = UpstreamPool(
            s.upstream,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            connections=s.upstream_connections,
            metrics=m,
            fallback=s.fallback,
            idle_timeout=s.upstream_idle_timeout,
            breaker=lambda: CircuitBreaker(
                min_requests=s.breaker_min_requests,
                error_rate=s.breaker_error_rate,
                window=s.breaker_window,
                cooldown=s.breaker_cooldown,
            ),
        )
        self.upstream.repeer(s.peer, s.own_url)
        self.discovery: Discovery | None = None  # peers and parents from DNS, once started
        self.budget = OriginBudget(
            rate=s.origin_rate,
            burst=s.origin_burst,
            concurrency=s.origin_concurrency,
            max_wait=s.origin_wait,
        )
        self.shedder = Shedder(s.max_requests, s.max_fills)
        self.segments = SegmentIndex()  # learned from the MPDs and HLS playlists passing through
        self.policy = Policy(
            shedder=self.shedder,
            segments=self.segments,
            heuristic_max_age=s.heuristic_max_age,
            stale_if_error=s.stale_if_error,
            stale_if_busy=s.stale_if_busy,
        )
        self.respond = Responder(s.name, m)
        self.fetcher = Fetcher(
            via=self.respond.via,
            store=self.store,
            upstream=self.upstream,
            budget=self.budget,
            metrics=m,
            segments=self.segments,
            tasks=self.tasks,
            clock=clock,
            max_object_bytes=s.stored_object_bytes,
            heuristic_max_age=s.heuristic_max_age,
            pass_ttl=s.pass_ttl,
            stale_if_error=s.stale_if_error,
            targets=target_list(s.targeted_cache_control),  # RFC 9213 §2.2
            negative_ttl=s.negative_ttls(),
        )
        self.on_request: list[RequestHook] = []  # a tier's policies: called per GET/HEAD
        self.preflight: Preflight | None = None  # a tier's answer to a CORS preflight
        self.counts: collections.Counter[Outcome] = m.requests.counts  # /stats, /metrics
        self.manifest_requests: collections.Counter[str] = collections.Counter()  # titles' starts
        self.driver = Driver(self)
        m.watch(self)

    def swap(self, settings: CacheSettings, policy: Policy) -> None:
        """Take reloaded ``settings`` and the decision ``policy`` made from them (see
        ``shared.service.reload``); the driver's copies follow."""
        self.settings, self.policy = settings, policy
        d = self.driver
        d._policy, d._heuristic = policy, policy.heuristic_max_age
        d._limited = self.budget.limited

    @property
    def misses_in_flight(self) -> int:
        return self.driver.misses_in_flight

    @property
    def fetches_in_flight(self) -> int:
        return self.fetcher.in_flight

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: open the store and the upstream session; on stop, end fills."""
        await self.store.open()
        await self.upstream.start()
        if self.settings.peers_dns or self.settings.upstream_dns:
            self.discovery = Discovery(self.upstream, self.settings)
            await self.discovery.refresh()  # the first answer before the first request
            self.tasks.spawn(self.discovery.run(), name="dns")
        disk = self.store.disk
        log.info(
            "%s caching %s in memory%s for %s",
            self.name,
            format_size(self.store.capacity - (disk.capacity if disk is not None else 0)),
            "" if disk is None else f" and {format_size(disk.capacity)} on disk at {disk.root}",
            self.upstream,
        )
        yield
        await self.tasks.close()
        await self.upstream.close()
        await self.store.close()

    # -- operators: warm, purge, invalidate, top titles -------------------------------

    async def warm(self, url: str) -> Outcome:
        """Make ``url`` cached here as a client GET without request fields would.

        HIT if a fresh copy is already stored; else the one fill for the key a
        client uses is joined or led and awaited (MISS / COALESCED); ERROR if it
        failed or the answer was an error status."""
        variants = self.store.peek(url)
        key = FillKey(url, self.fetcher.vary_of(url, _NO_HEADERS, variants))
        stale = next((v for v in variants if v.vary_key == key.vary), None)
        now = self.clock()
        heuristic = self.settings.heuristic_max_age
        if stale is not None and freshness(stale, _NO_HEADERS, now, heuristic) is Lookup.FRESH:
            return Outcome.HIT
        conditional = validators(stale) if stale is not None else ()
        fill, leader = self.fetcher.fetch(key, _NO_HEADERS, stale=stale, conditional=conditional)
        with fill.reader() as reader:
            try:
                head = await reader.wait_head()
                async for _ in reader.read():
                    pass
            except UpstreamError:
                return Outcome.ERROR
        if head.status >= 400:
            return Outcome.ERROR
        return Outcome.MISS if leader else Outcome.COALESCED

    def joinable(self, url: str) -> bool:
        """Is a fill for ``url`` (as a client without request fields asks) in flight?"""
        vary = self.fetcher.vary_of(url, _NO_HEADERS, self.store.peek(url))
        return self.fetcher.joinable(FillKey(url, vary))

    def purge(self, *, url: str | None = None, prefix: str | None = None) -> int:
        """Drop ``url``, every URL under ``prefix``, or (neither) everything; return how
        many objects went. Fills in flight for them are not stored when they finish."""

        def matches(key: str) -> bool:
            if url is not None:
                return key == url
            return prefix is None or key.startswith(prefix)

        keys = {obj.key for obj in self.store if matches(obj.key)}
        purged = sum(self.store.remove(key) for key in keys)
        self.fetcher.abandon(matches)
        self.metrics.purged.inc(purged)
        log.info("%s purged %d objects (url=%s prefix=%s)", self.name, purged, url, prefix)
        return purged

    def invalidate(self, key: str) -> None:
        """Drop every stored variant of ``key`` (RFC 9111 §4.4)."""
        if self.store.remove(key):
            self.metrics.invalidations.inc()

    def count_title(self, key: str) -> None:
        """A manifest was asked for: count its title (``top_titles``, pre-warm top). An
        MPD or a multivariant playlist is a title; a media playlist a learned
        multivariant names is one of its renditions, not counted."""
        path = key.split("?", 1)[0]
        if self.segments.is_media_playlist(path):
            return
        self.manifest_requests[path] += 1
        if len(self.manifest_requests) > _MAX_TITLES:  # bounded: keep the popular half
            self.manifest_requests = collections.Counter(
                dict(self.manifest_requests.most_common(_MAX_TITLES // 2))
            )

    def top_titles(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` manifests most requested from this node, with their counts."""
        return self.manifest_requests.most_common(n)

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.store!r} {self.fetcher!r}>"


NODE = web.AppKey("node", Node)


def make_app(settings: CacheSettings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The proxy application of one cache node (edge or regional)."""
    node = Node(settings, clock=clock)
    app = web.Application(handler_args={"max_field_size": 16384})
    app[NODE] = node
    app.router.add_route("*", "/{tail:.*}", node.driver.handle)
    app.cleanup_ctx.append(node.lifecycle)
    setattr(app, "_handle", _Front(app, node.driver.handle))  # noqa: B010 (a method)
    return app


class _Front:
    """The app's request handler with a way around it: a GET or HEAD only the node's
    catch-all route takes goes straight to the driver, with the match the router gave
    the first such request (its ``on_response_prepare`` signals still fire), skipping
    the router on every hit. Anything else (other routes, other methods, ``Expect``)
    and any app with middlewares go through the application as usual.

    aiohttp's ``Server`` calls ``Application._handle`` for every request; this object
    stands in for that bound method (``tests/functional/test_hit_path.py`` pins it)."""

    def __init__(self, app: web.Application, handle: Callable[..., Any]) -> None:
        self.app, self.handle = app, handle
        self.through_app = app._handle  # the bound method this stands in for
        self.match: web.UrlMappingMatchInfo | None = None  # the catch-all's, once seen
        self.others: frozenset[str] | None = None  # paths of other routes (plain only)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        match = self.match
        if (
            match is not None
            and request.method in _FRONT_METHODS
            and request.path not in self.others  # type: ignore[operator]
            and "Expect" not in request.headers
        ):
            request._match_info = match
            return await self.handle(request)  # type: ignore[no-any-return]
        response = await self.through_app(request)
        if match is None and request.method in _FRONT_METHODS:
            self._learn(request)
        return response

    def _learn(self, request: web.Request) -> None:
        """After a GET/HEAD went through the app: may the next ones go around it?"""
        info = request.match_info
        if self.app.middlewares or not isinstance(info, web.UrlMappingMatchInfo):
            return
        if getattr(info.handler, "__self__", None) is not getattr(self.handle, "__self__", 0):
            return  # another route's
        others = set()
        for resource in self.app.router.resources():
            if resource is info.route.resource:
                continue
            if not isinstance(resource, web.PlainResource):
                return  # a dynamic route beside the catch-all: always ask the router
            others.add(resource.canonical)
        self.others, self.match = frozenset(others), info
