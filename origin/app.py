"""The origin's HTTP adapter: serve the library's files, list its titles.

Invariants:

- Every request path is checked by ``Library.resolve`` on the RAW path
  (``request.raw_path``, still percent-encoded) before any file is opened;
  aiohttp's server does not normalise dot segments, so ``/../x`` reaches us
  as written and is refused here.
- ``web.FileResponse`` does Range/206, 416, strong ETags
  (``"<mtime_ns hex>-<size hex>"``), Last-Modified, 304s, HEAD and sendfile;
  this module only sets Content-Type and Cache-Control by ``Kind``.
- Error responses are short text with ``Cache-Control: no-store``
  (``--error-cache-control``, '' for none) and no CDN-Cache-Control, whoever
  produced them; the ``on_response_prepare`` hook sees every response once,
  with its final status, and counts it.
- Metric labels come from enums (``Kind``) and status classes, never URLs.
- aiohttp quirks kept as they are: a malformed, multi-range or non-``bytes``
  Range gets 416 (RFC 9110 §14.2 would rather ignore the last two), and a
  ``<file>.gz``/``.br`` sibling is served for a matching Accept-Encoding.
- Settings and library are read once per request from ``Current``, which a
  reload (SIGHUP, ``origin.reload``) swaps: a response already started keeps
  the file it opened and the headers it was given.
- Faults are off by default. ``fault_delay`` delays every response's headers;
  ``fault_rate`` paces file bodies (full and Range) at that many bytes/s;
  ``fault_status`` answers every request with that status; ``fault_reset_rate``
  cuts that share of file bodies halfway with a connection reset. With
  ``fault_control`` the admin listener's ``PUT /faults`` changes the last two
  while the origin runs (``tiercdn loadtest chaos`` uses it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from origin.library import BadPath, Kind, Library, NotFound
from origin.live import OWN_CACHE_CONTROL, Channels, LiveSpec, utc_now_iso
from origin.packager import DEFAULT_LADDER, parse_ladder
from origin.settings import OriginSettings
from shared.http import CDN_CACHE_CONTROL

__all__ = [
    "CURRENT_KEY",
    "FAULTS_KEY",
    "KIND_KEY",
    "LIVE_KEY",
    "METRICS_KEY",
    "Current",
    "Faults",
    "Metrics",
    "make_admin_app",
    "make_app",
]

log = logging.getLogger(__name__)

LISTING_MAX_AGE = 5
THROTTLE_CHUNK = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Every instrument of one origin, in its own registry (many apps share a process)."""

    registry: CollectorRegistry
    requests: Counter
    response_bytes: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        metrics = cls(
            registry=registry,
            requests=Counter(
                "tiercdn_origin_requests",
                "Requests answered by the origin, by kind of file and status class",
                ["kind", "status"],
                registry=registry,
            ),
            response_bytes=Counter(
                "tiercdn_origin_response_bytes",
                "Body bytes the origin sent, by kind of file",
                ["kind"],
                registry=registry,
            ),
        )
        for kind in Kind:
            metrics.response_bytes.labels(kind.value)
        return metrics

    def record(self, kind: Kind, status: int, body_bytes: int) -> None:
        """Count one answered request."""
        self.requests.labels(kind.value, f"{status // 100}xx").inc()
        if body_bytes:
            self.response_bytes.labels(kind.value).inc(body_bytes)

    def stats(self) -> dict[str, Any]:
        """Totals for ``/stats``: requests, requests by kind, bytes sent."""
        by_kind = {kind.value: 0 for kind in Kind}
        bytes_sent = 0
        for metric in self.requests.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    by_kind[sample.labels["kind"]] += int(sample.value)
        for metric in self.response_bytes.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    bytes_sent += int(sample.value)
        return {
            "requests": sum(by_kind.values()),
            "requests_by_kind": by_kind,
            "bytes_sent": bytes_sent,
        }


@dataclasses.dataclass
class Faults:
    """The faults changeable at run time (``PUT /faults``); from the settings at start."""

    status: int = 0  # answer every request with this status (0 = off)
    reset_rate: float = 0.0  # share of file bodies cut halfway by a reset
    rng: random.Random = dataclasses.field(default_factory=random.Random, repr=False)

    def resets(self) -> bool:
        return bool(self.reset_rate) and self.rng.random() < self.reset_rate

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reset_rate": self.reset_rate}


@dataclasses.dataclass
class Current:
    """The settings and library the origin serves with now; a reload swaps them."""

    settings: OriginSettings  # guarded by: single event loop
    library: Library  # guarded by: single event loop


CURRENT_KEY = web.AppKey("origin_current", Current)
FAULTS_KEY = web.AppKey("origin_faults", Faults)
METRICS_KEY = web.AppKey("origin_metrics", Metrics)
LIVE_KEY = web.AppKey("origin_live", Channels)  # only with --live
KIND_KEY = web.RequestKey("origin_kind", Kind)


class _FaultyFileResponse(web.FileResponse):
    """A FileResponse paced at ``rate`` bytes/s (``fault_rate``; 0 = unpaced) and, if
    ``cut``, cut halfway by a connection reset (``fault_reset_rate``).

    Overrides aiohttp's ``_sendfile(request, fobj, offset, count)`` hook, which
    runs after Range and conditionals are decided, so 206/304/416 still work.
    """

    def __init__(self, path: Path, rate: int, *, cut: bool = False) -> None:
        super().__init__(path)
        self._rate, self._cut = rate, cut

    async def _sendfile(
        self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        writer = await super(web.FileResponse, self).prepare(request)
        assert writer is not None
        loop = asyncio.get_running_loop()
        end = count // 2 if self._cut else count
        chunk = max(1, min(THROTTLE_CHUNK, self._rate // 10)) if self._rate else max(end, 1)
        started, sent = loop.time(), 0
        await loop.run_in_executor(None, fobj.seek, offset)
        while sent < end:
            data = await loop.run_in_executor(None, fobj.read, min(chunk, end - sent))
            if not data:
                break
            await writer.write(data)
            sent += len(data)
            ahead = started + sent / self._rate - loop.time() if self._rate else 0
            if ahead > 0:
                await asyncio.sleep(ahead)
        await writer.drain()
        if self._cut:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("fault: body cut by a reset")
        return writer


def make_app(settings: OriginSettings) -> web.Application:
    """The origin's main application; raises ``FileNotFoundError`` without a library."""
    root = Path(settings.library)
    if not root.is_dir():
        raise FileNotFoundError(f"library directory not found: {root}")
    app = web.Application()
    app[CURRENT_KEY] = Current(settings, Library(root))
    app[METRICS_KEY] = Metrics.create()
    app[FAULTS_KEY] = Faults(settings.fault_status, settings.fault_reset_rate)
    if settings.live:
        ladder = parse_ladder(settings.live_ladder) if settings.live_ladder else DEFAULT_LADDER
        specs = [LiveSpec(name, "/time", ladder=ladder) for name in settings.live]
        channels = app[LIVE_KEY] = Channels(root / ".live", specs)  # hidden: not a title

        async def live(app: web.Application) -> AsyncIterator[None]:
            await channels.start()
            yield
            await channels.stop()

        app.cleanup_ctx.append(live)
    app.router.add_route("*", "/{tail:.*}", _handle)
    app.on_response_prepare.append(_on_prepare)
    log.info("origin %s serving %s", settings.name, root.resolve())
    return app


def make_admin_app(app: web.Application) -> web.Application:
    """The admin listener of ``app``: ``/metrics``, ``/healthz``, ``/stats``."""
    admin = web.Application()
    admin[CURRENT_KEY] = app[CURRENT_KEY]
    admin[METRICS_KEY] = app[METRICS_KEY]
    admin.router.add_get("/metrics", _metrics)
    admin.router.add_get("/healthz", _healthz)
    admin.router.add_get("/stats", _stats)
    if app[CURRENT_KEY].settings.fault_control:
        admin[FAULTS_KEY] = app[FAULTS_KEY]
        admin.router.add_get("/faults", _faults)
        admin.router.add_put("/faults", _faults)
    return admin


async def _handle(request: web.Request) -> web.StreamResponse:
    # Never prepare here: aiohttp prepares the returned response, and
    # FileResponse.prepare is not idempotent (a second call resends the body).
    current = request.app[CURRENT_KEY]
    settings, library = current.settings, current.library  # one view per request
    raw = request.raw_path.split("?", 1)[0]
    request[KIND_KEY] = Library.kind(PurePosixPath(raw))  # a label from the name only
    if settings.fault_delay:
        await asyncio.sleep(settings.fault_delay)
    faults = request.app[FAULTS_KEY]
    if faults.status:
        return _error(faults.status, "fault injected (--fault-status)")
    if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
        return _error(405, "method not allowed", {hdrs.ALLOW: "GET, HEAD"})
    loop = asyncio.get_running_loop()
    channels = request.app.get(LIVE_KEY)
    if raw == "/":
        titles = await loop.run_in_executor(None, library.titles)
        if channels is not None:
            titles += channels.listing()
        return web.json_response(
            titles, headers={hdrs.CACHE_CONTROL: f"public, max-age={LISTING_MAX_AGE}"}
        )
    if raw == "/time":  # UTCTiming (http-xsdate) of live presentations
        return web.Response(text=utc_now_iso(), headers={hdrs.CACHE_CONTROL: "no-store"})
    if channels is not None and raw.startswith("/live/"):
        return await channels.respond(request, raw)
    try:
        path, content_type = await loop.run_in_executor(None, _lookup, library, raw)
    except BadPath as exc:
        log.debug("400 for %r: %s", raw, exc)
        return _error(400, "bad path")
    except NotFound as exc:
        log.debug("404 for %r: %s", raw, exc)
        return _error(404, "not found")
    kind = request[KIND_KEY] = Library.kind(path)
    response: web.FileResponse
    cut = request.method == hdrs.METH_GET and faults.resets()
    if cut or settings.fault_rate:
        response = _FaultyFileResponse(path, settings.fault_rate, cut=cut)
    else:
        response = web.FileResponse(path)
    response.content_type = content_type
    response.headers[hdrs.CACHE_CONTROL] = _cache_control(settings, kind, path)
    if cdn := _cdn_cache_control(settings, kind):
        response.headers[CDN_CACHE_CONTROL] = cdn
    return response


def _lookup(library: Library, raw: str) -> tuple[Path, str]:
    """Resolve and type one path; blocking, so it runs in the executor."""
    path = library.resolve(raw)
    return path, library.content_type(path)


def _cache_control(settings: OriginSettings, kind: Kind, path: Path) -> str:
    if kind in (Kind.INIT, Kind.MEDIA):
        return f"public, max-age={int(settings.segment_max_age)}, immutable"
    if path.suffix.lower() == ".m3u8":  # a VOD title's: whole (EXT-X-ENDLIST) when published
        return f"public, max-age={int(settings.playlist_max_age)}"
    # manifests and anything else may change in place: short freshness
    return f"public, max-age={int(settings.manifest_max_age)}"


def _cdn_cache_control(settings: OriginSettings, kind: Kind) -> str:
    """CDN-Cache-Control by kind (RFC 9213 §3): what CDN caches obey over Cache-Control."""
    if kind in (Kind.INIT, Kind.MEDIA):
        return settings.segment_cdn_cache_control
    return settings.manifest_cdn_cache_control


def _error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        text=f"{status}: {text}",
        headers={hdrs.CACHE_CONTROL: "no-store", **(headers or {})},
    )


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Runs once per response, after its status is decided and before headers go out."""
    if response.status >= 400 and not request.get(OWN_CACHE_CONTROL):
        # FileResponse may still turn a file into 403/404/412/416 after we set
        # Cache-Control by kind; an error must never be cached as a segment.
        response.headers.popall(CDN_CACHE_CONTROL, None)
        response.headers.popall(hdrs.CACHE_CONTROL, None)
        if cache_control := request.app[CURRENT_KEY].settings.error_cache_control:
            response.headers[hdrs.CACHE_CONTROL] = cache_control
    body = 0
    if request.method != hdrs.METH_HEAD and response.status not in (204, 304):
        body = response.content_length or 0  # what we are about to send
    request.app[METRICS_KEY].record(request.get(KIND_KEY, Kind.OTHER), response.status, body)


async def _faults(request: web.Request) -> web.Response:
    """``GET /faults``: the faults now; ``PUT /faults`` with ``{"status": 503,
    "reset_rate": 0.05}`` sets both (a missing one is off)."""
    faults = request.app[FAULTS_KEY]
    if request.method == hdrs.METH_PUT:
        try:
            body = json.loads(await request.content.read(4096) or b"{}")
            status = body.get("status", 0)
            rate = body.get("reset_rate", 0.0)
        except (ValueError, AttributeError):
            return _error(400, 'body must be JSON like {"status": 503, "reset_rate": 0.05}')
        if not isinstance(status, int) or not (status == 0 or 400 <= status <= 599):
            return _error(400, '"status" must be 0 or an error status 400..599')
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            return _error(400, '"reset_rate" must be a number in [0, 1]')
        faults.status, faults.reset_rate = status, float(rate)
        log.warning("faults now %s", faults.to_json())
    return web.json_response(faults.to_json())


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS_KEY].registry)
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: CONTENT_TYPE_LATEST})


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _stats(request: web.Request) -> web.Response:
    stats = {"name": request.app[CURRENT_KEY].settings.name, **request.app[METRICS_KEY].stats()}
    return web.json_response(stats)
