"""The player page (an edge policy): dash.js or hls.js plays a title through this edge.

``GET /player/?src=MANIFEST`` serves a page that plays ``src`` (default
``/sample/manifest.mpd``) and shows, per segment, each tier's Cache-Status
member, the representation and bitrate the player chose, and the time to first
byte. A ``src`` whose path ends in ``.m3u8`` is HLS and plays with hls.js (or
the browser's own HLS when there is no hls.js); anything else with dash.js.
The page reads Cache-Status from the responses themselves, so the same page
works for a manifest on another edge that exposes it through CORS. A live
``src`` plays at the live edge (low-latency when its MPD says so) and the page
shows the player's live latency each second; ``latency=SECONDS`` overrides the
manifest's latency target (empty: the manifest's).

Invariants: only the exact paths in ``ROUTES`` (plus ``/player/dash.all.min.js``
and ``/player/hls.min.js`` when a library is a local file) are taken from the
proxy, so every other URL, titles under ``/player/...`` included, is still
proxied; ``src`` is an http(s) URL or an absolute path made of URL characters
only, and reaches the page HTML-escaped inside an attribute, never inside a
script; ``latency`` is empty or a plain decimal number of seconds in
``LATENCY_RANGE``; a Content-Security-Policy lets scripts come only from the
edge and the page's library's origin. Neither library is vendored: the browser
loads dash.js from ``--player-dashjs-url`` and hls.js from ``--player-hlsjs-url``.
"""

from __future__ import annotations

import dataclasses
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
    "LOCAL_HLSJS",
    "ROUTES",
    "install_player",
    "is_hls",
    "valid_latency",
    "valid_src",
]

STATIC = Path(__file__).with_name("static")
DEFAULT_SRC = "/sample/manifest.mpd"
LOCAL_DASHJS = "/player/dash.all.min.js"  # where a local dash.js file is served
LOCAL_HLSJS = "/player/hls.min.js"  # where a local hls.js file is served
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


def is_hls(src: str) -> bool:
    """True when ``src``'s path (before any query or fragment) ends in ``.m3u8``."""
    return src.split("#", 1)[0].split("?", 1)[0].lower().endswith(".m3u8")


@dataclasses.dataclass(frozen=True)
class _Library:
    """A player library as the page uses it: its name, script URL and local file."""

    engine: str  # "dash" | "hls": what player.js drives
    name: str  # "dash.js" | "hls.js"
    url: str  # the script's src ("" = none: the browser's own HLS)
    local: Path | None  # the file the edge serves at ``url``, if any
    csp: str  # the page's Content-Security-Policy with this library

    def page_fields(self) -> dict[str, str]:
        """What player.html says about this library (every value HTML-safe)."""
        url = html.escape(self.url, quote=True)
        if not url:
            name = "the browser's own HLS"
            return {"engine": self.engine, "name": name, "library": "", "script": "",
                    "credit": f"{name} (no --player-hlsjs-url)"}  # fmt: skip
        return {
            "engine": self.engine,
            "name": self.name,
            "library": url,
            "script": f'<script src="{url}"></script>\n',
            "credit": f"{self.name} from <code>{url}</code>",
        }


def _csp(script_url: str) -> str:
    """Scripts from the edge and the library's origin only; media from anywhere http(s)."""
    scripts = "'self'"
    if script_url.startswith(("http://", "https://")):
        scripts += f" {URL(script_url).origin()}"
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {scripts}",
            "connect-src 'self' http: https:",  # src may name another edge
            "media-src 'self' blob: http: https:",  # the browser's own HLS fetches src itself
            "worker-src 'self' blob:",  # hls.js transmuxes in a blob: worker
            "img-src 'self' data:",
            "style-src 'self' 'unsafe-inline'",  # dash.js styles its caption overlay
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


def _library(engine: str, name: str, flag: str, setting: str, local_route: str) -> _Library:
    """The page's view of ``setting``: an http(s) URL, a local file, or "" (none)."""
    if not setting:
        return _Library(engine, name, "", None, _csp(""))
    if setting.startswith(("http://", "https://")):
        if not valid_src(setting):
            raise ValueError(f"{flag} is not a valid URL: {setting!r}")
        return _Library(engine, name, setting, None, _csp(setting))
    path = Path(setting).expanduser()
    if not path.is_file():
        raise ValueError(f"{flag} must be an http(s) URL or a file: {setting!r}")
    return _Library(engine, name, local_route, path.resolve(), _csp(local_route))


def install_player(app: web.Application, dashjs_setting: str, hlsjs_setting: str = "") -> None:
    """Mount the player page on ``app`` (dash.js and hls.js from their settings)."""
    dashjs = _library("dash", "dash.js", "--player-dashjs-url", dashjs_setting, LOCAL_DASHJS)
    hlsjs = _library("hls", "hls.js", "--player-hlsjs-url", hlsjs_setting, LOCAL_HLSJS)
    page = string.Template((STATIC / "player.html").read_text(encoding="utf-8"))
    fields = {library.engine: library.page_fields() for library in (dashjs, hlsjs)}

    async def player_page(request: web.Request) -> web.Response:
        src = request.query.get("src", DEFAULT_SRC)
        latency = request.query.get("latency", "")
        if not valid_src(src):
            return web.Response(status=400, text="src must be an http(s) URL or an absolute path\n")
        if not valid_latency(latency):
            low, high = LATENCY_RANGE
            return web.Response(status=400, text=f"latency must be {low:g} to {high:g} seconds\n")
        library = hlsjs if is_hls(src) else dashjs
        body = page.substitute(
            fields[library.engine],
            src=html.escape(src, quote=True),
            latency=latency,  # digits and a dot only (valid_latency)
        )
        headers = {**_NO_CACHE, "Content-Security-Policy": library.csp}
        return web.Response(text=body, content_type="text/html", headers=headers)

    app.router.add_get("/player/", player_page)
    for route, (name, content_type) in ROUTES.items():
        app.router.add_get(route, _static_file(STATIC / name, content_type))
    for library in (dashjs, hlsjs):
        if library.local is not None:
            app.router.add_get(library.url, _static_file(library.local, "text/javascript"))


def _static_file(path: Path, content_type: str) -> Handler:
    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers={**_NO_CACHE, "Content-Type": content_type})

    return serve
