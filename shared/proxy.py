"""The request path of a cache node: look up, decide, serve / join / lead, store.

GET and HEAD go through the cache: a fresh stored response is served from
memory; anything else joins (or leads) the one fill for its cache key and
streams from it as its bytes arrive. HEAD is answered from a GET, as nginx's
``proxy_cache_convert_head`` does. Other methods pass through; unsafe ones
invalidate the stored URL (RFC 9111 §4.4).

Invariants pinned by tests: nothing partial is stored or passed off as whole
(a client streaming a fill that fails is aborted); a fill belongs to the node
(``Node.tasks``), not to the request that started it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from cachetools import LRUCache
from multidict import CIMultiDict, CIMultiDictProxy

from shared.cachepolicy import (
    Lookup,
    RangeKind,
    Storable,
    classify,
    current_age,
    end_to_end,
    evaluate_conditionals,
    format_http_date,
    freshen,
    freshness_lifetime,
    if_range_matches,
    invalidates,
    parse_cache_control,
    parse_range,
    serve_to_authorized,
    storable,
    vary_key,
    vary_names,
)
from shared.errors import TruncatedBody, UpstreamBadResponse, UpstreamError, UpstreamUnavailable
from shared.fills import Fill, FillHead, FillReader, FillTable
from shared.metrics import Metrics
from shared.outcome import Fwd, Outcome, cache_status_member
from shared.settings import CacheSettings
from shared.store import CachedObject, MemoryStore
from shared.tasks import TaskGroup
from shared.units import format_size
from shared.upstream import UpstreamPool, UpstreamResponse

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
# Fields a 304 carries (RFC 9110 §15.4.5).
_NOT_MODIFIED = frozenset(
    {"etag", "last-modified", "cache-control", "expires", "vary", "date"}
    | {"content-location", "age", "cache-status", "via"}
)


class Node:
    """One cache node: store, fills, parents, metrics and the request path."""

    def __init__(self, settings: CacheSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.name = settings.name
        self.clock = clock
        self.metrics = Metrics.create()
        self.store = MemoryStore(settings.cache_bytes)
        self.fills = FillTable()
        self.tasks = TaskGroup()
        self.upstream = UpstreamPool(
            settings.upstream,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            connections=settings.upstream_connections,
            metrics=self.metrics,
        )
        # Vary field names last seen per URL, so a joiner picks its variant's fill.
        self.vary_index: LRUCache[str, tuple[str, ...]] = LRUCache(maxsize=65536)
        self._via = f"1.1 {settings.name}"
        self.counts: collections.Counter[Outcome] = collections.Counter()  # for /stats
        m = self.metrics
        self._requests = {o: m.requests.labels(o.value) for o in Outcome}
        self._first_byte = {o: m.first_byte_seconds.labels(o.value) for o in Outcome}
        self._bytes_cache = m.response_bytes.labels("cache")
        self._bytes_upstream = m.response_bytes.labels("upstream")
        m.watch(
            lambda: self.store.bytes,
            lambda: len(self.store),
            lambda: self.store.evictions,
            lambda: len(self.fills),
        )

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: open the upstream session; on stop, end fills and close it."""
        await self.upstream.start()
        log.info("%s caching %s for %s", self.name, format_size(self.store.capacity), self.upstream)
        yield
        await self.tasks.close()
        await self.upstream.close()

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
        cc = parse_cache_control(req_h) if "Cache-Control" in req_h else {}
        variants = self.store.lookup(key)
        names = variants[0].vary_names if variants else self.vary_index.get(key, ())
        vkey = vary_key(names, req_h) if names else ()
        obj = next((v for v in variants if v.vary_key == vkey), None)
        if obj is not None and "Authorization" in req_h and not serve_to_authorized(obj.headers):
            obj = None  # RFC 9111 §3.5
        fwd = Fwd.VARY_MISS if variants and obj is None else Fwd.URI_MISS
        if obj is not None:
            now = self.clock()
            state = self._lookup(obj, req_h, now)
            if state is Lookup.FRESH:
                return self._serve_hit(request, obj, now)
            reload = "no-cache" in cc or cc.get("max-age") == "0" or "Pragma" in req_h
            fwd = Fwd.REQUEST if reload else Fwd.STALE
        if "only-if-cached" in cc:  # RFC 9111 §5.2.1.7
            return self._error(request, 504, "not cached (only-if-cached)", Fwd.URI_MISS)
        fill_key = key if not names else key + "\n" + "\0".join(vkey)
        private = "Authorization" in req_h or "no-store" in cc
        if private:
            fill, leader = self.fills.private(fill_key), True
        else:
            fill, leader = self.fills.join_or_lead(fill_key)
        reader = fill.reader()  # registered before the head: streaming fills keep its bytes
        try:
            if leader:  # a private fill fetches whole: it must not touch the stored copy
                self._lead(fill, key, req_h, None if private else obj)
            try:
                head = await reader.wait_head()
                if not leader and not _same_variant(head, req_h):
                    reader.close()
                    fill, leader = self.fills.private(fill_key), True
                    reader = fill.reader()
                    self._lead(fill, key, req_h, None)
                    head = await reader.wait_head()
            except UpstreamError as exc:
                return self._error(request, exc.status, str(exc), fwd, exc.retry_after)
            return await self._serve_fill(request, reader, head, leader, fwd)
        finally:
            reader.close()

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

    def _serve_hit(self, request: web.Request, obj: CachedObject, now: float) -> web.StreamResponse:
        age = obj.age(now)
        member = f"{self.name}; hit; ttl={int(obj.lifetime - age)}"
        self._record(request, Outcome.HIT)
        req_h = request.headers
        status, body = obj.status, obj.body  # bytes: aiohttp writes them without a payload copy
        if status == 200 and evaluate_conditionals(request.method, req_h, obj.headers):
            return _not_modified(self._hit_headers(obj, obj.prepared, member, age))
        content_range = None
        if (
            status == 200
            and "Range" in req_h
            and if_range_matches(req_h.get("If-Range"), obj.headers)
        ):
            r = parse_range(req_h["Range"], len(body))
            if r.kind in (RangeKind.UNSATISFIABLE, RangeKind.INVALID):
                return _unsatisfiable(self._hit_headers(obj, obj.prepared, member, age), len(body))
            if r.kind is RangeKind.PARTIAL:
                status, content_range = 206, f"bytes {r.start}-{r.end}/{len(body)}"
                body = body[r.start : r.end + 1]
        self._bytes_cache.inc(0 if request.method == "HEAD" else len(body))
        resp = web.Response(status=status, body=body, headers=obj.prepared)  # copies once
        self._hit_headers(obj, resp.headers, member, age)
        if content_range:
            resp.headers["Content-Range"] = content_range
        return resp

    def _hit_headers(
        self,
        obj: CachedObject,
        headers: CIMultiDictProxy[str] | CIMultiDict[str],
        member: str,
        age: float,
    ) -> CIMultiDict[str]:
        """The per-response fields of a hit, set on ``headers`` (copied if read-only)."""
        out = headers if isinstance(headers, CIMultiDict) else CIMultiDict(headers)
        out["Age"] = str(int(age))
        out["Cache-Status"] = f"{obj.upstream_status}, {member}" if obj.upstream_status else member
        out["Via"] = f"{obj.upstream_via}, {self._via}" if obj.upstream_via else self._via
        return out

    # -- fills ------------------------------------------------------------------------

    def _lead(
        self, fill: Fill, key: str, req_h: CIMultiDictProxy[str], stale: CachedObject | None
    ) -> None:
        snapshot = CIMultiDictProxy(CIMultiDict(req_h))
        self.tasks.spawn(self._run_fill(fill, key, snapshot, stale), name=f"fill {fill.key!r}")

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
        request_time = self.clock()
        try:
            async with self.upstream.request("GET", key, headers, key=fill.key) as up:
                response_time = self.clock()
                if up.status == 304 and stale is not None:
                    self._revalidated(fill, stale, up.headers, req_h, request_time, response_time)
                    return
                resp_h = end_to_end(up.headers)
                if "Date" not in resp_h:  # RFC 9110 §6.6.1: a cache adds one
                    resp_h["Date"] = format_http_date(response_time)
                await self._stream_fill(fill, key, up, CIMultiDictProxy(resp_h), req_h, stale)
                if fill.retaining and fill.error is None:
                    self._commit(fill, key, req_h, request_time, response_time)
        except UpstreamError as exc:
            log.warning("fill %r failed: %s", fill.key, exc)
            fill.fail(exc)
        except Exception as exc:  # a bug must not leave readers waiting forever
            fill.fail(UpstreamBadResponse(f"internal error: {exc!r}"))
            raise  # logged with its traceback by shared.tasks
        finally:
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
            reason = "too-large" if verdict is Storable.YES else verdict.value
            self.metrics.fills_uncached.labels(reason).inc()
            self.fills.release(fill)
            if stale is not None:
                self.store.remove(key, stale.vary_key)
        fill.start(FillHead(up.status, resp_h, up.content_length, retain, req_h))
        async for chunk in up.chunks():
            fill.append(chunk)
            if fill.retaining and fill.size > limit:
                self.metrics.fills_uncached.labels("too-large").inc()
                fill.stop_retaining()
                self.fills.release(fill)
            if not fill.retaining:
                if fill.joined and not fill.readers:
                    fill.fail(UpstreamUnavailable("every reader left an uncached fill"))
                    return
                await fill.drained()
        if up.content_length is not None and fill.size != up.content_length:
            raise TruncatedBody(f"body ended at {fill.size} of {up.content_length} bytes")
        fill.finish()

    def _revalidated(
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
        obj = self._object(
            stale.key, stale.status, headers, stale.body, req_h, request_time, response_time
        )
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
        obj = self._object(
            key,
            fill.head.status,
            fill.head.headers,
            fill.body(),
            req_h,
            request_time,
            response_time,
        )
        if not self.store.put(obj):
            self.metrics.fills_uncached.labels("too-large").inc()

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

    async def _serve_fill(
        self, request: web.Request, reader: FillReader, head: FillHead, leader: bool, fwd: Fwd
    ) -> web.StreamResponse:
        """Answer one reader from a fill: 304, 416, 206 or the whole body, streamed."""
        outcome = Outcome.MISS if leader else Outcome.COALESCED
        if head.revalidated and leader:
            outcome = Outcome.REVALIDATED
        self.metrics.fill_readers.labels("leader" if leader else "joined").inc()
        member = cache_status_member(
            self.name,
            outcome,
            fwd=fwd,
            fwd_status=304 if head.revalidated else head.status,
            stored=head.retain and head.content_length is not None,  # else not known yet
        )
        headers = self._client_headers(head.headers, member)
        req_h = request.headers
        self._record(request, outcome)
        if head.status == 200 and evaluate_conditionals(request.method, req_h, head.headers):
            return _not_modified(headers)
        start, end, status = 0, head.content_length, head.status
        ranged = status == 200 and "Range" in req_h
        if ranged and if_range_matches(req_h.get("If-Range"), head.headers):
            length = head.content_length
            if length is None and reader.fill.retaining:  # chunked: known only at the end
                length = await _drain(reader.fill)
            if length is not None:  # else too large to wait for: whole object (RFC 9110 §14.2)
                r = parse_range(req_h["Range"], length)
                if r.kind in (RangeKind.UNSATISFIABLE, RangeKind.INVALID):
                    return _unsatisfiable(headers, length)
                if r.kind is RangeKind.PARTIAL:
                    start, end, status = r.start, r.end + 1, 206
                    headers["Content-Range"] = f"bytes {r.start}-{r.end}/{length}"
        resp = web.StreamResponse(status=status, headers=headers)
        if end is not None:
            resp.content_length = end - start
        await resp.prepare(request)
        if request.method == "HEAD" or status in (204, 304):
            return resp
        sent = 0
        try:
            async with contextlib.aclosing(reader.read(start, end)) as body:
                async for chunk in body:
                    await resp.write(chunk)
                    sent += len(chunk)
        except UpstreamError as exc:
            log.info("aborting client of %r after %d bytes: %s", reader.fill.key, sent, exc)
            _abort(request)
            return resp
        finally:
            self._bytes_upstream.inc(sent)
        await resp.write_eof()
        return resp

    # -- other methods -------------------------------------------------------------

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """Pass a non-GET request through, invalidating the URL on unsafe success."""
        key = _target(request)
        headers = self._upstream_headers(request.headers, conditional=False)
        if "Content-Length" in request.headers:
            headers["Content-Length"] = request.headers["Content-Length"]
        data = request.content if request.body_exists else None
        fwd = Fwd.METHOD
        try:
            async with self.upstream.request(
                request.method, key, headers, key=key, data=data
            ) as up:
                if invalidates(request.method, up.status):
                    self.invalidate(key)
                member = cache_status_member(
                    self.name, Outcome.BYPASS, fwd=fwd, fwd_status=up.status
                )
                resp = web.StreamResponse(
                    status=up.status, headers=self._client_headers(up.headers, member)
                )
                resp.content_length = up.content_length
                self._record(request, Outcome.BYPASS)
                await resp.prepare(request)
                try:
                    async for chunk in up.chunks():
                        await resp.write(chunk)
                        self._bytes_upstream.inc(len(chunk))
                except UpstreamError as exc:
                    log.info("aborting %s %s: %s", request.method, key, exc)
                    _abort(request)
                    return resp
                await resp.write_eof()
                return resp
        except UpstreamError as exc:
            return self._error(request, exc.status, str(exc), fwd, exc.retry_after)

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
        headers.add("Via", self._via)
        return headers

    def _client_headers(self, upstream: CIMultiDictProxy[str], member: str) -> CIMultiDict[str]:
        headers = end_to_end(upstream)
        status = ", ".join(headers.popall("Cache-Status", []))
        via = ", ".join(headers.popall("Via", []))
        headers.popall("Content-Length", None)
        headers["Cache-Status"] = f"{status}, {member}" if status else member
        headers["Via"] = f"{via}, {self._via}" if via else self._via
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
        detail = {502: "bad-gateway", 503: "unavailable", 504: "timeout"}.get(status, str(status))
        headers = {
            "Cache-Status": cache_status_member(self.name, Outcome.ERROR, fwd=fwd, detail=detail),
            "Cache-Control": "no-store",
            "Via": self._via,
        }
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        return web.Response(status=status, text=f"{status}: {message}\n", headers=headers)

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.store!r} {self.fills!r}>"


def _target(request: web.Request) -> str:
    """The request target forwarded unchanged (path and query): the cache key."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def _same_variant(head: FillHead, req_h: CIMultiDictProxy[str]) -> bool:
    """May a joiner with ``req_h`` take the leader's response (RFC 9111 §4.1)?"""
    names = vary_names(head.headers)
    if names is None:
        return False
    return not names or vary_key(names, head.request_headers) == vary_key(names, req_h)


async def _drain(fill: Fill) -> int | None:
    """The length of a retained fill once complete (raises its error); None if the
    fill turns out too large to keep, as waiting for its end would then pin it."""
    async with contextlib.aclosing(fill.read()) as body:
        async for _ in body:
            if not fill.retaining:
                return None
    return fill.size


def _not_modified(headers: CIMultiDict[str]) -> web.Response:
    kept = CIMultiDict((k, v) for k, v in headers.items() if k.lower() in _NOT_MODIFIED)
    return web.Response(status=304, headers=kept)


def _unsatisfiable(headers: CIMultiDict[str], length: int) -> web.Response:
    headers = CIMultiDict(headers)
    headers.popall("Content-Type", None)
    headers["Content-Range"] = f"bytes */{length}"
    return web.Response(status=416, text="416: range not satisfiable\n", headers=headers)


def _abort(request: web.Request) -> None:
    """Cut the client's connection: a short body must never look complete."""
    if request.transport is not None:
        request.transport.abort()


NODE = web.AppKey("node", Node)


def make_app(settings: CacheSettings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The proxy application of one cache node (edge or regional)."""
    node = Node(settings, clock=clock)
    app = web.Application(handler_args={"max_field_size": 16384})
    app[NODE] = node
    app.router.add_route("*", "/{tail:.*}", node.handle)
    app.cleanup_ctx.append(node.lifecycle)
    return app
