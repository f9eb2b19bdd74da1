"""The admin listener of a cache node: metrics, health, stats, top titles, purge
and pre-warm.

Served on its own port, bound to loopback by default, so the proxy port
never exposes them. Read-only routes are open; mutating ones (``POST /purge``,
``POST /prewarm``) need the node's ``--admin-token`` as ``Authorization:
Bearer <token>`` or ``X-Tiercdn-Token: <token>``: none sent → 401, wrong → 403,
and a node with no token configured refuses them all (403).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.engine.node import NODE, Node
from shared.engine.outcome import Outcome
from shared.engine.prewarm import MAX_CONCURRENCY, prewarm, prewarm_top

__all__ = ["make_admin_app", "stats"]

_FROM_CACHE = (Outcome.HIT, Outcome.STALE)
_LOOKUPS = (*_FROM_CACHE, Outcome.MISS, Outcome.COALESCED, Outcome.REVALIDATED)


def stats(node: Node) -> dict[str, object]:
    """The node's state as JSON-ready values (also used by ``tiercdn up``)."""
    lookups = sum(node.counts[o] for o in _LOOKUPS)
    hits = sum(node.counts[o] for o in _FROM_CACHE)
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
        "origin_budget": repr(node.budget) if node.budget.limited else None,
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


def _mutating(node: Node) -> Callable[[Handler], Handler]:
    """Wrap a mutating route: it runs only for a request carrying the node's token."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.Response:
            expected = node.settings.admin_token
            if not expected:
                return _error(403, "admin token not configured on this node (--admin-token)")
            sent = _token(request)
            if sent is None:
                return _error(401, "admin token required", {"WWW-Authenticate": "Bearer"})
            if not hmac.compare_digest(sent.encode(), expected.encode()):
                return _error(403, "wrong admin token")
            return await handler(request)

        return guarded

    return wrap


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
