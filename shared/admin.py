"""The admin listener of a cache node: metrics, health and stats.

Served on its own port, bound to loopback by default, so the proxy port
never exposes them.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.outcome import Outcome
from shared.proxy import NODE, Node

__all__ = ["make_admin_app", "stats"]

_FROM_CACHE = (Outcome.HIT, Outcome.STALE)
_LOOKUPS = (*_FROM_CACHE, Outcome.MISS, Outcome.COALESCED, Outcome.REVALIDATED)


def stats(node: Node) -> dict[str, object]:
    """The node's state as JSON-ready values (also used by ``tiercdn up``)."""
    lookups = sum(node.counts[o] for o in _LOOKUPS)
    hits = sum(node.counts[o] for o in _FROM_CACHE)
    return {
        "name": node.name,
        "objects": len(node.store),
        "bytes": node.store.bytes,
        "capacity_bytes": node.store.capacity,
        "evictions": node.store.evictions,
        "admitted": getattr(node.store, "admitted", None),
        "rejected": getattr(node.store, "rejected", None),
        "fills_in_flight": node.fetches_in_flight,
        "misses_in_flight": node.misses_in_flight,
        "hit_ratio": round(hits / lookups, 4) if lookups else None,
        "requests": {o.value: node.counts[o] for o in Outcome},
        "upstreams": {p: b.state.value for p, b in node.upstream.breakers.items()},
        "origin_budget": repr(node.budget) if node.budget.limited else None,
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

    admin = web.Application()
    admin.router.add_get("/metrics", metrics)
    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/stats", stats_route)
    return admin
