"""Drive: the request handler of a cache node, and the one place outcomes are recorded.

GET and HEAD: gather the facts (the stored variant, the fill in flight, the
load), ask ``decide``, act on the ``Decision`` (a ``match`` ending in
``assert_never``), and ask again when acting turns up new facts (a fill failed
before this reader's head, a stored body went bad). HEAD is answered from a
GET, as nginx's ``proxy_cache_convert_head`` does. Other methods pass through;
unsafe ones invalidate the stored URL (RFC 9111 §4.4). ``_record`` counts,
logs and names every outcome in ``Cache-Status`` with the one member builder.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, assert_never

from aiohttp import web

from shared.dash import is_manifest
from shared.engine.decide import Action, Decision, FillKey, Load, Request, decide
from shared.engine.errors import OriginBudgetExhausted, UpstreamError
from shared.engine.fetcher import upstream_headers
from shared.engine.fills import FillHead
from shared.engine.outcome import Fwd, Outcome, cache_status_member
from shared.http import invalidates, parse_cache_control, serve_to_authorized, vary_key, vary_names
from shared.store import CachedObject

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

    from shared.engine.node import Node

__all__ = ["OUTCOME", "STARTED", "Driver"]

STARTED = web.RequestKey("started", float)  # monotonic time the request arrived
OUTCOME = web.RequestKey("outcome", Outcome)  # what the node did, for logs


class Driver:
    """Decide, then serve / join / lead / pass, for one node."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = node.name
        self.store = node.store
        self.fetcher = node.fetcher
        self.respond = node.respond
        self.metrics = m = node.metrics
        self._requests = {o: m.requests.labels(o.value) for o in Outcome}
        self._first_byte = {o: m.first_byte_seconds.labels(o.value) for o in Outcome}
        self._readers = {
            True: m.fill_readers.labels("leader"),
            False: m.fill_readers.labels("joined"),
        }
        self.misses_in_flight = 0  # requests waiting on a fill [guarded by: single event loop]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        request[STARTED] = time.monotonic()
        if request.method not in ("GET", "HEAD"):
            return await self._forward(request)
        url = _target(request)
        if is_manifest(url):
            self.node.count_title(url)
        for hook in self.node.on_request:  # a tier's policy (the edge's prefetch)
            hook(url, request)
        facts, stored = self._facts(request, url)
        return await self._drive(request, facts, stored)

    def _facts(self, request: web.Request, url: str) -> tuple[Request, CachedObject | None]:
        """What ``decide`` needs to know of this request, and its stored variant."""
        req_h = request.headers
        variants = self.store.lookup(url)  # the one access the admission policy counts
        names = variants[0].vary_names if variants else self.fetcher.vary_index.get(url, ())
        key = FillKey(url, vary_key(names, req_h) if names else ())
        stored = next((v for v in variants if v.vary_key == key.vary), None)
        authorized = "Authorization" in req_h
        if stored is not None and authorized and not serve_to_authorized(stored.headers):
            stored = None  # RFC 9111 §3.5
        cc = parse_cache_control(req_h) if "Cache-Control" in req_h else {}
        vary_miss = bool(variants) and stored is None
        passing = url in self.fetcher.pass_marks
        facts = Request(key, req_h, cc, vary_miss, passing, load=self._load())
        return facts, stored

    async def _drive(
        self, request: web.Request, facts: Request, stored: CachedObject | None
    ) -> web.StreamResponse:
        """Decide and act until a response is made (new facts: decide again)."""
        key = facts.key
        failure: UpstreamError | None = None
        while True:
            now = self.node.clock()
            fill = key if self.fetcher.joinable(key) else None
            decision = decide(facts, stored, fill, self.node.policy, now)
            match decision.action:
                case Action.SERVE_FRESH | Action.SERVE_STALE | Action.SERVE_STALE_AND_REVALIDATE:
                    assert stored is not None
                    served = await self._serve(request, stored, decision, now)
                    if served is not None:
                        return served
                    stored = None  # its body file went bad and was dropped: a plain miss
                case Action.REJECT:
                    return self._error(request, 504, "not cached (only-if-cached)", decision.fwd)
                case Action.SHED:
                    assert decision.shed is not None
                    self.metrics.shed.labels(decision.shed.value).inc()
                    member = self._record(
                        request, Outcome.SHED, fwd=decision.fwd, detail=decision.shed.value
                    )
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
                    facts = dataclasses.replace(
                        facts, failures=facts.failures + 1, retryable=retryable
                    )
                case _:
                    assert_never(decision.action)
            facts = dataclasses.replace(facts, load=self._load())

    def _load(self) -> Load:
        budget = self.node.budget
        busy = budget.limited and budget.busy()
        return Load(self.misses_in_flight, self.fetcher.in_flight, busy)

    async def _serve(
        self, request: web.Request, obj: CachedObject, decision: Decision, now: float
    ) -> web.StreamResponse | None:
        """Serve ``obj`` (fresh or stale) from memory or from its file; None if its
        file turned out bad. A stale-while-revalidate hit starts the revalidation."""
        reason = decision.reason
        if decision.action is Action.SERVE_STALE_AND_REVALIDATE:
            self.fetcher.fetch(
                decision.key, request.headers, stale=obj, conditional=decision.conditional
            )
        elif decision.shed is not None:  # shed, but a stale copy may stand in (stale-if-busy)
            self.metrics.shed.labels(decision.shed.value).inc()
        if reason is not None:
            self.metrics.stale_served.labels(reason.value).inc()
        outcome = Outcome.HIT if reason is None else Outcome.STALE
        detail = None if reason is None else reason.value
        if isinstance(obj.body, bytes):  # the hot path: no await
            age = obj.age(now)
            member = self._record(request, outcome, ttl=obj.lifetime - age, detail=detail)
            return self.respond.from_store(request, obj, age, member)
        opened = await self.store.open_body(obj)
        if opened is None:
            return None
        fobj, length = opened
        try:
            age = obj.age(now)
            member = self._record(request, outcome, ttl=obj.lifetime - age, detail=detail)
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
        req_h = request.headers
        private = decision.action is Action.PASS
        stale = stored if decision.action is Action.REVALIDATE else None
        fill, leader = self.fetcher.fetch(
            decision.key, req_h, stale=stale, conditional=decision.conditional, private=private
        )
        reader = fill.reader()  # registered before the head: streaming fills keep its bytes
        try:
            try:
                head = await reader.wait_head()
                if not leader and not _same_variant(head, req_h):
                    reader.close()
                    fill, leader = self.fetcher.fetch(decision.key, req_h, private=True)
                    reader = fill.reader()
                    head = await reader.wait_head()
            except UpstreamError as exc:
                return exc
            outcome = Outcome.BYPASS if facts.pass_marked else Outcome.MISS
            if not leader:
                outcome = Outcome.COALESCED
            elif head.revalidated:
                outcome = Outcome.REVALIDATED
            self._readers[leader].inc()
            member = self._record(
                request,
                outcome,
                fwd=decision.fwd,
                fwd_status=304 if head.revalidated else head.status,
                stored=head.retain and head.content_length is not None,  # else not known yet
            )
            return await self.respond.from_fill(request, reader, head, member)
        finally:
            reader.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """Pass a non-GET request through, invalidating the URL on unsafe success."""
        url = _target(request)
        headers = upstream_headers(request.headers, self.respond.via, conditional=False)
        if "Content-Length" in request.headers:
            headers["Content-Length"] = request.headers["Content-Length"]
        data = request.content if request.body_exists else None
        try:
            async with self.fetcher.upstream.request(
                request.method, url, headers, key=url, data=data
            ) as up:
                if invalidates(request.method, up.status):
                    self.node.invalidate(url)
                member = self._record(request, Outcome.BYPASS, fwd=Fwd.METHOD, fwd_status=up.status)
                return await self.respond.pass_through(request, up, member)
        except UpstreamError as exc:
            return self._error(request, exc.status, str(exc), Fwd.METHOD, exc.retry_after)

    def _record(
        self,
        request: web.Request,
        outcome: Outcome,
        *,
        fwd: Fwd | None = None,
        fwd_status: int | None = None,
        ttl: float | None = None,
        stored: bool = False,
        detail: str | None = None,
    ) -> str:
        """Count ``outcome`` (metrics, /stats, the access log); its Cache-Status member."""
        request[OUTCOME] = outcome
        self.node.counts[outcome] += 1
        self._requests[outcome].inc()
        self._first_byte[outcome].observe(time.monotonic() - request[STARTED])
        return cache_status_member(
            self.name,
            outcome,
            fwd=fwd,
            fwd_status=fwd_status,
            ttl=ttl,
            stored=stored,
            detail=detail,
        )

    def _error(
        self,
        request: web.Request,
        status: int,
        message: str,
        fwd: Fwd | None,
        retry_after: float | None = None,
    ) -> web.Response:
        detail = self.respond.detail(status)
        member = self._record(request, Outcome.ERROR, fwd=fwd, detail=detail)
        return self.respond.error(status, message, member, retry_after)


def _target(request: web.Request) -> str:
    """The request target forwarded unchanged (path and query): the cache key."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def _same_variant(head: FillHead, req_h: CIMultiDictProxy[str]) -> bool:
    """May a joiner with ``req_h`` take the leader's response (RFC 9111 §4.1)?"""
    if "Vary" not in head.headers:  # the common case: nothing to compare
        return True
    names = vary_names(head.headers)
    if names is None:
        return False
    return not names or vary_key(names, head.request_headers) == vary_key(names, req_h)
