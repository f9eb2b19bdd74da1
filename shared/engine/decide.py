"""Decide: what one GET or HEAD ends as, from facts alone.

``decide(request, stored, fill, policy, now)`` is pure (no asyncio, aiohttp,
clock or environment: ``now`` is a parameter) and returns one ``Decision``
whose ``action`` is a closed enum. The driver acts on it and, when a fill fails
or a stored body turns out bad, asks again with the new facts. Every outcome a
GET/HEAD can end as is on the screen of ``decide``:

- a fresh stored response: ``SERVE_FRESH``;
- a stale one served at once: ``SERVE_STALE_AND_REVALIDATE``
  (stale-while-revalidate, RFC 5861 §3) or ``SERVE_STALE`` (stale-if-busy while
  the origin budget is spent, stale-if-error after a failed fill (RFC 5861 §4),
  stale-if-busy instead of a shed 503);
- ``REJECT`` (only-if-cached with nothing usable, RFC 9111 §5.2.1.7: 504);
- ``SHED`` (load shedding, 503 + Retry-After; hits are never shed);
- ``PASS`` (a private fill: Authorization, no-store, or a URL marked uncacheable);
- ``JOIN_FILL`` / ``LEAD_FILL`` / ``REVALIDATE`` (the one fill for the key: join
  it, or lead it, conditionally when a stored copy can be validated);
- ``FAIL`` (the fill failed and may not be retried: the upstream's error).

``freshness`` is the one place freshness, Age and the stale rules meet a stored
response: lookup, warm/prewarm and revalidation all use it. Every rule is read
from ``stored.policy`` (the headers with a targeted field such as
CDN-Cache-Control standing in for Cache-Control, RFC 9213 §2.2) and the lifetime
computed at store time (negative TTLs included), never from the raw headers.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import NamedTuple

from shared.dash import SegmentIndex
from shared.engine.outcome import Fwd
from shared.http import Directives, Headers, Lookup, classify, stale_rules
from shared.policy.shedding import Shed, Shedder, priority_of
from shared.store.entry import CachedObject

__all__ = [
    "Action",
    "Decision",
    "FRESH_HIT",
    "FillKey",
    "Load",
    "Policy",
    "Request",
    "StaleReason",
    "decide",
    "freshness",
    "may_serve_if_error",
    "may_serve_stale",
    "validators",
]


class Action(enum.Enum):
    SERVE_FRESH = "serve-fresh"
    SERVE_STALE = "serve-stale"  # reason: IF_BUSY or IF_ERROR
    SERVE_STALE_AND_REVALIDATE = "serve-stale-and-revalidate"  # reason: WHILE_REVALIDATE
    JOIN_FILL = "join-fill"
    LEAD_FILL = "lead-fill"
    REVALIDATE = "revalidate"  # lead a conditional fill for a stored copy
    PASS = "pass"  # a private fill nobody joins; nothing stored from it is reused
    SHED = "shed"
    REJECT = "reject"
    FAIL = "fail"


class StaleReason(enum.Enum):
    """Why a stale copy was served; the value is the Cache-Status ``detail``."""

    WHILE_REVALIDATE = "stale-while-revalidate"
    IF_BUSY = "stale-if-busy"
    IF_ERROR = "stale-if-error"


class FillKey(NamedTuple):
    """What one fill fetches: a URL and, for a Vary'd response, the request's values
    of the fields it varies on (RFC 9111 §4.1)."""

    url: str
    vary: tuple[str, ...] = ()


class Load(NamedTuple):
    """How busy the node is, not counting this request."""

    misses: int = 0  # client requests waiting on upstream
    fetches: int = 0  # fills in flight
    budget_busy: bool = False  # the origin budget is spent (stale-if-busy applies)


class Request(NamedTuple):
    """The facts of one GET/HEAD the decision needs."""

    key: FillKey
    headers: Headers
    cc: Directives  # request Cache-Control
    vary_miss: bool = False  # variants are stored, none for this request's Vary values
    pass_marked: bool = False  # the URL's last answer could not be stored
    failures: int = 0  # fills that failed for this request so far
    retryable: bool = True  # the last failure may be retried (not a spent budget)
    load: Load = Load()


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The node's settings the decision reads (made once per node)."""

    shedder: Shedder
    segments: SegmentIndex  # learned from MPDs and playlists: the bitrate of a segment miss
    heuristic_max_age: float
    stale_if_error: float  # default window when the response gives none (RFC 5861 §4)
    stale_if_busy: float
    retries: int = 1  # new fills after one fails, per request


class Decision(NamedTuple):
    action: Action
    key: FillKey | None = None  # the fill to join, lead or start (None: serve as stored)
    fwd: Fwd | None = None  # why the request went forward (RFC 9211 §2.2)
    reason: StaleReason | None = None
    conditional: tuple[tuple[str, str], ...] = ()  # validators for REVALIDATE
    shed: Shed | None = None


FRESH_HIT = Decision(Action.SERVE_FRESH)  # the hit path: nothing to build


def freshness(
    stored: CachedObject, request_headers: Headers, now: float, heuristic: float
) -> Lookup:
    """How ``stored`` may answer a request with ``request_headers`` at ``now``.

    Without request directives (the common case) the answer comes from what was
    computed at store time; else from ``classify`` (RFC 9111 §4.2, §5.2.1)."""
    if "Cache-Control" not in request_headers and "Pragma" not in request_headers:
        if stored.must_validate:
            return Lookup.MUST_VALIDATE
        if stored.ttl(now) > 0:
            return Lookup.FRESH
        return Lookup.MUST_VALIDATE if stale_rules(stored.policy).forbidden else Lookup.STALE
    return classify(
        request_headers,
        stored.policy,
        status=stored.status,
        request_time=stored.request_time,
        response_time=stored.response_time,
        now=now,
        heuristic_max_age=heuristic,
        lifetime=stored.lifetime,
    )


def may_serve_stale(stored: CachedObject, now: float, window: float) -> bool:
    """May ``stored``, stale at ``now``, be served up to ``window`` s past expiry?"""
    return not stale_rules(stored.policy).forbidden and -stored.ttl(now) <= window


def decide(
    request: Request,
    stored: CachedObject | None,
    fill: FillKey | None,
    policy: Policy,
    now: float,
) -> Decision:
    """The one decision for ``request`` (see the module docstring)."""
    key, cc, h = request.key, request.cc, request.headers
    fwd = Fwd.VARY_MISS if request.vary_miss else Fwd.URI_MISS
    if stored is not None:
        if request.failures == 0:
            state = freshness(stored, h, now, policy.heuristic_max_age)
            if state is Lookup.FRESH:
                return FRESH_HIT
            if state is Lookup.STALE and (reason := _stale_now(stored, request, policy, now)):
                if reason is StaleReason.WHILE_REVALIDATE:
                    return Decision(
                        Action.SERVE_STALE_AND_REVALIDATE,
                        key,
                        Fwd.STALE,
                        reason,
                        validators(stored),
                    )
                return Decision(Action.SERVE_STALE, None, Fwd.STALE, reason)
        reload = "no-cache" in cc or cc.get("max-age") == "0" or "Pragma" in h
        fwd = Fwd.REQUEST if reload else Fwd.STALE
    if "only-if-cached" in cc:  # RFC 9111 §5.2.1.7
        return Decision(Action.REJECT, key, fwd)
    if request.failures:
        if stored is not None and may_serve_if_error(stored, now, policy.stale_if_error):
            return Decision(Action.SERVE_STALE, None, fwd, StaleReason.IF_ERROR)
        if request.failures > policy.retries or not request.retryable:
            return Decision(Action.FAIL, key, Fwd.BYPASS if request.pass_marked else fwd)
    private = request.pass_marked or "Authorization" in h or "no-store" in cc
    if request.pass_marked:
        fwd = Fwd.BYPASS
    load = request.load
    priority = priority_of(key.url, policy.segments.classify(key.url))  # misses only
    shed = policy.shedder.decide(
        priority, load.misses, load.fetches, needs_fill=private or fill is None
    )
    if shed is not Shed.ADMIT:
        if stored is not None and may_serve_stale(stored, now, policy.stale_if_busy):
            return Decision(Action.SERVE_STALE, None, fwd, StaleReason.IF_BUSY, shed=shed)
        return Decision(Action.SHED, key, fwd, shed=shed)
    if private:
        return Decision(Action.PASS, key, fwd)
    if fill is not None:
        return Decision(Action.JOIN_FILL, key, fwd)
    if stored is not None:
        return Decision(Action.REVALIDATE, key, fwd, conditional=validators(stored))
    return Decision(Action.LEAD_FILL, key, fwd)


def _stale_now(
    stored: CachedObject, request: Request, policy: Policy, now: float
) -> StaleReason | None:
    """Why a stale copy may be served without waiting for upstream, if it may."""
    rules = stale_rules(stored.policy)
    if rules.forbidden:
        return None
    overdue = -stored.ttl(now)
    if rules.while_revalidate is not None and overdue <= rules.while_revalidate:
        return StaleReason.WHILE_REVALIDATE
    if request.load.budget_busy and overdue <= policy.stale_if_busy:
        return StaleReason.IF_BUSY
    return None


def may_serve_if_error(stored: CachedObject, now: float, default: float) -> bool:
    """May ``stored`` stand in for a failing upstream at ``now`` (RFC 5861 §4)? Within
    its own ``stale-if-error`` window, else ``default`` (``--stale-if-error``), past
    expiry; never when must-revalidate, proxy-revalidate or no-cache forbid it. The
    fetcher asks the same before it fails a fill on a 5xx, so the two agree."""
    rules = stale_rules(stored.policy)
    window = default if rules.if_error is None else rules.if_error
    return not rules.forbidden and -stored.ttl(now) <= window


def validators(stored: CachedObject) -> tuple[tuple[str, str], ...]:
    """The conditional fields that validate ``stored`` (RFC 9111 §4.3.1)."""
    out = []
    if "ETag" in stored.headers:
        out.append(("If-None-Match", stored.headers["ETag"]))
    if "Last-Modified" in stored.headers:
        out.append(("If-Modified-Since", stored.headers["Last-Modified"]))
    return tuple(out)
