"""Drive: the request handler of a cache node, and the one place outcomes are recorded.

GET and HEAD: gather the facts (the stored variant, the fill in flight, the
load), ask ``decide``, act on the ``Decision`` (a ``match`` ending in
``assert_never``), and ask again when acting turns up new facts (a fill failed
before this reader's head, a stored body went bad). HEAD is answered from a
GET, as nginx's ``proxy_cache_convert_head`` does. Other methods pass through;
unsafe ones invalidate the stored URL (RFC 9111 §4.4). ``_record`` counts,
logs and names every outcome in ``Cache-Status`` with the one member builder.

Objects that are not stored cost a window, never their size: a Range request
for a URL marked uncacheable (too large, no-store) is forwarded upstream as a
Range, and a reader a shared streaming fill lets go continues on a private
``Range: bytes=<pos>-`` fetch under ``If-Range`` (``_rest``), so it gets the
same representation's bytes or an aborted connection, never other bytes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from functools import partial
from typing import TYPE_CHECKING, assert_never

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from shared.dash import is_manifest
from shared.engine.decide import (
    Action,
    Decision,
    FillKey,
    Load,
    Request,
    decide,
    freshness,
)
from shared.engine.errors import (
    OriginBudgetExhausted,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamUnavailable,
)
from shared.engine.fetcher import upstream_headers
from shared.engine.fills import FillHead
from shared.engine.outcome import Fwd, Outcome, cache_status_member
from shared.engine.upstream import PEER_HEADER
from shared.http import (
    Lookup,
    if_range_validator,
    invalidates,
    parse_cache_control,
    resume_offset,
    serve_to_authorized,
    vary_key,
    vary_names,
)
from shared.service.accesslog import UPSTREAM
from shared.store import CachedObject

if TYPE_CHECKING:
    from shared.engine.node import Node

__all__ = ["STARTED", "Driver"]

STARTED = web.RequestKey("started", float)  # monotonic time the request arrived
_HIT = Outcome.HIT


class Driver:
    """Decide, then serve / join / lead / pass, for one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = node.name
        self.store = node.store
        self.fetcher = node.fetcher
        self.respond = node.respond
        self.metrics = m = node.metrics
        self._counts = m.requests.counts  # plain ints, read at scrape time (and /stats)
        self._first_byte = m.first_byte_seconds
        self._readers = {
            True: m.fill_readers.labels("leader"),
            False: m.fill_readers.labels("joined"),
        }
        self._resumed = m.fill_readers.labels("resumed")  # let go by a fill, fetched on
        self.misses_in_flight = 0  # requests waiting on a fill [guarded by: single event loop]
        self._limited = node.budget.limited  # settings: fixed for the node's life
        self._clock, self._policy = node.clock, node.policy
        self._heuristic = node.policy.heuristic_max_age

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        method = request.method
        if method != "GET" and method != "HEAD":
            request[STARTED] = started
            if method == "OPTIONS" and self.node.preflight is not None:
                answer = self.node.preflight(request)  # the edge's CORS
                if answer is not None:
                    return answer
            return await self._forward(request)
        url = _target(request)
        req_h = request.headers
        from_peer = False
        members = self.fetcher.upstream.member_hosts  # empty unless peered: one test per hit
        if members and PEER_HEADER in req_h:
            if request.remote in members:
                from_peer = True  # a peer's fill of an object this node owns
            else:  # a client's own mark is not trusted: it is dropped here
                request = request.clone(headers=_without(req_h, PEER_HEADER))
                req_h = request.headers
        if not from_peer:  # (a peer's client was counted there)
            if is_manifest(url):
                self.node.count_title(url)
            for hook in self.node.on_request:  # a tier's policy (the edge's prefetch)
                hook(url, request)
        variants = self.store.lookup(url)  # the one access the admission policy counts
        vary = self.fetcher.vary_of(url, req_h, variants)
        stored = None
        for variant in variants:  # usually one, with no Vary
            if variant.vary_key == vary:
                stored = variant
                break
        if stored is not None and "Authorization" in req_h:
            stored = stored if serve_to_authorized(stored.headers) else None  # RFC 9111 §3.5
        if stored is not None and isinstance(stored.body, bytes):
            # The hit path: decide's first rule answers SERVE_FRESH whenever ``freshness``
            # says FRESH, whatever the rest of the facts; don't build them (a test pins it).
            now = self._clock()
            if freshness(stored, req_h, now, self._heuristic) is Lookup.FRESH:
                self._counts[_HIT] += 1
                self._first_byte.observe(_HIT, time.monotonic() - started)
                return self.respond.hit(request, stored, stored.age(now))
        request[STARTED] = started  # what ``_record`` measures the first byte from
        cc = parse_cache_control(req_h) if "Cache-Control" in req_h else {}
        vary_miss = bool(variants) and stored is None
        passing = url in self.fetcher.pass_marks
        facts = Request(FillKey(url, vary), req_h, cc, vary_miss, passing, load=self._load())
        return await self._drive(request, facts, stored)

    async def _drive(
        self, request: web.Request, facts: Request, stored: CachedObject | None
    ) -> web.StreamResponse:
        """Decide and act until a response is made (new facts: decide again)."""
        key = facts.key
        failure: UpstreamError | None = None
        while True:
            now = self._clock()
            fill = key if self.fetcher.joinable(key) else None
            decision = decide(facts, stored, fill, self._policy, now)
            match decision.action:
                case Action.SERVE_FRESH | Action.SERVE_STALE | Action.SERVE_STALE_AND_REVALIDATE:
                    assert stored is not None
                    if isinstance(stored.body, bytes):  # the hot path: no await
                        age, member = self._hit(request, stored, decision, now)
                        return self.respond.from_store(request, stored, age, member)
                    served = await self._serve_file(request, stored, decision, now)
                    if served is not None:
                        return served
                    stored = None  # its body file went bad and was dropped: a plain miss
                case Action.REJECT:
                    return self._error(request, 504, "not cached (only-if-cached)", decision.fwd)
                case Action.SHED:
                    assert decision.shed is not None
                    self.metrics.shed.labels(decision.shed.value).inc()
                    shed = decision.shed.value
                    member = cache_status_member(
                        self.name, Outcome.SHED, fwd=decision.fwd, detail=shed
                    )
                    self._record(request, Outcome.SHED, member)
                    retry_after = self.node.settings.retry_after
                    return self.respond.error(503, "overloaded, retry", member, retry_after)
                case Action.FAIL:
                    assert failure is not None
                    status, retry = failure.status, failure.retry_after
                    return self._error(request, status, str(failure), decision.fwd, retry)
                case Action.JOIN_FILL | Action.LEAD_FILL | Action.REVALIDATE | Action.PASS:
                    if failure is not None:
                        self.metrics.fill_retries.inc()  # the failed fill is gone: one new fill
                    self.misses_in_flight += 1
                    try:
                        result = await self._through_fill(request, decision, stored, facts)
                    finally:
                        self.misses_in_flight -= 1
                    if not isinstance(result, UpstreamError):
                        return result
                    failure = result
                    retryable = not isinstance(failure, OriginBudgetExhausted)
                    facts = facts._replace(failures=facts.failures + 1, retryable=retryable)
                case _:
                    assert_never(decision.action)
            facts = facts._replace(load=self._load())

    def _load(self) -> Load:
        busy = self._limited and self.node.budget.busy()
        return Load(self.misses_in_flight, self.fetcher.in_flight, busy)

    def _hit(
        self, request: web.Request, obj: CachedObject, decision: Decision, now: float
    ) -> tuple[float, str]:
        """Count a (stale) hit; its age and Cache-Status member. A stale-while-revalidate
        hit starts the revalidation; a stale copy standing in for a shed miss counts it."""
        reason = decision.reason
        if decision.action is Action.SERVE_STALE_AND_REVALIDATE:
            assert decision.key is not None
            self.fetcher.fetch(
                decision.key, request.headers, stale=obj, conditional=decision.conditional
            )
        elif decision.shed is not None:  # shed, but a stale copy may stand in (stale-if-busy)
            self.metrics.shed.labels(decision.shed.value).inc()
        age = obj.age(now)
        if reason is None:
            member = cache_status_member(self.name, Outcome.HIT, ttl=obj.lifetime - age)
            return age, self._record(request, Outcome.HIT, member)
        self.metrics.stale_served.labels(reason.value).inc()
        ttl = obj.lifetime - age
        member = cache_status_member(self.name, Outcome.STALE, ttl=ttl, detail=reason.value)
        return age, self._record(request, Outcome.STALE, member)

    async def _serve_file(
        self, request: web.Request, obj: CachedObject, decision: Decision, now: float
    ) -> web.StreamResponse | None:
        """Serve ``obj`` from its file (sendfile); None if the file turned out bad."""
        opened = await self.store.open_body(obj)
        if opened is None:
            return None
        fobj, length = opened
        try:
            age, member = self._hit(request, obj, decision, now)
            self.store.served(obj)  # a tier above may promote it
            return await self.respond.from_file(request, obj, fobj, length, age, member)
        finally:
            fobj.close()

    async def _through_fill(
        self,
        request: web.Request,
        decision: Decision,
        stored: CachedObject | None,
        facts: Request,
    ) -> web.StreamResponse | UpstreamError:
        """Join or lead the fill ``decision`` names and answer from it as it grows;
        the fill's error if it fails before this reader's head."""
        req_h, key = request.headers, decision.key
        assert key is not None  # every fill action names its fill
        private = decision.action is Action.PASS
        stale = stored if decision.action is Action.REVALIDATE else None
        forward = _range_fields(req_h) if private and facts.pass_marked else ()
        fill, leader = self.fetcher.fetch(
            key,
            req_h,
            stale=stale,
            conditional=decision.conditional,
            private=private,
            forward=forward,
        )
        reader = fill.reader()  # registered before the head: streaming fills keep its bytes
        waited = time.monotonic()
        try:
            try:
                head = await reader.wait_head()
                if not leader and not _same_variant(head, req_h):
                    reader.close()
                    fill, leader = self.fetcher.fetch(key, req_h, private=True)
                    reader = fill.reader()
                    head = await reader.wait_head()
            except UpstreamError as exc:
                return exc
            finally:
                # the access log's upstream time, summed over retried fills
                request[UPSTREAM] = request.get(UPSTREAM, 0.0) + time.monotonic() - waited
            outcome = Outcome.BYPASS if facts.pass_marked else Outcome.MISS
            if not leader:
                outcome = Outcome.COALESCED
            elif head.revalidated:
                outcome = Outcome.REVALIDATED
            self._readers[leader].inc()
            member = cache_status_member(
                self.name,
                outcome,
                fwd=decision.fwd,
                fwd_status=304 if head.revalidated else head.status,
                stored=head.retain and head.content_length is not None,  # else not known yet
            )
            self._record(request, outcome, member)
            resume = partial(self._rest, key, head, req_h)
            return await self.respond.from_fill(request, reader, head, member, resume)
        finally:
            reader.close()

    async def _rest(
        self,
        key: FillKey,
        head: FillHead,
        req_h: CIMultiDictProxy[str],
        pos: int,
        end: int | None,
    ) -> AsyncGenerator[bytes, None]:
        """Bytes ``[pos, end)`` of the body ``head`` began, for a reader its shared
        fill let go: a private fill asking for ``bytes=<pos>-`` under ``If-Range``
        (RFC 9110 §13.1.5) so that only the same representation continues it."""
        validator = if_range_validator(head.headers)
        if validator is None:
            raise UpstreamUnavailable("a reader left behind cannot resume: no strong validator")
        self._resumed.inc()
        last = "" if end is None else str(end - 1)
        fields = (("Range", f"bytes={pos}-{last}"), ("If-Range", validator))
        fill, _ = self.fetcher.fetch(key, req_h, private=True, forward=fields)
        with fill.reader() as reader:
            rest = await reader.wait_head()
            skip = resume_offset(
                head.headers, head.content_length, rest.status, rest.headers,
                rest.content_length, pos, end,
            )  # fmt: skip
            if skip is None:
                raise UpstreamBadResponse(f"cannot resume at byte {pos}: got {rest.status}")
            stop = None if end is None else skip + end - pos
            async with contextlib.aclosing(reader.read(skip, stop)) as body:
                async for chunk in body:
                    yield chunk

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """Pass a non-GET request through, invalidating the URL on unsafe success."""
        url = _target(request)
        headers = upstream_headers(request.headers, self.respond.via, conditional=False)
        if "Content-Length" in request.headers:
            headers["Content-Length"] = request.headers["Content-Length"]
        data = request.content if request.body_exists else None
        waited = time.monotonic()
        try:
            async with self.fetcher.upstream.request(
                request.method, url, headers, key=url, data=data
            ) as up:
                request[UPSTREAM] = time.monotonic() - waited
                if invalidates(request.method, up.status):
                    self.node.invalidate(url)
                status = up.status
                member = cache_status_member(
                    self.name, Outcome.BYPASS, fwd=Fwd.METHOD, fwd_status=status
                )
                self._record(request, Outcome.BYPASS, member)
                return await self.respond.pass_through(request, up, member)
        except UpstreamError as exc:
            return self._error(request, exc.status, str(exc), Fwd.METHOD, exc.retry_after)

    def _record(self, request: web.Request, outcome: Outcome, member: str) -> str:
        """Count ``outcome`` (metrics, /stats, the access log); returns its Cache-Status
        ``member``, made by ``cache_status_member`` (the one builder) at the call site."""
        self._counts[outcome] += 1
        self._first_byte.observe(outcome, time.monotonic() - request[STARTED])
        return member

    def _error(
        self,
        request: web.Request,
        status: int,
        message: str,
        fwd: Fwd | None,
        retry_after: float | None = None,
    ) -> web.Response:
        detail = self.respond.detail(status)
        member = cache_status_member(self.name, Outcome.ERROR, fwd=fwd, detail=detail)
        self._record(request, Outcome.ERROR, member)
        return self.respond.error(status, message, member, retry_after)


def _target(request: web.Request) -> str:
    """The request target forwarded unchanged (path and query): the cache key."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def _range_fields(req_h: CIMultiDictProxy[str]) -> tuple[tuple[str, str], ...]:
    """A Range (and If-Range) a pass forwards: a range of an object too large to
    store costs the range upstream, not the bytes before it."""
    if "Range" not in req_h:
        return ()
    return tuple((name, req_h[name]) for name in ("Range", "If-Range") if name in req_h)


def _same_variant(head: FillHead, req_h: CIMultiDictProxy[str]) -> bool:
    """May a joiner with ``req_h`` take the leader's response (RFC 9111 §4.1)?"""
    if "Vary" not in head.headers:  # the common case: nothing to compare
        return True
    names = vary_names(head.headers)
    if names is None:
        return False
    return not names or vary_key(names, head.request_headers) == vary_key(names, req_h)


def _without(headers: CIMultiDictProxy[str], name: str) -> CIMultiDict[str]:
    """``headers`` without the field ``name``."""
    kept = CIMultiDict(headers)
    kept.popall(name, None)
    return kept
