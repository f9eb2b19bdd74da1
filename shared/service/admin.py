"""The admin listener of a cache node: metrics, health, stats, top titles, purge
and pre-warm.

Served on its own port, bound to loopback by default, so the proxy port
never exposes them. Read-only routes are open; mutating ones (``POST /purge``,
``POST /prewarm``) need the node's ``--admin-token`` as ``Authorization:
Bearer <token>`` or ``X-Tiercdn-Token: <token>``: none sent → 401, wrong → 403,
and a node with no token configured refuses them all (403).

Token checks never fail on the bytes sent: any header value (not UTF-8, empty,
as long as the parser allows) is compared as the SHA-256 digests of both sides
with ``hmac.compare_digest``, so neither content nor length shows in the time.
Failed attempts (401, 403) are limited per client address by a token bucket
(``FAILURE_BURST`` failures, then ``FAILURE_RATE`` per second): beyond it every
mutating request from that address, right token or not, gets ``429`` with
``Retry-After`` until a failure is allowed again, so a guess never learns
anything while locked out. Requests that pass are never limited. At most
``TRACKED_ADDRESSES`` addresses are remembered, each until its bucket is full
again; every refusal is counted in ``tiercdn_admin_auth_failures_total{result}``.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import math
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from cachetools import TTLCache
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from shared.engine.node import NODE, Node
from shared.engine.outcome import Outcome
from shared.engine.prewarm import MAX_CONCURRENCY, prewarm, prewarm_top
from shared.policy.ratelimit import TokenBucket
from shared.service.metrics import admin_auth_failures

__all__ = [
    "FROM_CACHE",
    "LOOKUPS",
    "FAILURE_BURST",
    "FAILURE_RATE",
    "TRACKED_ADDRESSES",
    "Refusal",
    "make_admin_app",
    "stats",
]

log = logging.getLogger(__name__)

FAILURE_BURST = 10  # failed token checks an address may make at once...
FAILURE_RATE = 1.0  # ...and then per second
TRACKED_ADDRESSES = 4096  # addresses remembered (bounded memory)

FROM_CACHE = (Outcome.HIT, Outcome.STALE)
LOOKUPS = (*FROM_CACHE, Outcome.MISS, Outcome.COALESCED, Outcome.REVALIDATED)


def stats(node: Node) -> dict[str, object]:
    """The node's state as JSON-ready values (also used by ``tiercdn up``)."""
    lookups = sum(node.counts[o] for o in LOOKUPS)
    hits = sum(node.counts[o] for o in FROM_CACHE)
    disk = node.store.disk
    return {
        "name": node.name,
        "objects": len(node.store),
        "bytes": node.store.bytes,
        "capacity_bytes": node.store.capacity,
        "evictions": node.store.evictions,
        "admitted": node.store.admitted,
        "rejected": node.store.rejected,
        "fills_in_flight": node.fetches_in_flight,
        "misses_in_flight": node.misses_in_flight,
        "hit_ratio": round(hits / lookups, 4) if lookups else None,
        "requests": {o.value: node.counts[o] for o in Outcome},
        "upstreams": {p: b.state.value for p, b in node.upstream.breakers.items()},
        "origin_budget": _budget(node) if node.budget.limited else None,
        "disk": None
        if disk is None
        else {
            "path": str(disk.root),
            "objects": len(disk),
            "bytes": disk.bytes,
            "capacity_bytes": disk.capacity,
            "write_errors": disk.write_errors,
            "corrupt_dropped": disk.corrupt_dropped,
        },
    }


def _budget(node: Node) -> dict[str, float]:
    """The origin budget as numbers (0 = no cap, as its flags say)."""
    budget = node.budget
    return {
        "rate": budget.bucket.rate,
        "burst": budget.bucket.burst,
        "tokens": round(budget.tokens(), 3),
        "concurrency": budget.concurrency,
        "in_flight": budget.in_flight,
        "waiting": budget.waiting,
        "rejected": budget.rejected,
    }


def make_admin_app(app: web.Application) -> web.Application:
    """Admin routes for the node behind ``app`` (made by ``proxy.make_app``)."""
    node = app[NODE]

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(node.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stats_route(request: web.Request) -> web.Response:
        return web.json_response(stats(node))

    async def top(request: web.Request) -> web.Response:
        n = _int_query(request, "n", 10, 1, _MAX_TOP)
        titles = [{"manifest": m, "requests": c} for m, c in node.top_titles(n)]
        return web.json_response({"node": node.name, "titles": titles})

    @_mutating(node)
    async def purge(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body.get("all") is True:
            purged = node.purge()
        elif isinstance(url := body.get("url"), str) and url.startswith("/"):
            purged = node.purge(url=url)
        elif isinstance(prefix := body.get("prefix"), str) and prefix.startswith("/"):
            purged = node.purge(prefix=prefix)
        else:
            raise _bad('body must be {"url": "/path"}, {"prefix": "/dir/"} or {"all": true}')
        return web.json_response({"node": node.name, "purged": purged})

    @_mutating(node)
    async def prewarm_route(request: web.Request) -> web.Response:
        body = await _json_object(request)
        lowest = _opt_int(body, "lowest", 1, 1000)
        seconds = _opt_number(body, "seconds")
        concurrency = _opt_int(body, "concurrency", 1, MAX_CONCURRENCY)
        options: dict[str, Any] = {"lowest": lowest, "seconds": seconds}
        options["concurrency"] = 8 if concurrency is None else concurrency
        if "top" in body:
            n = _opt_int(body, "top", 1, _MAX_TOP)
            if n is None:
                raise _bad('"top" must be a number of titles')
            reports = await prewarm_top(node, n, **options)
            return web.json_response({"node": node.name, "titles": [r.to_json() for r in reports]})
        manifest = body.get("manifest")
        if not isinstance(manifest, str) or not manifest.startswith("/"):
            raise _bad('"manifest" must be a URL path starting with "/" (or give "top": N)')
        report = await prewarm(node, manifest, **options)
        return web.json_response(report.to_json(), status=502 if report.error else 200)

    admin = web.Application()
    admin.router.add_get("/metrics", metrics)
    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/stats", stats_route)
    admin.router.add_get("/top", top)
    admin.router.add_post("/purge", purge)
    admin.router.add_post("/prewarm", prewarm_route)
    return admin


_MAX_TOP = 1000
_MAX_BODY = 64 * 1024
Handler = Callable[[web.Request], Awaitable[web.Response]]


class Refusal(enum.Enum):
    """Why a mutating admin request was refused (the metric's ``result`` label)."""

    MISSING = "missing"  # 401: no token sent
    WRONG = "wrong"  # 403
    LIMITED = "limited"  # 429: too many failures from this address
    DISABLED = "disabled"  # 403: the node has no --admin-token


class _Lockout:
    """Failed token checks per client address: a ``TokenBucket`` each, forgotten once
    full again (an entry's TTL restarts at every failure)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        ttl = FAILURE_BURST / FAILURE_RATE  # time for an empty bucket to fill up
        # guarded by: single event loop
        self._buckets: TTLCache[str, TokenBucket] = TTLCache(TRACKED_ADDRESSES, ttl, clock)

    def wait(self, address: str) -> float:
        """Seconds before ``address`` may fail again (0: it may try now)."""
        bucket = self._buckets.get(address)
        return 0.0 if bucket is None else bucket.wait_time(self.clock())

    def failed(self, address: str) -> None:
        now = self.clock()
        bucket = self._buckets.get(address) or TokenBucket(FAILURE_RATE, FAILURE_BURST, now)
        bucket.try_take(now)
        self._buckets[address] = bucket
        if bucket.tokens(now) < 1:
            log.info("admin: %s locked out after failed token checks", address)

    def __repr__(self) -> str:
        return f"<_Lockout addresses={len(self._buckets)}/{TRACKED_ADDRESSES}>"


class _Guard:
    """A node's token checks: the lockout and the refusal counts, shared by every admin
    app made for the node (the counter can be registered only once)."""

    def __init__(self, node: Node) -> None:
        self.lockout = _Lockout(node.clock)
        self._refused: Counter = admin_auth_failures(node.metrics.registry)
        for refusal in Refusal:
            self._refused.labels(refusal.value)

    def refuse(self, refusal: Refusal, address: str) -> None:
        """Count a refusal; a missing or wrong token is also a failure of ``address``."""
        self._refused.labels(refusal.value).inc()
        if refusal in (Refusal.MISSING, Refusal.WRONG):
            self.lockout.failed(address)


_guards: weakref.WeakKeyDictionary[Node, _Guard] = weakref.WeakKeyDictionary()


def _mutating(node: Node) -> Callable[[Handler], Handler]:
    """Wrap a mutating route: it runs only for a request carrying the node's token."""
    guard = _guards.get(node)
    if guard is None:
        guard = _guards[node] = _Guard(node)

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            expected = node.settings.admin_token
            address = request.remote or ""
            if not expected:
                guard.refuse(Refusal.DISABLED, address)
                return _error(403, "admin token not configured on this node (--admin-token)")
            if wait := guard.lockout.wait(address):
                guard.refuse(Refusal.LIMITED, address)
                retry = str(max(1, math.ceil(wait)))
                return _error(429, "too many failed admin token checks", {"Retry-After": retry})
            sent = _token(request)
            if sent is None:
                guard.refuse(Refusal.MISSING, address)
                return _error(401, "admin token required", {"WWW-Authenticate": "Bearer"})
            if not hmac.compare_digest(_digest(sent), _digest(expected)):
                guard.refuse(Refusal.WRONG, address)
                return _error(403, "wrong admin token")
            return await handler(request)

        return guarded

    return wrap


def _digest(token: str) -> bytes:
    """Any ``str`` to 32 bytes: header values decoded with surrogateescape (bytes that
    are not UTF-8) and lone surrogates encode too, so no token can raise."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def _token(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-Tiercdn-Token") or None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise _bad(f"body larger than {_MAX_BODY} bytes")
    raw = await request.content.read(_MAX_BODY + 1)
    if len(raw) > _MAX_BODY:
        raise _bad(f"body larger than {_MAX_BODY} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _bad("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    return body


def _opt_int(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f'"{name}" must be an integer {low}..{high} or null')
    return value


def _opt_number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise _bad(f'"{name}" must be a number >= 0 or null')
    return float(value)


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    try:
        value = default if text is None else int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _bad(f"?{name}= must be an integer {low}..{high}")
    return value
