"""CORS for players on other origins (an edge policy).

Every response carries ``Access-Control-Allow-Origin`` and exposes the
headers a player or its debug overlay reads (Cache-Status, Age, Content-Range);
a preflight (OPTIONS with Access-Control-Request-Method, e.g. for a Range
request) is answered at the edge and never forwarded.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from shared.engine.responses import Responder

__all__ = ["install_cors"]

EXPOSED = "Cache-Status, Age, Via, Content-Range, Content-Length, ETag, Date"
PREFLIGHT_MAX_AGE = "86400"


def install_cors(app: web.Application, responder: Responder, allow_origin: str) -> None:
    """Answer preflights, and have ``responder`` add CORS fields to every response
    (built into the headers it makes: no per-response hook on the hit path)."""
    cors_headers = {
        "Access-Control-Allow-Origin": allow_origin,
        "Access-Control-Expose-Headers": EXPOSED,
    }
    if allow_origin != "*":
        cors_headers["Vary"] = "Origin"

    @web.middleware
    async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
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
        return await handler(request)

    responder.extra.update(cors_headers)
    app.middlewares.append(preflight)
