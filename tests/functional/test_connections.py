"""Every connection has a deadline (DESIGN invariant 10, issue 9 parts 3 and 7).

Real listeners on loopback ports, started by ``shared.service.run.open_listeners``
(what ``serve`` runs in production) with test-sized limits; clients are raw
sockets so they can misbehave: slowloris heads, idle connections, a reader that
reads nothing, resets, malformed request lines. Two subprocess cases run the real
CLIs (the edge on uvloop, the origin on the stock loop) to pin their wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from edge.app import make_app as make_edge_app
from origin.app import METRICS_KEY
from origin.app import make_admin_app as make_origin_admin
from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from shared.engine.node import NODE, Node
from shared.ops.topology import free_ports
from shared.service.admin import make_admin_app
from shared.service.connection import ClientFault, ConnectionLimits
from shared.service.listener import Listener
from shared.service.run import open_listeners
from tests.helpers import Arrivals, edge_settings, node_process, url_of

SEGMENTS = [f"/sample/chunk-{rep}-{n:05d}.m4s" for rep in (0, 1, 2) for n in (1, 2, 3)]
FAST = {"header_timeout": 0.5, "keepalive_timeout": 5.0, "send_timeout": 5.0}


@dataclasses.dataclass
class Served:
    """A node's two listeners and the registry their counts go to."""

    main: Listener
    admin: Listener
    registry: CollectorRegistry
    app: web.Application

    def port(self, which: str = "main") -> int:
        return int(getattr(self, which).port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.main.port}{path}"

    def errors(self, reason: ClientFault, listener: str = "main") -> float:
        labels = {"listener": listener, "reason": reason.value}
        return self.registry.get_sample_value("tiercdn_client_errors_total", labels) or 0.0

    @property
    def node(self) -> Node:
        return self.app[NODE]


Start = Callable[..., Awaitable[Served]]


@pytest.fixture
async def listen() -> AsyncIterator[Start]:
    """Serve an app and its admin app as production does; stopped after the test."""
    started: list[Listener] = []

    async def start(
        app: web.Application, admin: web.Application, registry: CollectorRegistry, **limits: Any
    ) -> Served:
        listeners = await open_listeners(
            app, "127.0.0.1", 0, admin, "127.0.0.1", 0,
            limits=ConnectionLimits(**limits), registry=registry,
        )  # fmt: skip
        started.extend(listeners)
        return Served(listeners[0], listeners[1], registry, app)

    yield start
    for listener in reversed(started):
        await listener.stop()


@pytest.fixture
def serve_edge(listen: Start) -> Start:
    async def start(upstream: str, middlewares: tuple[Any, ...] = (), **limits: Any) -> Served:
        app = make_edge_app(edge_settings("edge-1", upstream))
        app.middlewares.extend(middlewares)
        return await listen(app, make_admin_app(app), app[NODE].metrics.registry, **limits)

    return start


@pytest.fixture
def serve_origin(listen: Start, origin_settings: OriginSettings) -> Start:
    async def start(**limits: Any) -> Served:
        app = make_origin_app(origin_settings)
        return await listen(app, make_origin_admin(app), app[METRICS_KEY].registry, **limits)

    return start


# --- raw clients ---------------------------------------------------------------------


async def exchange(port: int, data: bytes, within: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` on a new connection; everything received until the server closes,
    and how long that took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), within)
        return answer, time.monotonic() - started
    finally:
        writer.close()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


async def slowloris(port: int, interval: float = 0.2) -> tuple[bytes, float]:
    """Send a request head one byte every ``interval`` until the server answers or
    closes; what it answered and after how long."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /sample/manifest.mpd HTTP/1.1\r\nHost: edge\r\nX-Pad: " + b"a" * 200
    started = time.monotonic()
    answer = asyncio.ensure_future(reader.read())
    try:
        for i in range(len(head)):
            if not writer.is_closing():
                with contextlib.suppress(ConnectionError):
                    writer.write(head[i : i + 1])
            done, _ = await asyncio.wait({answer}, timeout=interval)
            if done:
                return answer.result(), time.monotonic() - started
        raise AssertionError("the whole head was sent and nothing came back")
    finally:
        answer.cancel()
        writer.close()


class Idle(asyncio.Protocol):
    """A connection that sends nothing; when the server closed it."""

    def __init__(self) -> None:
        self.opened = time.monotonic()
        self.closed: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(time.monotonic() - self.opened)


async def open_idle(port: int, count: int, batch: int = 250) -> list[Idle]:
    loop = asyncio.get_running_loop()
    conns: list[Idle] = []
    for first in range(0, count, batch):
        made = await asyncio.gather(
            *(
                loop.create_connection(Idle, "127.0.0.1", port)
                for _ in range(min(batch, count - first))
            )
        )
        conns.extend(protocol for _, protocol in made)
    return conns


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 10.0) -> float:
    """Seconds until ``check()`` holds (a kernel-side or another process's event: there
    is no Event to await)."""
    started = time.monotonic()
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within}s: {check}")
        await asyncio.sleep(0.02)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# --- request heads -------------------------------------------------------------------


@pytest.mark.parametrize("which", ["edge", "edge-admin", "origin", "origin-admin"])
async def test_listener_answers_malformed_request_lines(
    which, serve_edge, serve_origin, origin_server
):
    """No version → 400, HTTP/2.0 → 505, bad Host → 400: at once, never silence."""
    if which.startswith("edge"):
        served = await serve_edge(url_of(origin_server), header_timeout=30.0)
    else:
        served = await serve_origin(header_timeout=30.0)
    listener = "admin" if which.endswith("admin") else "main"
    port = served.port(listener)
    cases = [
        (b"GET /x\r\n\r\n", 400, ClientFault.MALFORMED),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, ClientFault.BAD_VERSION),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, ClientFault.BAD_HOST),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400, ClientFault.BAD_HOST),
        (b"GET / HTTP/1.1\r\n\r\n", 400, ClientFault.MALFORMED),  # HTTP/1.1 without Host
    ]
    for request, status, fault in cases:
        answer, took = await exchange(port, request, within=5.0)
        assert status_of(answer) == status, (request, answer[:80])
        assert took < 2.0, (request, took)
        assert served.errors(fault, listener) >= 1
    assert served.errors(ClientFault.MALFORMED, listener) == 2
    assert served.errors(ClientFault.BAD_HOST, listener) == 2
    # a valid one still works on the same listener (Host with a port, IPv6 literal)
    path = b"/healthz" if listener == "admin" else b"/sample/manifest.mpd"
    answer, _ = await exchange(port, b"GET " + path + b" HTTP/1.0\r\nHost: [::1]:80\r\n\r\n")
    assert status_of(answer) == 200


async def test_listener_header_timeout_closes_slowloris_with_408(serve_edge, origin_server):
    """Slow heads get 408 and are closed at the header timeout while 20 clients fetch."""
    served = await serve_edge(url_of(origin_server), **FAST)
    slow = [asyncio.ensure_future(slowloris(served.port())) for _ in range(50)]

    async def client(session: aiohttp.ClientSession) -> list[int]:
        statuses = []
        for path in SEGMENTS * 2:
            async with session.get(served.url(path)) as resp:
                await resp.read()
                statuses.append(resp.status)
        return statuses

    async with aiohttp.ClientSession() as session:
        normal = await asyncio.gather(*(client(session) for _ in range(20)))
    assert all(s == 200 for statuses in normal for s in statuses)
    for answer, took in await asyncio.gather(*slow):
        assert status_of(answer) == 408
        assert 0.4 < took < 0.5 + 2.0
    assert served.errors(ClientFault.HEADER_TIMEOUT) == 50
    # on keep-alive, the next head's deadline runs from its first byte
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port())
    writer.write(b"GET /sample/manifest.mpd HTTP/1.1\r\nHost: e\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(0.7)  # idle past the header timeout: keep-alive rules here
    writer.write(b"GET /sample/manifest.mpd HTTP/1.1\r\nHo")
    started = time.monotonic()
    rest = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    assert b"HTTP/1.1 408 Request Timeout" in rest
    assert 0.4 < time.monotonic() - started < 2.5


async def test_listener_slowloris_and_idle_flood_leave_normal_clients_served(
    origin_server, tmp_path
):
    """A real edge (``tiercdn-edge``, uvloop): 200 slowloris + 5000 idle connections are
    closed at the header timeout while 20 normal clients are served (p99 printed, with and
    without the flood); the edge's fds are back to baseline after."""
    header_timeout = 1.0
    flags = ("--client-header-timeout", f"{header_timeout}s")
    async with cli("edge", url_of(origin_server), tmp_path / "stderr", *flags) as edge:
        url = f"http://127.0.0.1:{edge.port}"
        async with aiohttp.ClientSession() as session:  # warm the edge's cache
            for path in SEGMENTS:
                async with session.get(url + path) as resp:
                    assert resp.status == 200
                    await resp.read()
        await eventually(edge.idle)
        baseline = edge.fds()
        idle_count = min(5000, (fd_limit() - open_fds() - 1000) // 2)
        assert idle_count >= 1000, "the fd limit is too low for this test"
        statuses: list[int] = []

        async def client(
            session: aiohttp.ClientSession, i: int, stop: asyncio.Event
        ) -> list[float]:
            latencies, n = [], i
            while not stop.is_set():
                started = time.monotonic()
                async with session.get(url + SEGMENTS[n % len(SEGMENTS)]) as resp:
                    await resp.read()
                    statuses.append(resp.status)
                latencies.append(time.monotonic() - started)
                n += 1
            return latencies

        async def clients(stop: asyncio.Event) -> list[float]:
            async with aiohttp.ClientSession() as session:
                each = await asyncio.gather(*(client(session, i, stop) for i in range(20)))
            return [t for latencies in each for t in latencies]

        quiet_over = asyncio.Event()
        asyncio.get_running_loop().call_later(1.0, quiet_over.set)
        quiet = await clients(quiet_over)  # the same clients without the flood
        flood_over = asyncio.Event()
        normal = asyncio.ensure_future(clients(flood_over))
        slow = [asyncio.ensure_future(slowloris(edge.port)) for _ in range(200)]
        idle = await open_idle(edge.port, idle_count)
        peak = edge.fds()
        slow_results = await asyncio.gather(*slow)
        idle_lifetimes = await asyncio.wait_for(
            asyncio.gather(*(c.closed for c in idle)), header_timeout + 20
        )
        flood_over.set()
        latencies = await normal
        for conn in idle:
            if conn.transport is not None:
                conn.transport.close()
        await eventually(edge.idle)
        after = edge.fds()
        errors = "tiercdn_client_errors_total"
        header_timeouts = await edge.metric(errors, listener="main", reason="header_timeout")
        idle_timeouts = await edge.metric(errors, listener="main", reason="idle_timeout")

    p99_quiet = percentile(quiet, 0.99)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    print(
        f"\nslowloris 200 + idle {idle_count}: 20 normal clients, {len(latencies)} requests, "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
        f"(p99 {p99_quiet * 1000:.1f} ms without the flood); slow closed after "
        f"{max(t for _, t in slow_results):.2f}s max, idle after {max(idle_lifetimes):.2f}s max; "
        f"edge fds {baseline} before, {peak} at peak, {after} after"
    )
    assert statuses and all(s == 200 for s in statuses)
    assert all(status_of(answer) == 408 for answer, _ in slow_results)
    assert max(t for _, t in slow_results) < header_timeout + 3.0
    assert max(idle_lifetimes) < header_timeout + 10.0  # opened in batches, under load
    assert p99 < 5.0
    assert header_timeouts == 200
    assert idle_timeouts == idle_count
    assert after <= baseline + 2


async def test_listener_closes_idle_keepalive(serve_origin):
    """A keep-alive connection idle for keepalive_timeout is closed (not after an hour)."""
    served = await serve_origin(header_timeout=5.0, keepalive_timeout=0.5, send_timeout=5.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port())
    writer.write(b"GET /sample/manifest.mpd HTTP/1.1\r\nHost: o\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed by the server
    writer.close()
    assert 0.3 < time.monotonic() - started < 2.5
    assert served.main.stats.faults == dict.fromkeys(ClientFault, 0)  # not a client fault


# --- responses: the send timeout ----------------------------------------------------------

BIG = 16 << 20
HELD_AT = 12 << 20


async def stuck_reader(port: int, path: str) -> socket.socket:
    """A client with a tiny receive buffer that asks for ``path`` and reads nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: e\r\n\r\n".encode())
    return sock


def drain_received(sock: socket.socket) -> tuple[int, str]:
    """Bytes the stuck client can still read, and how its connection ended."""
    sock.setblocking(True)
    sock.settimeout(5.0)
    got = 0
    try:
        while chunk := sock.recv(1 << 16):
            got += len(chunk)
        return got, "eof"
    except ConnectionResetError:
        return got, "reset"
    finally:
        sock.close()


async def test_listener_send_timeout_drops_stuck_reader_and_releases_fill(
    serve_edge, upstream_app, http
):
    """A client that reads nothing is dropped after send_timeout; its fill reader goes,
    the fill and the other reader carry on to the end."""
    release = asyncio.Event()

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Cache-Control": "public, max-age=60"})
        resp.content_length = BIG
        await resp.prepare(request)
        chunk = b"x" * (1 << 20)
        for _ in range(HELD_AT >> 20):
            await resp.write(chunk)
        await release.wait()
        for _ in range((BIG - HELD_AT) >> 20):
            await resp.write(chunk)
        return resp

    upstream = await upstream_app({"/big.m4s": big})
    served = await serve_edge(url_of(upstream), header_timeout=5.0, send_timeout=0.5)
    fills = served.node.fetcher.fills
    sock = await stuck_reader(served.port(), "/big.m4s")
    await eventually(lambda: len(fills.in_flight()) == 1)
    fill = fills.get(fills.in_flight()[0])
    assert fill is not None

    async def fast() -> int:
        async with http.get(served.url("/big.m4s")) as resp:
            return len(await resp.read())

    reading = asyncio.ensure_future(fast())
    await eventually(lambda: fill.readers == 2)
    took = await eventually(lambda: served.errors(ClientFault.SEND_TIMEOUT) == 1)
    await eventually(lambda: fill.readers == 1, within=5.0)  # the stuck reader released
    print(f"\nstuck reader dropped {took:.2f}s after the second reader joined")
    assert took < 0.5 + 3.0
    release.set()
    assert await asyncio.wait_for(reading, 30) == BIG
    got, ended = await asyncio.to_thread(drain_received, sock)
    assert got < BIG and ended in ("eof", "reset")
    assert served.main.stats.open <= 1  # only the fast client's pooled connection


async def test_listener_send_timeout_covers_sendfile(listen, origin_settings, tmp_path):
    """At the origin too, where sendfile bypasses the transport's buffer (stock loop)."""
    title = tmp_path / "library" / "big"
    title.mkdir(parents=True)
    (title / "chunk-0-00001.m4s").write_bytes(os.urandom(BIG))
    app = make_origin_app(dataclasses.replace(origin_settings, library=str(tmp_path / "library")))
    served = await listen(
        app, make_origin_admin(app), app[METRICS_KEY].registry,
        header_timeout=5.0, keepalive_timeout=5.0, send_timeout=0.5,
    )  # fmt: skip
    sock = await stuck_reader(served.port(), "/big/chunk-0-00001.m4s")
    took = await eventually(lambda: served.errors(ClientFault.SEND_TIMEOUT) == 1)
    got, _ = await asyncio.to_thread(drain_received, sock)
    print(f"\nstuck sendfile reader dropped after {took:.2f}s, having taken {got} bytes")
    assert got < BIG
    assert took < 0.5 + 3.0
    await eventually(lambda: served.main.stats.open == 0)


# --- the connection cap ---------------------------------------------------------------------


async def test_listener_max_connections_answers_503_beyond_cap(serve_origin):
    """At the cap a new connection gets 503 + Retry-After and is closed; counted; a
    freed slot serves again."""
    served = await serve_origin(header_timeout=10.0, keepalive_timeout=10.0, max_connections=4)
    request = b"GET /sample/manifest.mpd HTTP/1.1\r\nHost: o\r\n\r\n"
    held = []
    for _ in range(4):  # below the cap: normal service, kept alive
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port())
        writer.write(request)
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        held.append(writer)
    assert served.main.stats.open == 4
    for n in (1, 2):
        answer, took = await exchange(served.port(), request)
        assert status_of(answer) == 503 and b"Retry-After: 1" in answer, answer
        assert took < 2.0
        value = served.registry.get_sample_value(
            "tiercdn_connections_refused_total", {"listener": "main"}
        )
        assert value == n
    assert served.main.stats.open == 4
    held.pop().close()
    await eventually(lambda: served.main.stats.open == 3)
    answer, _ = await exchange(served.port(), request.replace(b"1.1", b"1.0"))
    assert status_of(answer) == 200
    for writer in held:
        writer.close()
    # the admin listener has its own count: it still answers
    answer, _ = await exchange(served.port("admin"), b"GET /healthz HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 200


# --- logs: one quiet line for a client's fault, a traceback for ours ------------------------


async def test_listener_client_faults_log_one_quiet_line(
    serve_edge, upstream_app, caplog: pytest.LogCaptureFixture
):
    """A reset mid-response and a malformed head: no ERROR, no traceback, counted."""
    caplog.set_level(logging.DEBUG)
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Cache-Control": "public, max-age=60"})
        resp.content_length = 2 << 20
        await resp.prepare(request)
        await resp.write(b"y" * (1 << 20))
        await release.wait()
        await resp.write(b"y" * (1 << 20))
        return resp

    upstream = await upstream_app({"/slow.m4s": slow})
    arrivals = Arrivals()
    served = await serve_edge(url_of(upstream), middlewares=(arrivals.middleware,))
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port())
    writer.write(b"GET /slow.m4s HTTP/1.1\r\nHost: e\r\n\r\n")
    await reader.readexactly(1 << 20)  # the head and most of the first MiB
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # RST
    await eventually(lambda: served.errors(ClientFault.ABORTED) == 1)
    release.set()
    await arrivals.finished.reached(1)  # the handler's next write failed; it has ended
    answer, _ = await exchange(served.port(), b"GET / HTTP/1.1\r\n\r\n")
    assert status_of(answer) == 400
    assert served.errors(ClientFault.MALFORMED) == 1
    await asyncio.sleep(0.05)  # let the last response's cleanup log, if it would
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
    mine = [r for r in caplog.records if r.name == "shared.service.listener"]
    assert {r.levelno for r in mine} <= {logging.DEBUG, logging.INFO}
    assert all("\n" not in r.getMessage() for r in mine)


async def test_listener_handler_bug_keeps_error_with_traceback(
    listen, caplog: pytest.LogCaptureFixture
):
    """An exception from a handler (not the client's doing) is still an ERROR with its
    traceback, and a 500."""

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application()
    app.router.add_get("/", broken)
    served = await listen(app, web.Application(), CollectorRegistry(), **FAST)
    answer, _ = await exchange(served.port(), b"GET / HTTP/1.0\r\n\r\n")
    assert status_of(answer) == 500
    bugs = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(bugs) == 1
    assert bugs[0].exc_info is not None and "a bug" in str(bugs[0].exc_info[1])
    assert served.main.stats.faults == dict.fromkeys(ClientFault, 0)


# --- the real CLIs -------------------------------------------------------------------------


@dataclasses.dataclass
class Cli:
    """A node run by its real CLI: ``tiercdn-edge`` on uvloop, ``tiercdn-origin`` on the
    stock loop."""

    proc: asyncio.subprocess.Process
    port: int
    admin_port: int

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    async def idle(self) -> bool:
        """No client connection open on the main listener."""
        return await self.metric("tiercdn_connections_open", listener="main") == 0

    async def metric(self, name: str, **labels: str) -> float:
        """One sample of the node's /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.admin_port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            text = await resp.text()
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}")
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0


@contextlib.asynccontextmanager
async def cli(tier: str, target: str, log: Path, *flags: str) -> AsyncIterator[Cli]:
    """Run ``tier`` in front of ``target`` (edge: upstream URL; origin: library) until the
    block ends; it must then stop cleanly, with no traceback and no ERROR in its log."""
    port, admin_port = free_ports(2)
    flags = ("--port", str(port), "--admin-port", str(admin_port), *flags)
    if tier == "edge":
        args = ["-m", "edge", "--upstream", target, *flags]
    else:
        args = ["-m", "origin", "serve", "--library", target, *flags]
    async with node_process(args, log) as proc:
        yield Cli(proc, port, admin_port)
    errors = await asyncio.to_thread(log.read_text)
    assert proc.returncode == 0, errors[-2000:]
    assert "Traceback" not in errors and " ERROR " not in errors, errors[-2000:]


@pytest.mark.parametrize("tier", ["edge", "origin"])
async def test_listener_cli_wires_limits_and_metrics(
    tier, origin_server, sample_library: Path, tmp_path
):
    """``tiercdn-edge`` (uvloop) and ``tiercdn-origin`` (stock loop) apply the flags:
    408 at --client-header-timeout, 505 for HTTP/2.0, both counted in /metrics."""
    target = url_of(origin_server) if tier == "edge" else str(sample_library)
    flags = ("--client-header-timeout", "500ms")
    async with cli(tier, target, tmp_path / "stderr", *flags) as node:
        answer, took = await exchange(node.port, b"GET /sample/manifest.mpd HTTP/1.1\r\nHo")
        assert status_of(answer) == 408 and 0.4 < took < 3.0
        answer, _ = await exchange(node.port, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")
        assert status_of(answer) == 505
        answer, _ = await exchange(node.port, b"GET /sample/manifest.mpd HTTP/1.0\r\n\r\n")
        assert status_of(answer) == 200
        errors = "tiercdn_client_errors_total"
        assert await node.metric(errors, listener="main", reason="header_timeout") == 1
        assert await node.metric(errors, listener="main", reason="bad_version") == 1
        assert await node.metric("tiercdn_connections_open", listener="admin") == 1
