"""What tests import: node settings, URLs, an injected clock, the chain of tiers, the
sample titles, and explicit synchronisation with real servers.

Fixtures live in the ``conftest.py`` files and import from here; tests import
from here, never from a conftest.

Synchronisation: tests order events with ``asyncio.Event``, never ``sleep``.
``Arrivals`` and ``Gate`` are plain aiohttp middlewares a test appends to a
real server's application before it starts: ``Arrivals`` tells when requests
reached a node's handler (and when their handlers ended), ``Gate`` holds a real
upstream's requests until the test opens it. ``Tally`` is the count behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shlex
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler, Middleware
from multidict import CIMultiDict, CIMultiDictProxy

from edge.settings import EdgeSettings
from origin.packager import Rendition
from regional.settings import RegionalSettings
from shared.engine.node import NODE, Node
from shared.http.dates import format_http_date
from shared.service.settings import CacheSettings
from shared.store import CachedObject

try:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
    from playwright.async_api import async_playwright
except ImportError:  # the chromium fixture fails with the command that installs it
    async_playwright = None  # type: ignore[assignment]
    PlaywrightTimeout = TimeoutError  # type: ignore[misc,assignment]

__all__ = [
    "AAC",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "DASHJS",
    "INSTALL",
    "LONG_LADDER",
    "LONG_SECONDS",
    "LONG_TITLE",
    "REPO",
    "SAMPLE_LADDER",
    "SAMPLE_SECONDS",
    "SAMPLE_TITLE",
    "Arrivals",
    "Chain",
    "Clock",
    "Gate",
    "H264",
    "Middleware",
    "PlaywrightTimeout",
    "STARTED_OR_FAILED",
    "ServerFactory",
    "Tally",
    "async_playwright",
    "edge_settings",
    "open_page",
    "require_h264_aac",
    "node_settings",
    "regional_settings",
    "settings_for",
    "shed_while_held",
    "until",
    "url_of",
]

REPO = Path(__file__).resolve().parents[1]

# --- titles --------------------------------------------------------------------

SAMPLE_TITLE = "sample"
SAMPLE_SECONDS = 6
SAMPLE_LADDER = (Rendition(90, 100_000), Rendition(180, 200_000))

LONG_TITLE = "long"  # the browser tests' title
LONG_SECONDS = 30
LONG_LADDER = (Rendition(180, 300_000), Rendition(360, 800_000))

# --- real nodes on loopback ----------------------------------------------------

ServerFactory = Callable[..., Awaitable[TestServer]]


_EDGE_ONLY = {f.name for f in dataclasses.fields(EdgeSettings)} - {
    f.name for f in dataclasses.fields(CacheSettings)
}


S = TypeVar("S", bound=CacheSettings)


def settings_for(cls: type[S], name: str, upstream: str | list[str], **kw: Any) -> S:
    """``cls`` settings of a cache node on ephemeral ports, with test-sized timeouts."""
    ups = (upstream,) if isinstance(upstream, str) else tuple(upstream)
    kw.setdefault("read_timeout", 5.0)
    kw.setdefault("connect_timeout", 2.0)
    return cls(name=name, upstream=ups, port=0, admin_port=0, **kw)


def node_settings(name: str, upstream: str | list[str], **kw: Any) -> CacheSettings:
    """Settings of a cache node: an edge's (``EdgeSettings``) when an edge-only
    setting (prefetch, CORS, player) is given, else the engine's alone."""
    cls = EdgeSettings if kw.keys() & _EDGE_ONLY else CacheSettings
    return settings_for(cls, name, upstream, **kw)


def edge_settings(name: str, upstream: str | list[str], **kw: Any) -> EdgeSettings:
    """Settings for ``edge.app.make_app``."""
    return settings_for(EdgeSettings, name, upstream, **kw)


def regional_settings(name: str, upstream: str | list[str], **kw: Any) -> RegionalSettings:
    """Settings for ``regional.app.make_app``."""
    return settings_for(RegionalSettings, name, upstream, **kw)


def url_of(server: TestServer) -> str:
    """The base URL of a running test server, without a trailing slash."""
    return str(server.make_url("")).rstrip("/")


@dataclasses.dataclass
class Chain:
    """origin → regional → edge, each a real server on a loopback port."""

    origin: TestServer
    regional: TestServer
    edge: TestServer

    @property
    def edge_node(self) -> Node:
        return self.edge.app[NODE]

    @property
    def regional_node(self) -> Node:
        return self.regional.app[NODE]

    def url(self, path: str, tier: str = "edge") -> str:
        return url_of(getattr(self, tier)) + path


class Clock:
    """An injected clock tests move by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- explicit synchronisation --------------------------------------------------


class Tally:
    """A count a test can wait on: ``await tally.reached(n)`` wakes when ``add`` gets
    there (an event per awaited value, never a poll)."""

    def __init__(self) -> None:
        self.value = 0
        self._events: dict[int, asyncio.Event] = {}  # guarded by: single event loop

    def add(self) -> None:
        self.value += 1
        for n, event in self._events.items():
            if self.value >= n:
                event.set()

    async def reached(self, n: int) -> None:
        if self.value < n:
            await self._events.setdefault(n, asyncio.Event()).wait()

    def __repr__(self) -> str:
        return f"<Tally {self.value} awaited={sorted(self._events)}>"


class Arrivals:
    """Middleware: when requests reached a node's handler, and when their handlers ended.

    ``arrived`` counts a request once its handler has run up to its first
    suspension (the count is scheduled with ``call_soon`` as the request enters,
    so it runs only after the request's task yields). On a cache node's miss
    path nothing is awaited before the request joins or leads the fill for its
    key, so an arrived request is a reader of that fill, waiting for its head.
    ``finished`` counts handlers that returned or raised (a client that left, too).

    Install before the server starts: ``start_node(..., middlewares=[a.middleware])``.
    """

    def __init__(self) -> None:
        self.arrived = Tally()
        self.finished = Tally()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        asyncio.get_running_loop().call_soon(self.arrived.add)
        try:
            return await handler(request)
        finally:
            self.finished.add()


class Gate:
    """Middleware that holds every request before its handler until ``open()``:
    a real upstream that answers only when the test says so. ``arrived`` counts
    the requests it has held (or let through)."""

    def __init__(self) -> None:
        self.arrived = Tally()
        self._open = asyncio.Event()

    def open(self) -> None:
        self._open.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.arrived.add()
        await self._open.wait()
        return await handler(request)


async def until(condition: Coroutine[Any, Any, object], *watched: asyncio.Future[Any]) -> None:
    """Await ``condition``; if a watched task ends first, raise its error (or fail)
    at once instead of waiting for the test's timeout."""
    waiter = asyncio.get_running_loop().create_task(condition)
    done, _ = await asyncio.wait({waiter, *watched}, return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        waiter.result()
        return
    waiter.cancel()
    for future in done:
        future.result()  # raises what ended it
    raise AssertionError(f"{sorted(map(repr, done))} ended before {condition!r}")


# --- stored responses and header tables (unit tests) ----------------------------------

T = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


def hdrs(*lines: str) -> CIMultiDictProxy[str]:
    """Headers from ``"Name: value"`` lines, in order, repeats kept."""
    pairs = [line.split(":", 1) for line in lines]
    return CIMultiDictProxy(CIMultiDict([(name, value.strip()) for name, value in pairs]))


def date(offset: float) -> str:
    """The HTTP-date ``offset`` seconds after ``T``."""
    return format_http_date(T + offset)


def stored_object(
    key: str,
    size: int,
    vary_key: tuple[str, ...] = (),
    names: tuple[str, ...] = (),
    fill: int = 0x61,
    **headers: str,
) -> CachedObject:
    """A stored 200 of ``size`` bytes of ``fill`` (fresh for 60 s, aged 3 s at 11.0)."""
    return CachedObject(
        key=key,
        vary_names=names,
        vary_key=vary_key,
        status=200,
        headers=CIMultiDictProxy(CIMultiDict({"X": "y", **headers})),
        body=bytes([fill]) * size,
        request_time=10.0,
        response_time=11.0,
        lifetime=60.0,
        initial_age=3.0,
        must_validate=False,
    )


# --- the real browser (tests/browser) ------------------------------------------

DASHJS = REPO / ".cache/npm/node_modules/dashjs/dist/modern/umd/dash.all.min.js"
CHROMIUM = "/usr/bin/chromium"
INSTALL = "run scripts/install-browser (the browser install steps of .ci/run)"
# The flags this machine needs: no sandbox as root, no GPU, and no background
# calls home (the closed network refuses them, many at a time).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --- command lines (compose, Kubernetes) -------------------------------------------


def shell_commands(argv: Sequence[str]) -> list[list[str]]:
    """``argv``, or the simple commands of its ``sh -c SCRIPT`` (split at ``;``, ``||``,
    ``&&`` and ``|``), each as written (an ``exec`` kept)."""
    if list(argv[:2]) != ["sh", "-c"]:
        return [list(argv)]
    lexer = shlex.shlex(argv[2], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in (";", "||", "&&", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


# --- real node processes ----------------------------------------------------------


@contextlib.asynccontextmanager
async def node_process(args: Sequence[str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python ARGS`` from the repository, stderr to ``log``, yielded once it prints its
    ready line; SIGTERM when the block ends (if it still runs), then waited for."""
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
        try:
            assert proc.stdout is not None
            assert b"ready" in await asyncio.wait_for(proc.stdout.readline(), 20)
            yield proc
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)


# -- live channels ------------------------------------------------------------------


class OriginLog:
    """Middleware: every request the origin answered, as (arrival time, path, status)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, int]] = []
        self.regional: OriginLog | None = None  # the same, of the regional (the origin's)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived = time.time()
        response = await handler(request)
        self.seen.append((arrived, request.path, response.status))
        return response

    def count(self, path: str) -> int:
        return sum(1 for _, p, _ in self.seen if p == path)


async def eventually(check: Callable[[], object], seconds: float = 20.0) -> Any:
    """``check()``'s first truthy answer, polled every 50 ms; fails after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {seconds}s")


# -- browser pages -----------------------------------------------------------------

H264 = 'video/mp4; codecs="avc1.64001e"'  # High profile, level 3.0: the 360p rung
AAC = 'audio/mp4; codecs="mp4a.40.2"'
STARTED_OR_FAILED = (  # the player page has played, or said why not
    "() => window.tiercdnPlayer && (tiercdnPlayer.startedAt !== null"
    " || tiercdnPlayer.errors.length > 0)"
)


async def open_page(browser: Any) -> tuple[Any, list[str]]:
    """A new page of ``browser`` and the list its uncaught and console errors go to."""
    page = await browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    return page, problems


async def require_h264_aac(page: Any, browser: Any) -> None:
    """Fail, saying what to install, unless ``browser`` plays H.264 and AAC in MSE."""
    codecs = await page.evaluate(
        "([v, a]) => [MediaSource.isTypeSupported(v), MediaSource.isTypeSupported(a)]", [H264, AAC]
    )
    if codecs != [True, True]:
        version = browser.browser.version if browser.browser else "?"
        raise AssertionError(
            f"this Chromium ({version}) cannot play the title in MSE: "
            f"isTypeSupported({H264})={codecs[0]}, ({AAC})={codecs[1]}; it needs a build "
            "with proprietary codecs (Debian's chromium package has them)"
        )


async def shed_while_held(
    http: Any, edge: str, upstream_in: Tally, arrived: dict[str, asyncio.Event]
) -> tuple[dict[str, int | str], list[asyncio.Task[Any]]]:
    """With ``max_fills=4`` and an upstream that holds every segment (counting arrivals
    in ``upstream_in`` and ``arrived``): two fills of the lowest rung held (half the
    cap), then the top rung's first segment, the lowest rung's third and an init, each
    503 (shed without going upstream) or "in flight" (its fill held upstream). The
    statuses, and the requests still held (to release and read)."""
    loop = asyncio.get_running_loop()
    held = [loop.create_task(http.get(edge + f"/sample/chunk-0-0000{n}.m4s")) for n in (1, 2)]
    await until(upstream_in.reached(2), *held)  # two fills in flight: half the cap
    statuses: dict[str, int | str] = {}
    for path in ("chunk-1-00001.m4s", "chunk-0-00003.m4s", "init-1.mp4"):
        task = loop.create_task(http.get(edge + "/sample/" + path))
        upstream = loop.create_task(arrived["/sample/" + path].wait())
        await asyncio.wait([task, upstream], return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # answered without going upstream
            upstream.cancel()
            statuses[path] = (await task).status
        else:  # its fill is upstream, held there
            held.append(task)
            statuses[path] = "in flight"
    return statuses, held
