"""CORS for players on other origins (an edge policy).

Every response carries ``Access-Control-Allow-Origin`` and exposes the
headers a player or its debug overlay reads (Cache-Status, Age, Content-Range);
a preflight (OPTIONS with Access-Control-Request-Method, e.g. for a Range
request) is answered at the edge and never forwarded.
"""

from __future__ import annotations

from aiohttp import web

from shared.engine.node import Node

__all__ = ["install_cors"]

EXPOSED = "Cache-Status, Age, Via, Content-Range, Content-Length, ETag, Date"
PREFLIGHT_MAX_AGE = "86400"


def install_cors(node: Node, allow_origin: str) -> None:
    """Have ``node`` answer preflights itself (its ``preflight`` hook: no middleware on
    every request) and its responder add CORS fields to every response (built into
    the headers it makes: no per-response hook on the hit path)."""
    cors_headers = {
        "Access-Control-Allow-Origin": allow_origin,
        "Access-Control-Expose-Headers": EXPOSED,
    }
    if allow_origin != "*":
        cors_headers["Vary"] = "Origin"

    def preflight(request: web.Request) -> web.StreamResponse | None:
        if "Access-Control-Request-Method" not in request.headers:
            return None  # a plain OPTIONS: forwarded like any other method
        requested = request.headers.get("Access-Control-Request-Headers", "")
        return web.Response(
            status=204,
            headers={
                **cors_headers,
                "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
                "Access-Control-Allow-Headers": requested or "Range",
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            },
        )

    node.respond.extra.update(cors_headers)
    node.preflight = preflight
