"""The hit path: headers prepared once per second, Range and 304 on a hit, metrics
read at scrape time, and disk hits that never read a body they won't promote."""

from __future__ import annotations

import asyncio
import hashlib
import time
import tracemalloc

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.utils import floatToGoString

from shared.engine.node import NODE
from shared.store import TieredStore
from tests.helpers import Clock, url_of

BODY = bytes(range(256)) * 4096  # 1 MiB
ETAG = '"v1"'


async def _segment(request: web.Request) -> web.Response:
    return web.Response(
        body=BODY,
        headers={"Cache-Control": "max-age=100", "ETag": ETAG, "Content-Type": "video/mp4"},
    )


async def test_hit_path_headers_age_grows_ttl_falls(upstream_app, start_node, http):
    """A hit's Age grows and its ttl= falls with the clock; the upstream Date is kept;
    within one second every hit shares one set of prepared headers."""
    origin = url_of(await upstream_app({"/seg.m4s": _segment}))
    clock = Clock(time.time())
    edge = await start_node("edge-1", origin, clock=clock, cors_origin="*")
    url = url_of(edge) + "/seg.m4s"
    async with http.get(url) as r:
        assert r.status == 200 and await r.read() == BODY
        date = r.headers["Date"]
    seen = []
    for step in (0, 0, 7, 30):
        clock.now += step
        async with http.get(url) as r:
            assert await r.read() == BODY
            seen.append((r.headers["Age"], r.headers["Cache-Status"], r.headers["Date"]))
            assert r.headers["Access-Control-Allow-Origin"] == "*"
            assert r.headers["Via"].endswith("1.1 edge-1")
    assert [s[0] for s in seen] == ["0", "0", "7", "37"]
    ttls = [int(s[1].removeprefix("edge-1; hit; ttl=")) for s in seen]
    assert all(age + ttl in (99, 100) for age, ttl in zip((0, 0, 7, 37), ttls, strict=True))
    assert ttls[0] == ttls[1] > ttls[2] > ttls[3]
    assert {s[2] for s in seen} == {date}
    assert edge.app._handle.match is not None  # hits went around the router
    stored = edge.app[NODE].store.peek("/seg.m4s")[0]
    assert stored.hit_headers is not None and stored.hit_headers[:2] == (37, ttls[3])


async def test_hit_path_range_and_conditional_on_a_hit(upstream_app, start_node, http):
    """A hit with Range is a 206 of the slice, with If-None-Match a 304 with Age."""
    origin = url_of(await upstream_app({"/seg.m4s": _segment}))
    edge = url_of(await start_node("edge-1", origin, cors_origin="*")) + "/seg.m4s"
    async with http.get(edge) as r:
        await r.read()
    async with http.get(edge, headers={"Range": "bytes=10-19"}) as r:
        assert r.status == 206 and await r.read() == BODY[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(BODY)}"
        assert "hit" in r.headers["Cache-Status"]
    async with http.get(edge, headers={"If-None-Match": ETAG}) as r:
        assert r.status == 304 and "Age" in r.headers and "hit" in r.headers["Cache-Status"]
    async with http.head(edge) as r:
        assert r.status == 200 and r.headers["Content-Length"] == str(len(BODY))


async def test_hit_path_metrics_keep_names_and_labels(upstream_app, start_node, http):
    """Requests, first-byte times and response bytes, counted as plain integers, are
    exposed under the same names and labels, every outcome shown."""
    origin = url_of(await upstream_app({"/seg.m4s": _segment}))
    edge = await start_node("edge-1", origin)
    for _ in range(3):
        async with http.get(url_of(edge) + "/seg.m4s") as r:
            await r.read()
    text = generate_latest(edge.app[NODE].metrics.registry).decode()
    assert 'tiercdn_requests_total{outcome="hit"} 2.0' in text
    assert 'tiercdn_requests_total{outcome="miss"} 1.0' in text
    assert 'tiercdn_requests_total{outcome="shed"} 0.0' in text
    sent = floatToGoString(2.0 * len(BODY))
    assert f'tiercdn_response_bytes_total{{source="cache"}} {sent}' in text
    assert 'tiercdn_first_byte_seconds_count{outcome="hit"} 2.0' in text
    assert 'tiercdn_first_byte_seconds_bucket{le="+Inf",outcome="hit"} 2.0' in text
    assert 'tiercdn_first_byte_seconds_bucket{le="0.001",outcome="error"} 0.0' in text
    assert "# TYPE tiercdn_first_byte_seconds histogram" in text


async def _raw_get(url: str) -> tuple[str, int, bytes]:
    """GET over a bare stream with a small buffer: (head, body length, body sha256);
    the client holds a few reads at a time, never the body."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    path = "/" + url.removeprefix("http://").split("/", 1)[1]
    reader, writer = await asyncio.open_connection(host, int(port), limit=16384)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = int(head.lower().split("content-length:")[1].split("\r\n")[0])
    digest, n = hashlib.sha256(), 0
    while n < length:
        chunk = await reader.read(16384)
        assert chunk
        digest.update(chunk)
        n += len(chunk)
    writer.close()
    return head, n, digest.digest()


async def test_hit_path_disk_max_object_is_its_own_setting(
    upstream_app, start_node, http, tmp_path
):
    """With a tiny memory budget the disk tier still stores a 4 MiB object (its own
    --disk-max-object-bytes), and its hits never read the body for a promotion memory
    would refuse: no promotion, no allocation near the body's size."""
    big = BODY * 4

    async def segment(request: web.Request) -> web.Response:
        return web.Response(body=big, headers={"Cache-Control": "max-age=100", "ETag": ETAG})

    origin = url_of(await upstream_app({"/seg.m4s": segment}))
    node = await start_node(
        "regional-1", origin, cache_bytes=1024, disk_path=str(tmp_path / "disk")
    )
    url = url_of(node) + "/seg.m4s"
    store = node.app[NODE].store
    assert isinstance(store, TieredStore)
    async with http.get(url) as r:
        assert await r.read() == big
    await store.disk.flush()
    assert len(store.disk) == 1 and len(store.memory) == 0
    want = hashlib.sha256(big).digest()
    await _raw_get(url)  # the first use checks the CRC (1 MiB reads): not a hit's cost
    tracemalloc.start()
    try:
        for _ in range(3):
            head, n, digest = await _raw_get(url)
            assert "regional-1; hit" in head and n == len(big) and digest == want
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.promotions == 0 and len(store.memory) == 0
    # the client's own socket reads (256 KiB each) are traced too; the body is 4 MiB
    assert peak < len(big) // 4, peak  # it went by sendfile, never into memory


async def test_hit_path_disk_max_object_refuses_larger(upstream_app, start_node, http, tmp_path):
    """An object over --disk-max-object-bytes is not stored on disk."""
    origin = url_of(await upstream_app({"/seg.m4s": _segment}))
    node = await start_node(
        "regional-1",
        origin,
        cache_bytes=1024,
        disk_path=str(tmp_path / "disk"),
        disk_max_object_bytes=512 * 1024,
    )
    async with http.get(url_of(node) + "/seg.m4s") as r:
        assert await r.read() == BODY
    store = node.app[NODE].store
    await store.disk.flush()
    assert len(store.disk) == 0


async def test_hit_path_disk_hit_not_read_for_a_refused_promotion(
    upstream_app, start_node, http, tmp_path
):
    """An object under --max-object-bytes that memory would still refuse (its headers
    and bookkeeping pass the budget) is served from disk and never read for promotion."""
    small = BODY[:4000]

    async def segment(request: web.Request) -> web.Response:
        return web.Response(body=small, headers={"Cache-Control": "max-age=100"})

    origin = url_of(await upstream_app({"/seg.m4s": segment}))
    node = await start_node(
        "regional-1", origin, cache_bytes=4096, disk_path=str(tmp_path / "disk")
    )
    store = node.app[NODE].store
    async with http.get(url_of(node) + "/seg.m4s") as r:
        assert await r.read() == small
    await store.disk.flush()
    for _ in range(3):
        async with http.get(url_of(node) + "/seg.m4s") as r:
            assert await r.read() == small and "hit" in r.headers["Cache-Status"]
    assert store.promotions == 0 and len(store.memory) == 0 and len(store.disk) == 1


async def _get_head(port: int, path: str, *extra: str) -> tuple[bytes, bytes]:
    """One GET on a new keep-alive HTTP/1.1 connection: (the head as sent, the body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *extra, "", ""]
        writer.write("\r\n".join(lines).encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return head, await reader.readexactly(length)
    finally:
        writer.close()


async def test_prebuilt_hit_head_is_the_head_aiohttp_builds(upstream_app, start_node, http):
    """A plain GET hit sends its shared, pre-serialized head: byte for byte the head
    aiohttp's own response path sends for the same hit (a non-matching If-None-Match
    takes that path), the connection stays open, and HTTP/1.0 still gets its own."""
    origin = url_of(await upstream_app({"/seg.m4s": _segment}))
    clock = Clock(time.time())
    edge = await start_node("edge-1", origin, clock=clock, cors_origin="*")
    port = edge.port
    async with http.get(url_of(edge) + "/seg.m4s") as r:
        assert r.status == 200 and await r.read() == BODY
    fast, body = await _get_head(port, "/seg.m4s")
    slow, slow_body = await _get_head(port, "/seg.m4s", 'If-None-Match: "other"')
    assert body == slow_body == BODY
    assert fast == slow, (fast, slow)
    assert fast.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection:" not in fast
    assert b"\r\nServer: " in fast and b"\r\nContent-Length: 1048576\r\n" in fast
    stored = edge.app[NODE].store.peek("/seg.m4s")[0]
    assert stored.hit_headers is not None and stored.hit_headers[4] == fast  # the shared one
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:  # two hits on one connection: keep-alive holds after a prebuilt head
        for _ in range(2):
            writer.write(f"GET /seg.m4s HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert await reader.readuntil(b"\r\n\r\n") == fast
            assert await reader.readexactly(len(BODY)) == BODY
        writer.write(b"GET /seg.m4s HTTP/1.0\r\n\r\n")  # aiohttp's path: closes after
        old = await reader.read()
        assert old.startswith(b"HTTP/1.0 200 OK\r\n") and old.endswith(BODY)
    finally:
        writer.close()
