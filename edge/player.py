"""The player page (an edge policy): dash.js plays a title through this edge.

``GET /player/?src=MANIFEST`` serves a page that plays ``src`` (default
``/sample/manifest.mpd``) and shows, per segment, each tier's Cache-Status
member, the representation and bitrate dash.js chose, and the time to first
byte. The page reads Cache-Status from the responses themselves, so the same
page works for a manifest on another edge that exposes it through CORS. A
live (dynamic) ``src`` plays at the live edge, low-latency when its MPD says
so, and the page shows dash.js's live latency each second; ``latency=SECONDS``
overrides the MPD's latency target (empty: the MPD's).

Invariants: only the exact paths in ``ROUTES`` (plus ``/player/dash.all.min.js``
when dash.js is a local file) are taken from the proxy, so every other URL,
titles under ``/player/...`` included, is still proxied; ``src`` is an http(s)
URL or an absolute path made of URL characters only, and reaches the page
HTML-escaped inside an attribute, never inside a script; ``latency`` is empty
or a plain decimal number of seconds in ``LATENCY_RANGE``; a Content-Security-
Policy lets scripts come only from the edge and dash.js's origin. dash.js is
never vendored: the browser loads it from ``--player-dashjs-url``.
"""

from __future__ import annotations

import html
import re
import string
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

__all__ = [
    "DEFAULT_SRC",
    "LATENCY_RANGE",
    "LOCAL_DASHJS",
    "ROUTES",
    "install_player",
    "valid_latency",
    "valid_src",
]

STATIC = Path(__file__).with_name("static")
DEFAULT_SRC = "/sample/manifest.mpd"
LOCAL_DASHJS = "/player/dash.all.min.js"  # where a local dash.js file is served
ROUTES = {  # path -> (file under static/, content type)
    "/player/player.js": ("player.js", "text/javascript"),
    "/player/player.css": ("player.css", "text/css"),
}
MAX_SRC = 2048
LATENCY_RANGE = (0.5, 60.0)  # seconds a live target may be set to on the page
_LATENCY = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3})?")
# RFC 3986 characters only: no quotes, angle brackets, spaces, backslashes or controls.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
_NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def valid_src(src: str) -> bool:
    """True for an http(s) URL with a host, or an absolute path (not ``//host``)."""
    if not src or len(src) > MAX_SRC or not _URL_CHARS.fullmatch(src):
        return False
    if src.startswith("/"):
        return not src.startswith("//")
    try:
        url = URL(src)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def valid_latency(latency: str) -> bool:
    """True for ``""`` (the MPD's target) or seconds like ``1.5`` within ``LATENCY_RANGE``."""
    if not latency:
        return True
    low, high = LATENCY_RANGE
    return bool(_LATENCY.fullmatch(latency)) and low <= float(latency) <= high


def _csp(dashjs_url: str) -> str:
    """Scripts from the edge and dash.js's origin only; media from anywhere http(s)."""
    scripts = "'self'" if dashjs_url == LOCAL_DASHJS else f"'self' {URL(dashjs_url).origin()}"
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {scripts}",
            "connect-src 'self' http: https:",  # src may name another edge
            "media-src 'self' blob:",
            "img-src 'self' data:",
            "style-src 'self' 'unsafe-inline'",  # dash.js styles its caption overlay
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


def _dashjs(setting: str) -> tuple[str, Path | None]:
    """The URL the page loads dash.js from, and the local file behind it, if any."""
    if setting.startswith(("http://", "https://")):
        if not valid_src(setting):
            raise ValueError(f"--player-dashjs-url is not a valid URL: {setting!r}")
        return setting, None
    path = Path(setting).expanduser()
    if not path.is_file():
        raise ValueError(f"--player-dashjs-url must be an http(s) URL or a file: {setting!r}")
    return LOCAL_DASHJS, path.resolve()


def install_player(app: web.Application, dashjs_setting: str) -> None:
    """Mount the player page on ``app`` (dash.js from ``dashjs_setting``)."""
    dashjs_url, local = _dashjs(dashjs_setting)
    page = string.Template((STATIC / "player.html").read_text(encoding="utf-8"))
    headers = {**_NO_CACHE, "Content-Security-Policy": _csp(dashjs_url)}

    async def player_page(request: web.Request) -> web.Response:
        src = request.query.get("src", DEFAULT_SRC)
        latency = request.query.get("latency", "")
        if not valid_src(src):
            return web.Response(status=400, text="src must be an http(s) URL or an absolute path\n")
        if not valid_latency(latency):
            low, high = LATENCY_RANGE
            return web.Response(status=400, text=f"latency must be {low:g} to {high:g} seconds\n")
        body = page.substitute(
            dashjs=html.escape(dashjs_url, quote=True),
            src=html.escape(src, quote=True),
            latency=latency,  # digits and a dot only (valid_latency)
        )
        return web.Response(text=body, content_type="text/html", headers=headers)

    app.router.add_get("/player/", player_page)
    for route, (name, content_type) in ROUTES.items():
        app.router.add_get(route, _static_file(STATIC / name, content_type))
    if local is not None:
        app.router.add_get(LOCAL_DASHJS, _static_file(local, "text/javascript"))


def _static_file(path: Path, content_type: str) -> Handler:
    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={**_NO_CACHE, "Content-Type": content_type})

    return serve
