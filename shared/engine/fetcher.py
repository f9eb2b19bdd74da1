"""Fetch: the node's in-flight fills and the task that runs each one.

``Fetcher.fetch(key, ...)`` is the one verb: it joins the fill in flight for
``key`` or leads a new one **and starts it**; nothing else starts fetches, so
no caller can forget to. A fill task fetches the whole object from upstream
(through the origin budget, conditionally when it revalidates a stored copy),
streams it into the ``Fill`` as it arrives, and stores it when it is complete,
storable and still retained.

Invariants: one fill per ``FillKey`` at a time (single flight); a fill belongs
to the node (its task lives in the node's task group), not to a request; a
fill's error reaches every reader and nothing partial is stored; an answer
that cannot be stored leaves a pass mark so later requests skip the queue.

Stale on upstream errors (RFC 5861 §4): a fill revalidating a stored copy that
stale-if-error allows (``may_serve_if_error``) fails before its head when the
parent answers 500/502/503/504, or at once when every breaker is open
(``fail_fast``), so its readers serve that copy; without such a copy the
parent's own answer passes through and the stored copy is kept for later.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping

from cachetools import LRUCache, TTLCache
from multidict import CIMultiDict, CIMultiDictProxy

from shared.dash import SegmentIndex, is_manifest
from shared.engine.budget import OriginBudget
from shared.engine.decide import FillKey, may_serve_if_error
from shared.engine.errors import (
    OriginBudgetExhausted,
    TruncatedBody,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamErrorStatus,
    UpstreamUnavailable,
)
from shared.engine.fills import Fill, FillHead, FillTable
from shared.engine.tasks import TaskGroup
from shared.engine.upstream import PEER_HEADER, UpstreamPool, UpstreamResponse, hop_of
from shared.http import (
    HEURISTIC_STATUSES,
    Storable,
    cache_headers,
    current_age,
    end_to_end,
    format_http_date,
    freshen,
    if_range_validator,
    parse_cache_control,
    parse_http_date,
    resume_offset,
    storable,
    stored_lifetime,
    vary_key,
    vary_names,
)
from shared.service.metrics import Metrics
from shared.store import CachedObject, Store

__all__ = ["Fetcher", "upstream_headers"]

log = logging.getLogger(__name__)

# Request fields a fill never forwards: it fetches whole objects unconditionally
# and answers each reader's conditionals and ranges itself.
_READER_ONLY = (
    *("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"),
    *("If-Range", "Range", "Host", "Content-Length", "Expect"),
)
# Verdicts that depend on the response alone: later requests for the URL pass.
# (Not STATUS, nor any error status a resource does not answer by default (not
# heuristically cacheable, RFC 9110 §15.1): an origin answering 5xx or 429 under
# load must stay behind single flight.)
_PASS_REASONS = frozenset(
    v.value
    for v in (Storable.NO_STORE, Storable.PRIVATE, Storable.VARY_STAR)
    + (Storable.NO_FRESHNESS, Storable.NOT_FRESH)
) | {"too-large"}
# Parent answers a stored copy may stand in for (RFC 5861 §4).
_STALE_IF_ERROR_STATUSES = frozenset({500, 502, 503, 504})
_RESUMES = 2  # Range requests continuing one body cut short, at most
_MANIFEST_TYPES = (  # bodies the segment index learns (templates, renditions, segments)
    "application/dash+xml",
    "application/vnd.apple.mpegurl",
    "application/x-mpegurl",
)


def upstream_headers(
    req_h: CIMultiDictProxy[str], via: str, *, conditional: bool
) -> CIMultiDict[str]:
    """The fields forwarded upstream: end-to-end, without the reader's own
    conditionals and Range when the fill is shared (``conditional``), plus Via."""
    headers = end_to_end(req_h)
    for name in _READER_ONLY if conditional else ("Host", "Content-Length"):
        headers.popall(name, None)
    headers.popall(PEER_HEADER, None)  # set again only when a fill goes to its owner
    headers.add("Via", via)
    return headers


class Fetcher:
    """The node's fills: join or lead-and-start, run, store."""

    def __init__(
        self,
        *,
        via: str,
        store: Store,
        upstream: UpstreamPool,
        budget: OriginBudget,
        metrics: Metrics,
        segments: SegmentIndex,
        tasks: TaskGroup,
        clock: Callable[[], float],
        max_object_bytes: int,
        heuristic_max_age: float,
        pass_ttl: float,
        stale_if_error: float,
        targets: tuple[str, ...] = (),
        negative_ttl: Mapping[int, float] | None = None,
    ) -> None:
        self.via = via
        self.store = store
        self.upstream = upstream
        self.budget = budget
        self.metrics = metrics
        self.segments = segments  # templates learned from MPDs passing through
        self.tasks = tasks
        self.clock = clock
        self.max_object_bytes = max_object_bytes
        self.heuristic_max_age = heuristic_max_age
        self.stale_if_error = stale_if_error  # --stale-if-error: when a response names none
        self.targets = targets  # targeted cache fields obeyed, first first (RFC 9213 §2.2)
        self.negative_ttl: Mapping[int, float] = negative_ttl or {}  # --negative-ttl
        self.fills = FillTable()
        # guarded by: single event loop (every field below)
        # URLs whose last answer could not be stored: they skip the fill queue.
        self.pass_marks: TTLCache[str, bool] = TTLCache(65536, ttl=pass_ttl, timer=clock)
        # Vary field names last seen per URL, so a joiner picks its variant's fill.
        self.vary_index: LRUCache[str, tuple[str, ...]] = LRUCache(maxsize=65536)
        self.in_flight = 0  # fill tasks running

    def fetch(
        self,
        key: FillKey,
        req_h: CIMultiDictProxy[str],
        *,
        stale: CachedObject | None = None,
        conditional: tuple[tuple[str, str], ...] = (),
        private: bool = False,
        forward: tuple[tuple[str, str], ...] = (),
    ) -> tuple[Fill, bool]:
        """The fill for ``key`` and True if this call leads it (and started it).

        ``private``: a fill nobody joins (Authorization, no-store, pass). ``stale``
        with ``conditional``: a stored copy a 304 may confirm. ``forward``: fields
        a private fill sends upstream as they are (a reader's Range and If-Range)."""
        assert private or not forward, "only a private fill may forward a reader's fields"
        if private:
            fill, leader = self.fills.private(key), True
        else:
            fill, leader = self.fills.join_or_lead(key)
        if leader:
            snapshot = CIMultiDictProxy(CIMultiDict(req_h))
            run = self._run(fill, key, snapshot, stale, conditional, forward)
            self.tasks.spawn(run, name=f"fill {key!r}")
        return fill, leader

    def joinable(self, key: FillKey) -> bool:
        return key in self.fills

    def vary_of(
        self, url: str, req_h: CIMultiDictProxy[str], variants: list[CachedObject]
    ) -> tuple[str, ...]:
        """The Vary values a request with ``req_h`` selects for ``url``: by the names of
        the stored ``variants``, else by the names last seen for the URL (RFC 9111 §4.1)."""
        names = variants[0].vary_names if variants else self.vary_index.get(url, ())
        return vary_key(names, req_h) if names else ()

    def abandon(self, matches: Callable[[str], bool]) -> None:
        """Fills of matching URLs still run, but store nothing (a purge)."""
        for key in self.fills.in_flight():
            assert isinstance(key, FillKey)
            fill = self.fills.get(key)
            if matches(key.url) and fill is not None:
                fill.stop_retaining()
                self.fills.release(fill)
        for url in [u for u in self.vary_index if matches(u)]:
            del self.vary_index[url]

    # -- the fill task ---------------------------------------------------------------

    async def _run(
        self,
        fill: Fill,
        key: FillKey,
        req_h: CIMultiDictProxy[str],
        stale: CachedObject | None,
        conditional: tuple[tuple[str, str], ...],
        forward: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Fetch ``key`` from upstream into ``fill``; store it if whole and storable."""
        headers = upstream_headers(req_h, self.via, conditional=True)
        for name, value in conditional if stale is not None else ():
            headers[name] = value
        headers.extend(forward)  # a 206 is never stored (Storable.STATUS)
        url = key.url
        self.in_flight += 1
        try:
            async with self.budget.slot() as waited:
                if self.budget.limited:
                    self.metrics.origin_wait_seconds.observe(waited)
                request_time = response_time = self.clock()
                stands_in = self._stands_in(stale, request_time)
                try:
                    async with self.upstream.request(
                        "GET",
                        url,
                        headers,
                        key=_route(key),
                        fail_fast=stands_in,
                        hop=hop_of(req_h.get(PEER_HEADER)),  # its owners first
                    ) as up:
                        response_time = self.clock()
                        if up.status in _STALE_IF_ERROR_STATUSES and self._stands_in(
                            stale, response_time
                        ):
                            raise UpstreamErrorStatus(
                                f"{up.parent} answered {up.status}", up.status
                            )
                        if up.status == 304 and stale is not None:
                            await self._revalidated(
                                fill, stale, up.headers, req_h, request_time, response_time
                            )
                            return
                        resp_h = end_to_end(up.headers)
                        if parse_http_date(",".join(resp_h.getall("Date", []))) is None:
                            # RFC 9110 §6.6.1: a missing or invalid Date is the receipt time
                            resp_h["Date"] = format_http_date(response_time)
                        await self._stream(fill, url, up, CIMultiDictProxy(resp_h), req_h, stale)
                except TruncatedBody as cut:
                    await self._resume(fill, key, headers, cut)
                if fill.retaining and fill.error is None:
                    self._commit(fill, url, req_h, request_time, response_time)
        except OriginBudgetExhausted as exc:
            self.metrics.origin_rejected.inc()
            fill.fail(exc)
        except UpstreamError as exc:
            log.warning("fill %r failed: %s", key, exc)
            fill.fail(exc)
        except Exception as exc:  # a bug must not leave readers waiting forever
            fill.fail(UpstreamBadResponse(f"internal error: {exc!r}"))
            raise  # logged with its traceback by shared.engine.tasks
        finally:
            self.in_flight -= 1
            fill.fail(UpstreamUnavailable("fill abandoned"))  # no-op once finished
            self.fills.release(fill)

    def _stands_in(self, stale: CachedObject | None, now: float) -> bool:
        """May ``stale`` be served at ``now`` if this fill fails (stale-if-error)?"""
        return stale is not None and may_serve_if_error(stale, now, self.stale_if_error)

    async def _stream(
        self,
        fill: Fill,
        url: str,
        up: UpstreamResponse,
        resp_h: CIMultiDictProxy[str],
        req_h: CIMultiDictProxy[str],
        stale: CachedObject | None,
    ) -> None:
        verdict = storable(
            "GET",
            up.status,
            req_h,
            cache_headers(resp_h, self.targets),
            heuristic_max_age=self.heuristic_max_age,
            negative_ttl=self.negative_ttl,
        )
        names = vary_names(resp_h)
        if names:
            self.vary_index[url] = names
        limit = self.max_object_bytes
        too_big = up.content_length is not None and up.content_length > limit
        keep = verdict is Storable.YES and not too_big
        retain = keep and fill.retaining  # not if purged before the head came
        if not keep:
            reason = "too-large" if verdict is Storable.YES else verdict.value
            by_default = up.status < 400 or up.status in HEURISTIC_STATUSES
            self._uncached(fill, url, reason, mark=by_default)
            if stale is not None and up.status < 500:  # a newer answer replaces it
                self.store.remove(url, stale.vary_key)
        fill.start(FillHead(up.status, resp_h, up.content_length, retain, req_h))
        await self._pour(fill, url, up.chunks(), up.content_length)

    async def _pour(
        self, fill: Fill, url: str, chunks: AsyncIterator[bytes], length: int | None
    ) -> None:
        """Append ``chunks`` to ``fill`` (streaming once too large) and finish it at
        ``length`` bytes; a body ending short raises ``TruncatedBody``."""
        async for chunk in chunks:
            fill.append(chunk)
            if fill.retaining and fill.size > self.max_object_bytes:
                self._uncached(fill, url, "too-large")
                fill.stop_retaining()
            if not fill.retaining:
                if fill.joined and not fill.readers:
                    fill.fail(UpstreamUnavailable("every reader left an uncached fill"))
                    return
                await fill.drained()
        if length is not None and fill.size != length:
            raise TruncatedBody(f"body ended at {fill.size} of {length} bytes")
        fill.finish()

    async def _resume(
        self, fill: Fill, key: FillKey, headers: CIMultiDict[str], cut: TruncatedBody
    ) -> None:
        """Continue a body cut short after its head from the byte it stopped at, on a
        ``Range`` request under ``If-Range`` (RFC 9110 §13.1.5), at most ``_RESUMES``
        times: readers never notice, and the object is stored whole. Re-raises
        ``cut`` when the body cannot be continued (no strong validator, a 206, a
        different representation)."""
        head = fill.head
        validator = None if head is None else if_range_validator(head.headers)
        if head is None or head.status != 200 or validator is None or fill.done:
            raise cut
        length = head.content_length
        for _ in range(_RESUMES):
            pos = fill.size
            ranged = CIMultiDict(headers)
            ranged["Range"], ranged["If-Range"] = f"bytes={pos}-", validator
            try:
                async with self.upstream.request(
                    "GET", key.url, ranged, key=_route(key), resuming=True
                ) as up:
                    at = resume_offset(
                        head.headers, length, up.status, up.headers, up.content_length, pos
                    )
                    if at is not None:  # else an answer, not a failure: leave, then raise
                        self.metrics.fill_resumes.inc()
                        log.info("fill %r cut at byte %d (%s): resumed", key, pos, cut)
                        await self._pour(fill, key.url, _skip(up.chunks(), at), length)
                        return
                raise cut
            except TruncatedBody as again:
                if fill.size == pos:  # no progress: give up
                    raise
                cut = again
        raise cut

    def _uncached(self, fill: Fill, url: str, reason: str, *, mark: bool = True) -> None:
        """This fill will not be stored: later requests must not queue behind it
        (unless ``mark`` is False: an error answer stays behind single flight)."""
        self.metrics.fills_uncached.labels(reason).inc()
        if fill.shared and mark and reason in _PASS_REASONS:
            self.pass_marks[url] = True
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
        body = await self.store.read_body(stale)
        if body is None:
            raise TruncatedBody("the stored copy's body file went bad")
        obj = self._object(
            stale.key, stale.status, headers, body, req_h, request_time, response_time
        )
        self.store.put(obj, same_body_as=stale)
        fill.start(FillHead(obj.status, headers, len(body), True, req_h, revalidated=True))
        fill.append(body)
        fill.finish()

    def _commit(
        self,
        fill: Fill,
        url: str,
        req_h: CIMultiDictProxy[str],
        request_time: float,
        response_time: float,
    ) -> None:
        assert fill.head is not None
        head, body = fill.head, fill.body()
        obj = self._object(url, head.status, head.headers, body, req_h, request_time, response_time)
        self.pass_marks.pop(url, None)
        if not self.store.put(obj):
            self.metrics.fills_uncached.labels("too-large").inc()
        if is_manifest(url) or head.headers.get("Content-Type", "").lower().startswith(
            _MANIFEST_TYPES
        ):
            self.segments.learn(url.split("?", 1)[0], body)  # MPD or HLS playlist

    def _object(
        self,
        url: str,
        status: int,
        headers: CIMultiDictProxy[str],
        body: bytes,
        req_h: CIMultiDictProxy[str],
        request_time: float,
        response_time: float,
    ) -> CachedObject:
        names = vary_names(headers) or ()
        policy = cache_headers(headers, self.targets)  # once, at store time (RFC 9213 §2.2)
        lifetime = stored_lifetime(
            status, policy, heuristic_max_age=self.heuristic_max_age, negative_ttl=self.negative_ttl
        )
        return CachedObject(
            key=url,
            vary_names=names,
            vary_key=vary_key(names, req_h) if names else (),
            status=status,
            headers=headers,
            body=body,
            request_time=request_time,
            response_time=response_time,
            lifetime=lifetime,
            initial_age=current_age(headers, request_time, response_time, response_time),
            must_validate="no-cache" in parse_cache_control(policy),
            policy_headers=None if policy is headers else CIMultiDictProxy(policy),
        )

    def __repr__(self) -> str:
        return f"<Fetcher {self.fills!r} running={self.in_flight} {self.budget!r}>"


async def _skip(chunks: AsyncIterator[bytes], n: int) -> AsyncIterator[bytes]:
    """``chunks`` without their first ``n`` bytes."""
    async for chunk in chunks:
        if n >= len(chunk):
            n -= len(chunk)
            continue
        yield chunk[n:] if n else chunk
        n = 0


def _route(key: FillKey) -> str:
    """The string parents are chosen by (rendezvous hashing): URL and Vary values."""
    return key.url if not key.vary else key.url + "\n" + "\0".join(key.vary)
