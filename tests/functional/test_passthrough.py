"""Pass-through objects (too large to cache): readers never wait for each other and
a Range costs the range, not the bytes before it, at every tier.

A real origin serves real files (``web.FileResponse``: Range, If-Range, strong
ETags) behind a real regional and edge with a small ``--max-object-bytes``; the
fills' streaming window is 1 MiB. Figures are printed (run with ``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from shared.engine.node import NODE
from shared.ops.topology import free_ports
from tests.helpers import REPO, Arrivals, Chain, Gate, ServerFactory, until, url_of

MAX_OBJECT = 256 * 1024
PATH = "/big/seg-1.m4s"
SIZE = 4 * 2**20
# A slow client's socket buffers absorb ~3 MiB on loopback before its handler blocks:
# a slow reader falls a window (1 MiB) behind only on a larger object.
SLOW_PATH, SLOW_SIZE = "/big/seg-2.m4s", 16 * 2**20


class RangesSeen:
    """Middleware: the ``Range`` field (or None) of every request a server received."""

    def __init__(self) -> None:
        self.ranges: list[str | None] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.ranges.append(request.headers.get("Range"))
        return await handler(request)

    def ranged(self) -> int:
        return sum(r is not None for r in self.ranges)


@dataclasses.dataclass
class Tiers:
    """origin → regional → edge with --max-object-bytes 256 KiB, and what each saw."""

    chain: Chain
    gate: Gate  # holds the origin's answers until opened
    edge_in: Arrivals
    origin_seen: RangesSeen
    regional_seen: RangesSeen

    def url(self, path: str = PATH) -> str:
        return self.chain.url(path)

    def received(self, tier: str) -> float:
        """Body bytes ``tier`` (edge or regional) received from its upstream so far."""
        node = getattr(self.chain, tier).app[NODE]
        return float(node.metrics.registry.get_sample_value("tiercdn_upstream_bytes_total"))

    def resumed(self, tier: str) -> float:
        """Readers ``tier`` let go from a shared fill and continued on their own fetch."""
        node = getattr(self.chain, tier).app[NODE]
        value = node.metrics.registry.get_sample_value(
            "tiercdn_fill_readers_total", {"role": "resumed"}
        )
        return float(value or 0)


def make_library(root: Path, files: dict[str, int]) -> dict[str, bytes]:
    """Random files of the given sizes under ``root``; their bytes by URL path."""
    made = {}
    for path, size in files.items():
        data = os.urandom(size)
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_bytes(data)
        made[path] = data
    return made


async def start_tiers(
    aiohttp_server: ServerFactory, start_node: Any, library: Path, *, gated: bool = False
) -> Tiers:
    gate, edge_in, origin_seen, regional_seen = Gate(), Arrivals(), RangesSeen(), RangesSeen()
    if not gated:
        gate.open()
    origin_app = make_origin_app(OriginSettings(library=str(library), port=0, admin_port=0))
    origin_app.middlewares.extend([origin_seen.middleware, gate.middleware])
    origin = await aiohttp_server(origin_app)
    regional = await start_node(
        "regional-1",
        url_of(origin),
        max_object_bytes=MAX_OBJECT,
        middlewares=[regional_seen.middleware],
    )
    edge = await start_node(
        "edge-1", url_of(regional), max_object_bytes=MAX_OBJECT, middlewares=[edge_in.middleware]
    )
    return Tiers(Chain(origin, regional, edge), gate, edge_in, origin_seen, regional_seen)


@pytest.fixture
async def big(tmp_path: Path) -> dict[str, bytes]:
    return make_library(tmp_path / "library", {PATH: SIZE, SLOW_PATH: SLOW_SIZE})


@pytest.fixture
async def tiers(aiohttp_server, start_node, tmp_path, big) -> Tiers:
    return await start_tiers(aiohttp_server, start_node, tmp_path / "library")


class SlowReader:
    """A client on a raw socket with a small receive buffer that reads ``rate``
    bytes/s until ``hurry`` is set, then as fast as it can (a real slow player)."""

    def __init__(self, url: str, rate: int) -> None:
        self.url, self.rate = url, rate
        self.got = 0  # body bytes read so far
        self.hurry = asyncio.Event()
        self.status = 0

    async def get(self, headers: str = "") -> bytes:
        host, _, rest = self.url.removeprefix("http://").partition(":")
        port, _, path = rest.partition("/")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=16384)
        try:
            writer.write(f"GET /{path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.status = int(head.split()[1])
            length = next(
                int(line.split(":", 1)[1])
                for line in head.split("\r\n")
                if line.lower().startswith("content-length:")
            )
            body = bytearray()
            while len(body) < length and not self.hurry.is_set():
                piece = await reader.read(min(self.rate // 10, length - len(body)))
                if not piece:
                    break
                body += piece
                self.got = len(body)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.hurry.wait(), 0.1)  # the pace, or hurry
            while len(body) < length:
                piece = await reader.read(length - len(body))
                if not piece:
                    break  # the node aborted: a short body never looks complete
                body += piece
                self.got = len(body)
            return bytes(body)
        finally:
            writer.transport.abort()


async def read(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, bytes, Any]:
    async with http.get(url, **kw) as r:
        return r.status, await r.read(), r.headers


async def test_passthrough_slow_reader_does_not_hold_back_fast_readers(
    aiohttp_server, start_node, tmp_path, big, http
):
    """1 slow (64 KiB/s) + 10 fast readers of one cold too-large object: the fast ones
    finish at the pace of a single download; the slow one gets every byte, resumed."""
    tiers = await start_tiers(aiohttp_server, start_node, tmp_path / "library", gated=True)
    data = big[SLOW_PATH]
    slow = SlowReader(tiers.url(SLOW_PATH), 64 * 1024)
    slow_task = asyncio.get_running_loop().create_task(slow.get())
    await until(tiers.edge_in.arrived.reached(1), slow_task)

    async def fast() -> bytes:
        status, body, _ = await read(http, tiers.url(SLOW_PATH))
        assert status == 200
        return body

    started = time.monotonic()
    crowd = asyncio.gather(*[fast() for _ in range(10)])
    await until(tiers.edge_in.arrived.reached(11), crowd, slow_task)  # all in one fill
    tiers.gate.open()
    async with asyncio.timeout(15):  # today: paced by the slow reader (4 min)
        bodies = await crowd
    fast_seconds = time.monotonic() - started
    slow_then = slow.got
    slow.hurry.set()
    assert await slow_task == data and slow.status == 200
    assert all(body == data for body in bodies)
    alone = time.monotonic()
    assert await asyncio.gather(*[fast() for _ in range(10)]) == [data] * 10
    alone_seconds = time.monotonic() - alone
    single = time.monotonic()
    assert await fast() == data
    single_seconds = time.monotonic() - single
    print(
        f"\n10 fast readers beside a slow one done in {fast_seconds:.3f} s (10 alone: "
        f"{alone_seconds:.3f} s, 1 alone: {single_seconds:.3f} s); the slow reader had "
        f"read {slow_then} of {SLOW_SIZE} bytes"
    )
    assert slow_then < SLOW_SIZE // 4
    assert tiers.resumed("edge") >= 1  # the slow one continued on its own ranged fetch
    assert tiers.regional_seen.ranged() >= 1 and tiers.origin_seen.ranged() >= 1


async def test_passthrough_range_is_forwarded_at_every_tier(tiers, big, http):
    """Once a URL is known too large, a Range goes upstream as a Range through both
    tiers (the origin answers it), with If-Range; nothing before it is fetched."""
    data = big[PATH]
    status, body, _ = await read(http, tiers.url())  # learns: too large, at both tiers
    assert status == 200 and body == data
    before = tiers.received("regional"), tiers.received("edge")
    status, body, headers = await read(
        http, tiers.url(), headers={"Range": "bytes=3000000-3000099"}
    )
    assert status == 206 and body == data[3000000:3000100]
    assert headers["Content-Range"] == f"bytes 3000000-3000099/{SIZE}"
    assert headers["Cache-Status"].count("fwd=bypass; fwd-status=206") == 2
    assert tiers.regional_seen.ranges[-1] == "bytes=3000000-3000099"
    assert tiers.origin_seen.ranges[-1] == "bytes=3000000-3000099"
    assert tiers.received("regional") - before[0] == 100
    assert tiers.received("edge") - before[1] == 100
    etag = headers["ETag"]
    status, body, _ = await read(
        http, tiers.url(), headers={"Range": "bytes=10-19", "If-Range": etag}
    )
    assert status == 206 and body == data[10:20]
    # (aiohttp's FileResponse honours only a date in If-Range: an ETag is ignored there)
    old = "Thu, 01 Jan 1970 00:00:00 GMT"
    status, body, _ = await read(
        http, tiers.url(), headers={"Range": "bytes=10-19", "If-Range": old}
    )
    assert status == 200 and body == data  # If-Range failed upstream: the whole object


async def test_passthrough_50_tail_ranges_fetch_the_ranges(tiers, big, http):
    """50 concurrent 40-byte tail Ranges of a known too-large object pull ≈ 50 × 40
    bytes through each tier (today: 50 × the object)."""
    data = big[PATH]
    assert (await read(http, tiers.url()))[1] == data
    before = tiers.received("regional"), tiers.received("edge")
    answers = await asyncio.gather(
        *[read(http, tiers.url(), headers={"Range": "bytes=-40"}) for _ in range(50)]
    )
    assert all(status == 206 and body == data[-40:] for status, body, _ in answers)
    from_origin = tiers.received("regional") - before[0]
    from_regional = tiers.received("edge") - before[1]
    print(
        f"\n50 tail ranges of {SIZE} bytes: origin sent {from_origin:.0f} bytes, "
        f"regional sent {from_regional:.0f} (50 objects: {50 * SIZE})"
    )
    assert from_origin == from_regional == 50 * 40
    assert tiers.origin_seen.ranges[-50:] == ["bytes=-40"] * 50


async def test_passthrough_cold_tail_ranges_get_their_own_ranged_streams(
    aiohttp_server, start_node, tmp_path, big, http
):
    """50 tail Ranges joining one cold fill that turns out too large each get their own
    ranged fetch instead of reading up to their offset through the shared fill."""
    tiers = await start_tiers(aiohttp_server, start_node, tmp_path / "library", gated=True)
    data = big[PATH]
    storm = asyncio.gather(
        *[read(http, tiers.url(), headers={"Range": "bytes=-40"}) for _ in range(50)]
    )
    await until(tiers.edge_in.arrived.reached(50), storm)
    tiers.gate.open()
    answers = await storm
    assert all(status == 206 and body == data[-40:] for status, body, _ in answers)
    from_origin = tiers.received("regional")
    print(f"\n50 cold tail ranges of {SIZE} bytes: origin sent {from_origin:.0f} bytes")
    assert tiers.origin_seen.ranged() >= 1  # today: one whole GET, read up to each offset
    assert from_origin < SIZE


@pytest.mark.parametrize("changed", [False, True], ids=["same-object", "changed"])
async def test_passthrough_resume_checks_the_representation(
    aiohttp_server, start_node, http, changed
):
    """A reader let go resumes under If-Range: from an upstream that ignores Range (200,
    same ETag) it is skipped to its byte; if the ETag changed it is aborted, never sent
    other bytes."""
    data = os.urandom(SLOW_SIZE)
    asked: list[str | None] = []

    async def ignores_range(request: web.Request) -> web.StreamResponse:
        asked.append(request.headers.get("Range"))
        etag = '"v2"' if changed and len(asked) > 1 else '"v1"'
        resp = web.StreamResponse(headers={"ETag": etag, "Cache-Control": "max-age=60"})
        resp.content_length = SLOW_SIZE
        await resp.prepare(request)
        for i in range(0, SLOW_SIZE, 65536):
            await resp.write(data[i : i + 65536])
        await resp.write_eof()
        return resp

    gate, arrivals = Gate(), Arrivals()
    app = web.Application(middlewares=[gate.middleware])
    app.router.add_get("/obj", ignores_range)
    server = await aiohttp_server(app)
    edge = await start_node(
        "edge-1", url_of(server), max_object_bytes=MAX_OBJECT, middlewares=[arrivals.middleware]
    )
    slow = SlowReader(url_of(edge) + "/obj", 64 * 1024)
    loop = asyncio.get_running_loop()
    slow_task = loop.create_task(slow.get())
    await until(arrivals.arrived.reached(1), slow_task)
    fast = loop.create_task(read(http, url_of(edge) + "/obj"))
    await until(arrivals.arrived.reached(2), fast, slow_task)  # both read one fill
    gate.open()
    async with asyncio.timeout(15):
        status, body, _ = await fast
    assert status == 200 and body == data
    slow.hurry.set()
    got = await slow_task
    assert len(asked) == 2 and (asked[1] or "").startswith("bytes=")
    if changed:
        assert len(got) < SLOW_SIZE and data.startswith(got)  # aborted, never other bytes
    else:
        assert got == data


def vm(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` size field (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current RSS (proc(5): clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def test_passthrough_tail_ranges_keep_edge_memory_flat(aiohttp_server, start_node, tmp_path):
    """A subprocess edge (``python -m edge``) answers 50 concurrent 40-byte tail Ranges of
    a 40 MiB too-large object, known and cold: its peak RSS grows by less than 64 MiB."""
    size = 40 * 2**20
    files = make_library(tmp_path / "library", {"/big/a.m4s": size, "/big/b.m4s": size})
    tiers = await start_tiers(aiohttp_server, start_node, tmp_path / "library")
    port, admin_port = free_ports(2)
    args = ["--upstream", url_of(tiers.chain.regional), "--name", "edge-rss"]
    args += ["--port", str(port), "--admin-port", str(admin_port), "--max-object-bytes", "256KiB"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", *args, cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            assert b"ready on" in await proc.stdout.readline()
        edge = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            assert (await read(http, edge + "/big/a.m4s"))[1] == files["/big/a.m4s"]
            for path, case in (("/big/a.m4s", "known too large"), ("/big/b.m4s", "cold")):
                before = vm(proc.pid, "VmRSS")
                reset_peak(proc.pid)
                origin_before = tiers.received("regional")
                answers = await asyncio.gather(
                    *[read(http, edge + path, headers={"Range": "bytes=-40"}) for _ in range(50)]
                )
                assert all(a[0] == 206 and a[1] == files[path][-40:] for a in answers)
                growth = vm(proc.pid, "VmHWM") - before
                sent = tiers.received("regional") - origin_before
                print(
                    f"\n{case}: 50 tail ranges of 40 MiB: edge RSS {before / 2**20:.0f} MiB, "
                    f"peak growth {growth / 2**20:.1f} MiB; origin sent {sent:.0f} bytes"
                )
                assert growth < 64 * 2**20
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await proc.wait()
