"""A cache node with a disk tier: restarts keep the cache, crashes leave nothing partial,
bad files are refetched, and a disk that cannot be written only costs the caching."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from aiohttp import web

from origin.app import METRICS_KEY
from shared.engine.node import NODE
from tests.helpers import url_of

SEGMENT = "/sample/chunk-0-00002.m4s"


def origin_requests(app: web.Application) -> int:
    return int(app[METRICS_KEY].stats()["requests"])


@pytest.fixture
async def origin_app(aiohttp_server, origin_settings):
    from origin.app import make_app

    app = make_app(origin_settings)
    server = await aiohttp_server(app)
    return app, url_of(server)


async def test_disk_tier_restart_keeps_the_cache(origin_app, start_node, http, tmp_path):
    """Fill, stop, start again on the same directory: hits without an origin request."""
    app, origin = origin_app
    disk = str(tmp_path / "cache")
    first = await start_node("regional-1", origin, disk_path=disk)
    async with http.get(url_of(first) + SEGMENT) as r:
        body = await r.read()
    await first.app[NODE].tasks.join()  # the fill commits after its last byte
    await first.app[NODE].store.disk.flush()
    await first.close()
    second = await start_node("regional-1", origin, disk_path=disk)
    for _ in range(3):  # from the file, then from memory once promoted
        async with http.get(url_of(second) + SEGMENT) as r:
            assert r.status == 200 and await r.read() == body
            assert r.headers["Cache-Status"].startswith("regional-1; hit")
        async with http.get(url_of(second) + SEGMENT, headers={"Range": "bytes=10-19"}) as r:
            assert r.status == 206 and await r.read() == body[10:20]
        await second.app[NODE].tasks.join()
    assert origin_requests(app) == 1


async def test_disk_tier_start_log_names_each_budget(origin_app, start_node, tmp_path, caplog):
    """The start line gives memory and disk apart, even with an empty disk tier."""
    _, origin = origin_app
    caplog.set_level("INFO", logger="shared.engine.node")
    disk = tmp_path / "cache"
    await start_node("regional-1", origin, disk_path=str(disk), cache_bytes=1 << 20)
    (line,) = [r.getMessage() for r in caplog.records if " caching " in r.getMessage()]
    assert line.startswith("regional-1 caching 1.0MiB in memory and ")
    assert f" on disk at {disk} for " in line


async def test_disk_tier_corrupt_body_is_refetched(origin_app, start_node, http, tmp_path):
    """A truncated or flipped body file is never served: it is dropped and fetched again."""
    app, origin = origin_app
    disk = tmp_path / "cache"
    first = await start_node("regional-1", origin, disk_path=str(disk))
    async with http.get(url_of(first) + SEGMENT) as r:
        good = await r.read()
    await first.app[NODE].tasks.join()  # the fill commits after its last byte
    await first.app[NODE].store.disk.flush()
    await first.close()
    (body_file,) = disk.rglob("*.body")
    data = bytearray(body_file.read_bytes())
    data[100] ^= 0xFF  # same length, flipped byte
    body_file.write_bytes(bytes(data))
    second = await start_node("regional-1", origin, disk_path=str(disk))
    async with http.get(url_of(second) + SEGMENT) as r:
        assert r.status == 200 and await r.read() == good
        assert "fwd=uri-miss" in r.headers["Cache-Status"]
    assert origin_requests(app) == 2
    assert second.app[NODE].store.disk.corrupt_dropped == 1


async def test_disk_tier_unwritable_directory_degrades_to_pass_through(
    origin_app, start_node, http, tmp_path
):
    """A disk path that cannot hold files: every request still succeeds, from memory."""
    app, origin = origin_app
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    node = await start_node("regional-1", origin, disk_path=str(blocker / "cache"))
    for _ in range(2):
        async with http.get(url_of(node) + SEGMENT) as r:
            assert r.status == 200 and len(await r.read()) > 0
    await node.app[NODE].tasks.join()
    await node.app[NODE].store.disk.flush()
    assert node.app[NODE].store.disk.write_errors >= 1


async def test_disk_tier_tiny_budget_requests_succeed(origin_app, start_node, http, tmp_path):
    """A disk budget smaller than any object: nothing is kept on disk, nothing fails."""
    _, origin = origin_app
    node = await start_node("regional-1", origin, disk_path=str(tmp_path / "c"), disk_bytes=1000)
    for path in (SEGMENT, "/sample/chunk-0-00001.m4s", SEGMENT):
        async with http.get(url_of(node) + path) as r:
            assert r.status == 200
    await node.app[NODE].tasks.join()
    await node.app[NODE].store.disk.flush()
    assert len(node.app[NODE].store.disk) == 0


@pytest.mark.slow
async def test_disk_tier_sigkill_mid_fill_leaves_nothing_partial(
    aiohttp_server, origin_settings, tmp_path, http, sample_library
):
    """A regional killed with SIGKILL during a fill restarts with no partial object and
    then serves the object correctly."""
    import dataclasses
    import socket

    from origin.app import make_app

    slow = dataclasses.replace(origin_settings, fault_rate=20_000)  # ~3 s for the segment
    origin = await aiohttp_server(make_app(slow))
    disk = tmp_path / "cache"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [sys.executable, "-m", "regional", "--upstream", url_of(origin), "--port", str(port),
            "--admin-port", "0", "--disk-path", str(disk), "--log-level", "WARNING"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    await asyncio.wait_for(proc.stdout.readline(), 30)  # ready line
    url = f"http://127.0.0.1:{port}{SEGMENT}"
    async with http.get(url) as r:
        await r.content.readexactly(1000)  # mid-fill
        os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    assert not any(disk.rglob("*.meta")) if disk.exists() else True
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        await asyncio.wait_for(proc.stdout.readline(), 30)
        assert not list(disk.rglob("*.tmp"))  # open() removed any interrupted write
        async with http.get(url) as r:
            assert r.status == 200
            assert await r.read() == (sample_library / SEGMENT.lstrip("/")).read_bytes()
            assert "fwd=uri-miss" in r.headers["Cache-Status"]  # nothing half-stored was found
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)


async def test_disk_tier_in_stats_and_metrics(
    origin_app, start_node, aiohttp_server, http, tmp_path
):
    """/stats and /metrics report the disk tier."""
    from shared.service.admin import make_admin_app

    _, origin = origin_app
    node = await start_node("regional-1", origin, disk_path=str(tmp_path / "c"))
    admin = url_of(await aiohttp_server(make_admin_app(node.app)))
    async with http.get(url_of(node) + SEGMENT) as r:
        await r.read()
    await node.app[NODE].tasks.join()
    await node.app[NODE].store.disk.flush()
    async with http.get(admin + "/stats") as r:
        disk = (await r.json())["disk"]
    assert disk["objects"] == 1 and disk["write_errors"] == 0 and disk["bytes"] > 1000
    async with http.get(admin + "/metrics") as r:
        text = await r.text()
    assert "tiercdn_disk_objects 1.0" in text and "tiercdn_disk_write_errors_total 0.0" in text
