"""The request path of a cache node: look up, decide, serve / join / lead, store.

GET and HEAD go through the cache: a fresh stored response is served from
memory; anything else joins (or leads) the one fill for its cache key and
streams from it as its bytes arrive. HEAD is answered from a GET, as nginx's
``proxy_cache_convert_head`` does. Other methods pass through; unsafe ones
invalidate the stored URL (RFC 9111 §4.4).

Under a miss storm: hits are never shed; a miss that would start a fill is
shed first when it is a high-bitrate segment; a stale copy is served instead
of waiting (stale-while-revalidate, stale-if-busy) or failing (stale-if-error);
readers of a fill that fails before their headers retry once, on one new fill;
an uncacheable answer leaves a pass marker so later requests skip the queue.

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

from aiohttp import web
from cachetools import LRUCache, TTLCache
from multidict import CIMultiDict, CIMultiDictProxy

from shared.dash import SegmentIndex, is_manifest
from shared.engine.budget import OriginBudget
from shared.engine.errors import (
    OriginBudgetExhausted,
    TruncatedBody,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.engine.fills import Fill, FillHead, FillTable
from shared.engine.outcome import Fwd, Outcome, cache_status_member
from shared.engine.responses import Responder
from shared.engine.tasks import TaskGroup
from shared.engine.upstream import UpstreamPool, UpstreamResponse
from shared.http import (
    Lookup,
    Storable,
    classify,
    current_age,
    end_to_end,
    format_http_date,
    freshen,
    freshness_lifetime,
    invalidates,
    parse_cache_control,
    serve_to_authorized,
    stale_rules,
    storable,
    vary_key,
    vary_names,
)
from shared.policy.breaker import CircuitBreaker
from shared.policy.shedding import Priority, Shed, Shedder, priority_of
from shared.service.metrics import Metrics
from shared.service.settings import CacheSettings
from shared.service.units import format_size
from shared.store import CachedObject, MemoryStore
from shared.store.disk import DiskObject, DiskStore
from shared.store.tiered import TieredStore, in_memory

__all__ = ["NODE", "OUTCOME", "Node", "make_app"]

log = logging.getLogger(__name__)

STARTED = web.RequestKey("started", float)  # monotonic time the request arrived
OUTCOME = web.RequestKey("outcome", Outcome)  # what the node did, for logs

# Request fields a fill never forwards: it fetches whole objects unconditionally
# and answers each reader's conditionals and ranges itself.
_READER_ONLY = (
    *("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"),
    *("If-Range", "Range", "Host", "Content-Length", "Expect"),
)
# Verdicts that depend on the response alone: later requests for the URL pass.
# (Not STATUS: an origin answering 5xx under load must stay behind single flight.)
_PASS = frozenset(
    {Storable.NO_STORE, Storable.PRIVATE, Storable.VARY_STAR}
    | {Storable.NO_FRESHNESS, Storable.NOT_FRESH}
)


class Node:
    """One cache node: store, fills, parents, budget, metrics and the request path."""

    def __init__(self, settings: CacheSettings, *, clock: Callable[[], float] = time.time) -> None:
        s = self.settings = settings
        self.name = s.name
        self.clock = clock
        self.metrics = m = Metrics.create()
        memory = MemoryStore(s.cache_bytes, policy=s.admission)
        self.disk = DiskStore(Path(s.disk_path), s.disk_bytes, s.admission) if s.disk_path else None
        self.store: MemoryStore | TieredStore = (
            TieredStore(memory, self.disk) if self.disk is not None else memory
        )
        self._promoting: set[str] = set()  # disk objects being read into memory
        self.fills = FillTable()
        self.tasks = TaskGroup()
        self.upstream = UpstreamPool(
            s.upstream,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
            connections=s.upstream_connections,
            metrics=m,
            fallback=s.fallback,
            breaker=lambda: CircuitBreaker(
                failures=s.breaker_failures,
                error_rate=s.breaker_error_rate,
                window=s.breaker_window,
                cooldown=s.breaker_cooldown,
            ),
        )
        self.budget = OriginBudget(
            rate=s.origin_rate,
            burst=s.origin_burst,
            concurrency=s.origin_concurrency,
            max_wait=s.origin_wait,
        )
        self.shedder = Shedder(s.max_requests, s.max_fills)
        self.segments = SegmentIndex()  # templates learned from MPDs passing through
        self.respond = Responder(s.name, m)
        # URLs whose last answer could not be stored: they skip the fill queue.
        self.pass_marks: TTLCache[str, bool] = TTLCache(65536, ttl=s.pass_ttl, timer=clock)
        # Vary field names last seen per URL, so a joiner picks its variant's fill.
        self.vary_index: LRUCache[str, tuple[str, ...]] = LRUCache(maxsize=65536)
        self.counts: collections.Counter[Outcome] = collections.Counter()  # for /stats
        self.misses_in_flight = 0  # guarded by: single event loop
        self.fetches_in_flight = 0
        self.prefetches_in_flight = 0
        self.manifest_requests: collections.Counter[str] = collections.Counter()  # titles' starts
        self._requests = {o: m.requests.labels(o.value) for o in Outcome}
        self._first_byte = {o: m.first_byte_seconds.labels(o.value) for o in Outcome}
        self._leaders = m.fill_readers.labels("leader")
        self._joiners = m.fill_readers.labels("joined")
        m.watch(self)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: open the upstream session; on stop, end fills and close it."""
        if self.disk is not None:
            await self.disk.open()
        await self.upstream.start()
        log.info("%s caching %s for %s", self.name, format_size(self.store.capacity), self.upstream)
        yield
        await self.tasks.close()
        await self.upstream.close()
        if self.disk is not None:
            await self.disk.close()

    # -- entry point -------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request[STARTED] = time.monotonic()
        if request.method in ("GET", "HEAD"):
            return await self._cacheable(request)
        return await self._forward(request)

    def _record(self, request: web.Request, outcome: Outcome) -> None:
        request[OUTCOME] = outcome
        self.counts[outcome] += 1
        self._requests[outcome].inc()
        self._first_byte[outcome].observe(time.monotonic() - request[STARTED])

    # -- GET / HEAD ----------------------------------------------------------------

    async def _cacheable(self, request: web.Request) -> web.StreamResponse:
        key = _target(request)
        req_h = request.headers
        if is_manifest(key):
            self._count_title(key)
        elif self.settings.prefetch and request.method == "GET" and len(self.segments):
            self._prefetch_after(key)
        cc = parse_cache_control(req_h) if "Cache-Control" in req_h else {}
        variants = self.store.lookup(key)
        names = variants[0].vary_names if variants else self.vary_index.get(key, ())
        vkey = vary_key(names, req_h) if names else ()
        obj = next((v for v in variants if v.vary_key == vkey), None)
        if obj is not None and "Authorization" in req_h and not serve_to_authorized(obj.headers):
            obj = None  # RFC 9111 §3.5
        fwd = Fwd.VARY_MISS if variants and obj is None else Fwd.URI_MISS
        fill_key = key if not names else key + "\n" + "\0".join(vkey)
        if obj is not None:
            now = self.clock()
            state = self._lookup(obj, req_h, now)
            if state is Lookup.FRESH and not isinstance(obj, DiskObject):
                return self._serve_stored(request, obj, now)  # the hot path: no await
            served: web.StreamResponse | None = None
            if state is Lookup.FRESH:
                served = await self._serve_any(request, obj, now)
            elif state is Lookup.STALE and (reason := self._stale_now(obj, now)):
                if reason == "stale-while-revalidate":
                    self._revalidate_in_background(fill_key, key, req_h, obj)
                served = await self._serve_any(request, obj, now, stale=reason)
            if served is not None:
                return served
            reload = "no-cache" in cc or cc.get("max-age") == "0" or "Pragma" in req_h
            fwd = Fwd.REQUEST if reload else Fwd.STALE
            if not self.store.peek(key):  # its body file was bad: dropped, a plain miss
                obj, fwd = None, Fwd.URI_MISS
        if "only-if-cached" in cc:  # RFC 9111 §5.2.1.7
            return self._error(request, 504, "not cached (only-if-cached)", fwd)
        self.misses_in_flight += 1
        try:
            return await self._miss(request, key, fill_key, obj, fwd, cc)
        finally:
            self.misses_in_flight -= 1

    async def _miss(
        self,
        request: web.Request,
        key: str,
        fill_key: str,
        stale: CachedObject | None,
        fwd: Fwd,
        cc: dict[str, str | None],
    ) -> web.StreamResponse:
        """Join or lead the fill for ``fill_key``; retry once on one new fill if it
        fails before this reader's headers, or serve the stale copy if allowed."""
        req_h = request.headers
        passing = key in self.pass_marks
        private = passing or "Authorization" in req_h or "no-store" in cc
        fwd = Fwd.BYPASS if passing else fwd
        for attempt in (1, 2):
            needs_fill = private or fill_key not in self.fills
            shed = self.shedder.decide(
                priority_of(key, self.segments.classify(key)),
                self.misses_in_flight - 1,  # not counting this request
                self.fetches_in_flight,
                needs_fill=needs_fill,
            )
            if shed is not Shed.ADMIT:
                self.metrics.shed.labels(shed.value).inc()
                if stale is not None and self._stale_ok(stale, self.settings.stale_if_busy):
                    busy = await self._serve_any(request, stale, self.clock(), "stale-if-busy")
                    if busy is not None:
                        return busy
                member = cache_status_member(self.name, Outcome.SHED, fwd=fwd, detail=shed.value)
                self._record(request, Outcome.SHED)
                return self.respond.error(
                    503, "overloaded, retry", member, self.settings.retry_after
                )
            if private:
                fill, leader = self.fills.private(fill_key), True
            else:
                fill, leader = self.fills.join_or_lead(fill_key)
            reader = fill.reader()  # registered before the head: streaming fills keep its bytes
            try:
                if leader:  # a private fill fetches whole: it must not touch the stored copy
                    self._lead(fill, key, req_h, None if private else stale)
                try:
                    head = await reader.wait_head()
                    if not leader and not _same_variant(head, req_h):
                        reader.close()
                        fill, leader = self.fills.private(fill_key), True
                        reader = fill.reader()
                        self._lead(fill, key, req_h, None)
                        head = await reader.wait_head()
                except UpstreamError as exc:
                    if stale is not None and self._stale_ok(stale, self._if_error(stale)):
                        served = await self._serve_any(
                            request, stale, self.clock(), "stale-if-error"
                        )
                        if served is not None:
                            return served
                    if attempt == 1 and not isinstance(exc, OriginBudgetExhausted):
                        self.metrics.fill_retries.inc()
                        continue  # the failed fill is gone from the table: one new fill
                    member = cache_status_member(
                        self.name, Outcome.ERROR, fwd=fwd, detail=self.respond.detail(exc.status)
                    )
                    self._record(request, Outcome.ERROR)
                    return self.respond.error(exc.status, str(exc), member, exc.retry_after)
                outcome = Outcome.BYPASS if passing else Outcome.MISS
                if not leader:
                    outcome = Outcome.COALESCED
                elif head.revalidated:
                    outcome = Outcome.REVALIDATED
                (self._leaders if leader else self._joiners).inc()
                member = cache_status_member(
                    self.name,
                    outcome,
                    fwd=fwd,
                    fwd_status=304 if head.revalidated else head.status,
                    stored=head.retain and head.content_length is not None,  # else not known yet
                )
                self._record(request, outcome)
                return await self.respond.from_fill(request, reader, head, member)
            finally:
                reader.close()
        raise AssertionError("unreachable")

    def _lookup(self, obj: CachedObject, req_h: CIMultiDictProxy[str], now: float) -> Lookup:
        if "Cache-Control" not in req_h and "Pragma" not in req_h:  # the common case, precomputed
            if obj.must_validate:
                return Lookup.MUST_VALIDATE
            return Lookup.FRESH if obj.ttl(now) > 0 else Lookup.STALE
        return classify(
            req_h,
            obj.headers,
            status=obj.status,
            request_time=obj.request_time,
            response_time=obj.response_time,
            now=now,
            heuristic_max_age=self.settings.heuristic_max_age,
        )

    def _stale_now(self, obj: CachedObject, now: float) -> str | None:
        """Why a stale copy may be served without waiting for upstream, if it may."""
        rules = stale_rules(obj.headers)
        if rules.forbidden:
            return None
        overdue = -obj.ttl(now)
        if rules.while_revalidate is not None and overdue <= rules.while_revalidate:
            return "stale-while-revalidate"
        if self.budget.limited and self.budget.busy() and overdue <= self.settings.stale_if_busy:
            return "stale-if-busy"
        return None

    def _if_error(self, obj: CachedObject) -> float:
        """How long past expiry ``obj`` may stand in for a failing upstream (RFC 5861)."""
        given = stale_rules(obj.headers).if_error
        return self.settings.stale_if_error if given is None else given

    def _stale_ok(self, obj: CachedObject, window: float) -> bool:
        return not stale_rules(obj.headers).forbidden and -obj.ttl(self.clock()) <= window

    def _serve_stored(
        self, request: web.Request, obj: CachedObject, now: float, stale: str | None = None
    ) -> web.Response:
        age, member = self._account_hit(request, obj, now, stale)
        return self.respond.from_store(request, obj, age, member)

    def _account_hit(
        self, request: web.Request, obj: CachedObject, now: float, stale: str | None
    ) -> tuple[float, str]:
        """Count a (stale) hit; its age and Cache-Status member."""
        age = obj.age(now)
        member = f"{self.name}; hit; ttl={int(obj.lifetime - age)}"
        if stale:
            member += f"; detail={stale}"
            self.metrics.stale_served.labels(stale).inc()
        self._record(request, Outcome.STALE if stale else Outcome.HIT)
        return age, member

    async def _serve_any(
        self, request: web.Request, obj: CachedObject, now: float, stale: str | None = None
    ) -> web.StreamResponse | None:
        """Serve ``obj`` from memory or from its file; None if its file turned out bad."""
        if not isinstance(obj, DiskObject):
            return self._serve_stored(request, obj, now, stale)
        assert self.disk is not None
        opened = await self.disk.open_body(obj)
        if opened is None:
            return None
        fobj, length = opened
        try:
            age, member = self._account_hit(request, obj, now, stale)
            self._promote_later(obj)
            return await self.respond.from_file(request, obj, fobj, length, age, member)
        finally:
            fobj.close()

    def _promote_later(self, obj: DiskObject) -> None:
        """Read a disk hit into the memory tier, once, in the background."""
        if obj.length > self.settings.max_object_bytes or obj.key in self._promoting:
            return
        self._promoting.add(obj.key)
        self.tasks.spawn(self._promote(obj), name=f"promote {obj.key!r}")

    async def _promote(self, obj: DiskObject) -> None:
        assert self.disk is not None and isinstance(self.store, TieredStore)
        try:
            body = await self.disk.read_body(obj)
            if body is not None:
                self.store.promote(in_memory(obj, body))
        finally:
            self._promoting.discard(obj.key)

    # -- fills ------------------------------------------------------------------------

    def _lead(
        self, fill: Fill, key: str, req_h: CIMultiDictProxy[str], stale: CachedObject | None
    ) -> None:
        snapshot = CIMultiDictProxy(CIMultiDict(req_h))
        self.tasks.spawn(self._run_fill(fill, key, snapshot, stale), name=f"fill {fill.key!r}")

    def _revalidate_in_background(
        self, fill_key: str, key: str, req_h: CIMultiDictProxy[str], stale: CachedObject
    ) -> None:
        """Refresh ``stale`` once, whoever asks meanwhile (single-flight, no reader)."""
        fill, leader = self.fills.join_or_lead(fill_key)
        if leader:
            self._lead(fill, key, req_h, stale)

    async def _run_fill(
        self,
        fill: Fill,
        key: str,
        req_h: CIMultiDictProxy[str],
        stale: CachedObject | None,
    ) -> None:
        """Fetch ``key`` from upstream into ``fill``; store it if whole and storable."""
        headers = self._upstream_headers(req_h, conditional=True)
        if stale is not None:
            if "ETag" in stale.headers:
                headers["If-None-Match"] = stale.headers["ETag"]
            if "Last-Modified" in stale.headers:
                headers["If-Modified-Since"] = stale.headers["Last-Modified"]
        self.fetches_in_flight += 1
        try:
            async with self.budget.slot() as waited:
                if self.budget.limited:
                    self.metrics.origin_wait_seconds.observe(waited)
                request_time = self.clock()
                async with self.upstream.request("GET", key, headers, key=fill.key) as up:
                    response_time = self.clock()
                    if up.status == 304 and stale is not None:
                        await self._revalidated(
                            fill, stale, up.headers, req_h, request_time, response_time
                        )
                        return
                    resp_h = end_to_end(up.headers)
                    if "Date" not in resp_h:  # RFC 9110 §6.6.1: a cache adds one
                        resp_h["Date"] = format_http_date(response_time)
                    await self._stream_fill(fill, key, up, CIMultiDictProxy(resp_h), req_h, stale)
                    if fill.retaining and fill.error is None:
                        self._commit(fill, key, req_h, request_time, response_time)
        except OriginBudgetExhausted as exc:
            self.metrics.origin_rejected.inc()
            fill.fail(exc)
        except UpstreamError as exc:
            log.warning("fill %r failed: %s", fill.key, exc)
            fill.fail(exc)
        except Exception as exc:  # a bug must not leave readers waiting forever
            fill.fail(UpstreamBadResponse(f"internal error: {exc!r}"))
            raise  # logged with its traceback by shared.engine.tasks
        finally:
            self.fetches_in_flight -= 1
            fill.fail(UpstreamUnavailable("fill abandoned"))  # no-op once finished
            self.fills.release(fill)

    async def _stream_fill(
        self,
        fill: Fill,
        key: str,
        up: UpstreamResponse,
        resp_h: CIMultiDictProxy[str],
        req_h: CIMultiDictProxy[str],
        stale: CachedObject | None,
    ) -> None:
        verdict = storable(
            "GET", up.status, req_h, resp_h, heuristic_max_age=self.settings.heuristic_max_age
        )
        names = vary_names(resp_h)
        if names:
            self.vary_index[key] = names
        limit = self.settings.max_object_bytes
        too_big = up.content_length is not None and up.content_length > limit
        retain = verdict is Storable.YES and not too_big
        if not retain:
            self._uncached(fill, key, "too-large" if verdict is Storable.YES else verdict.value)
            if stale is not None:
                self.store.remove(key, stale.vary_key)
        fill.start(FillHead(up.status, resp_h, up.content_length, retain, req_h))
        async for chunk in up.chunks():
            fill.append(chunk)
            if fill.retaining and fill.size > limit:
                self._uncached(fill, key, "too-large")
                fill.stop_retaining()
            if not fill.retaining:
                if fill.joined and not fill.readers:
                    fill.fail(UpstreamUnavailable("every reader left an uncached fill"))
                    return
                await fill.drained()
        if up.content_length is not None and fill.size != up.content_length:
            raise TruncatedBody(f"body ended at {fill.size} of {up.content_length} bytes")
        fill.finish()

    def _uncached(self, fill: Fill, key: str, reason: str) -> None:
        """This fill will not be stored: later requests must not queue behind it."""
        self.metrics.fills_uncached.labels(reason).inc()
        if fill.shared and reason in _PASS_REASONS:
            self.pass_marks[key] = True
        self.fills.release(fill)

    async def _revalidated(
        self,
        fill: Fill,
        stale: CachedObject,
        not_modified: CIMultiDictProxy[str],
        req_h: CIMultiDictProxy[str],
        request_time: float,
        response_time: float,
    ) -> None:
        """A 304 confirmed ``stale``: store it with freshened headers and serve it."""
        headers = CIMultiDictProxy(freshen(stale.headers, not_modified))
        body = stale.body
        if isinstance(stale, DiskObject):
            assert self.disk is not None
            read = await self.disk.read_body(stale)
            if read is None:
                raise TruncatedBody("the stored copy's body file went bad")
            body = read
        obj = self._object(
            stale.key, stale.status, headers, body, req_h, request_time, response_time
        )
        if isinstance(self.store, TieredStore):
            self.store.put(obj, body_from=stale if isinstance(stale, DiskObject) else None)
        else:
            self.store.put(obj)
        fill.start(FillHead(obj.status, headers, len(obj.body), True, req_h, revalidated=True))
        fill.append(obj.body)
        fill.finish()

    def _commit(
        self,
        fill: Fill,
        key: str,
        req_h: CIMultiDictProxy[str],
        request_time: float,
        response_time: float,
    ) -> None:
        assert fill.head is not None
        head, body = fill.head, fill.body()
        obj = self._object(key, head.status, head.headers, body, req_h, request_time, response_time)
        self.pass_marks.pop(key, None)
        if not self.store.put(obj):
            self.metrics.fills_uncached.labels("too-large").inc()
        if _is_manifest(key, head.headers):
            self.segments.learn(key.split("?", 1)[0], body)

    def _object(
        self,
        key: str,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        req_h: CIMultiDictProxy[str],
        request_time: float,
        response_time: float,
    ) -> CachedObject:
        names = vary_names(headers) or ()
        return CachedObject(
            key=key,
            vary_names=names,
            vary_key=vary_key(names, req_h) if names else (),
            status=status,
            headers=headers,
            body=body,
            request_time=request_time,
            response_time=response_time,
            lifetime=freshness_lifetime(
                status, headers, heuristic_max_age=self.settings.heuristic_max_age
            ),
            initial_age=current_age(headers, request_time, response_time, response_time),
            must_validate="no-cache" in parse_cache_control(headers),
        )

    # -- operators: warm, prefetch, purge, top titles --------------------------------

    async def warm(self, key: str) -> Outcome:
        """Make ``key`` cached here as a client GET would, without a client.

        HIT if a fresh copy is already stored; else the one fill for the key is
        joined or led and awaited (MISS / COALESCED); ERROR if it failed or the
        answer was an error status."""
        variants = self.store.peek(key)
        stale = variants[0] if variants else None
        if stale is not None and not stale.must_validate and stale.ttl(self.clock()) > 0:
            return Outcome.HIT
        fill, leader = self.fills.join_or_lead(key)
        with fill.reader() as reader:
            if leader:
                self._lead(fill, key, _NO_HEADERS, stale)
            try:
                head = await reader.wait_head()
                async for _ in reader.read():
                    pass
            except UpstreamError:
                return Outcome.ERROR
        if head.status >= 400:
            return Outcome.ERROR
        return Outcome.MISS if leader else Outcome.COALESCED

    def _prefetch_after(self, key: str) -> None:
        """Fetch the next segments of the representation ``key`` belongs to, at low
        priority: within its own concurrency, and never while misses are being shed."""
        for path in self.segments.next_segments(key, self.settings.prefetch):
            if path in self.fills or self.store.peek(path):
                continue
            room = self.prefetches_in_flight < self.settings.prefetch_concurrency
            calm = self.fetches_in_flight < self.shedder.limits(Priority.MEDIA_TOP)[1]
            if not (room and calm):
                self.metrics.prefetches.labels("skipped").inc()
                return
            self.prefetches_in_flight += 1
            self.tasks.spawn(self._prefetch(path), name=f"prefetch {path!r}")

    async def _prefetch(self, path: str) -> None:
        try:
            outcome = await self.warm(path)
        finally:
            self.prefetches_in_flight -= 1
        self.metrics.prefetches.labels("failed" if outcome is Outcome.ERROR else "done").inc()

    def purge(self, *, url: str | None = None, prefix: str | None = None) -> int:
        """Drop ``url``, every URL under ``prefix``, or (neither) everything; return how
        many objects went. Fills in flight for them are not stored when they finish."""

        def matches(key: str) -> bool:
            if url is not None:
                return key == url
            return prefix is None or key.startswith(prefix)

        keys = {obj.key for obj in self.store if matches(obj.key)}
        purged = sum(self.store.remove(key) for key in keys)
        for fill_key in self.fills.in_flight():
            if matches(fill_key.split("\n", 1)[0]):
                fill = self.fills.get(fill_key)
                if fill is not None:
                    fill.stop_retaining()
                    self.fills.release(fill)
        for key in [k for k in self.vary_index if matches(k)]:
            del self.vary_index[key]
        self.metrics.purged.inc(purged)
        log.info("%s purged %d objects (url=%s prefix=%s)", self.name, purged, url, prefix)
        return purged

    def _count_title(self, key: str) -> None:
        self.manifest_requests[key.split("?", 1)[0]] += 1
        if len(self.manifest_requests) > _MAX_TITLES:  # bounded: keep the popular half
            self.manifest_requests = collections.Counter(
                dict(self.manifest_requests.most_common(_MAX_TITLES // 2))
            )

    def top_titles(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` manifests most requested from this node, with their counts."""
        return self.manifest_requests.most_common(n)

    # -- other methods -------------------------------------------------------------

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """Pass a non-GET request through, invalidating the URL on unsafe success."""
        key = _target(request)
        headers = self._upstream_headers(request.headers, conditional=False)
        if "Content-Length" in request.headers:
            headers["Content-Length"] = request.headers["Content-Length"]
        data = request.content if request.body_exists else None
        try:
            async with self.upstream.request(
                request.method, key, headers, key=key, data=data
            ) as up:
                if invalidates(request.method, up.status):
                    self.invalidate(key)
                member = cache_status_member(
                    self.name, Outcome.BYPASS, fwd=Fwd.METHOD, fwd_status=up.status
                )
                self._record(request, Outcome.BYPASS)
                return await self.respond.pass_through(request, up, member)
        except UpstreamError as exc:
            return self._error(request, exc.status, str(exc), Fwd.METHOD, exc.retry_after)

    def invalidate(self, key: str) -> None:
        """Drop every stored variant of ``key`` (RFC 9111 §4.4)."""
        if self.store.remove(key):
            self.metrics.invalidations.inc()

    # -- headers and small responses -----------------------------------------------

    def _upstream_headers(
        self, req_h: CIMultiDictProxy[str], *, conditional: bool
    ) -> CIMultiDict[str]:
        headers = end_to_end(req_h)
        for name in _READER_ONLY if conditional else ("Host", "Content-Length"):
            headers.popall(name, None)
        headers.add("Via", self.respond.via)
        return headers

    def _error(
        self,
        request: web.Request,
        status: int,
        message: str,
        fwd: Fwd,
        retry_after: float | None = None,
    ) -> web.Response:
        self._record(request, Outcome.ERROR)
        detail = self.respond.detail(status)
        member = cache_status_member(self.name, Outcome.ERROR, fwd=fwd, detail=detail)
        return self.respond.error(status, message, member, retry_after)

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.store!r} {self.fills!r} {self.budget!r}>"


_MAX_TITLES = 4096
_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
_PASS_REASONS = frozenset(v.value for v in _PASS) | {"too-large"}


def _target(request: web.Request) -> str:
    """The request target forwarded unchanged (path and query): the cache key."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def _is_manifest(key: str, headers: CIMultiDictProxy[str]) -> bool:
    return is_manifest(key) or headers.get("Content-Type", "").startswith("application/dash+xml")


def _same_variant(head: FillHead, req_h: CIMultiDictProxy[str]) -> bool:
    """May a joiner with ``req_h`` take the leader's response (RFC 9111 §4.1)?"""
    if "Vary" not in head.headers:  # the common case: nothing to compare
        return True
    names = vary_names(head.headers)
    if names is None:
        return False
    return not names or vary_key(names, head.request_headers) == vary_key(names, req_h)


NODE = web.AppKey("node", Node)


def make_app(settings: CacheSettings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The proxy application of one cache node (edge or regional)."""
    node = Node(settings, clock=clock)
    app = web.Application(handler_args={"max_field_size": 16384})
    app[NODE] = node
    app.router.add_route("*", "/{tail:.*}", node.handle)
    app.cleanup_ctx.append(node.lifecycle)
    return app
