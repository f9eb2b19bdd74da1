"""SIGHUP reloads a real ``tiercdn-edge`` (a subprocess with ``--config FILE``): a
download in flight completes byte-identical, steady load sees no failure across
five reloads, a bad file changes nothing, a good one is applied; a smaller store
evicts down to its new budget while hits and downloads in flight (from memory,
from a fill, from a disk file being sent) go on whole."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from shared.ops.topology import free_ports
from tests.helpers import node_process, url_of

BIG = bytes(range(256)) * (3 * 1024 * 1024 // 256)  # 3 MiB
CHUNK = 64 * 1024


async def _big(request: web.Request) -> web.StreamResponse:
    """3 MiB paced over about 1.5 s, so a reload lands mid-transfer."""
    resp = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
    resp.content_length = len(BIG)
    await resp.prepare(request)
    for at in range(0, len(BIG), CHUNK):
        await resp.write(BIG[at : at + CHUNK])
        await asyncio.sleep(0.03)
    return resp


HUGE = bytes(range(251)) * (24 * 1024 * 1024 // 251)  # ~24 MiB: more than socket buffers


async def _huge(request: web.Request) -> web.Response:
    return web.Response(body=HUGE, headers={"Cache-Control": "max-age=600"})


async def _obj(request: web.Request) -> web.Response:
    body = request.match_info["n"].encode().ljust(64 * 1024, b".")  # 64 KiB
    return web.Response(body=body, headers={"Cache-Control": "max-age=600"})


async def _small(request: web.Request) -> web.Response:
    await asyncio.sleep(0.01)
    body = request.match_info["n"].encode() * 100
    return web.Response(body=body, headers={"Cache-Control": "max-age=1"})


async def paced_origin(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    app = web.Application()
    app.router.add_get("/big", _big)
    app.router.add_get("/small/{n}", _small)
    app.router.add_get("/huge", _huge)
    app.router.add_get("/obj/{n}", _obj)
    return await aiohttp_server(app)


class Edge:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, admin: int, log: Path):
        self.proc, self.port, self.admin, self.log = proc, port, admin, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    async def stats(self) -> dict[str, object]:
        url = f"http://127.0.0.1:{self.admin}/stats"
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            stats = await resp.json()
        assert isinstance(stats, dict)
        return stats

    async def reloaded(self, times: int) -> str:
        """The edge's stderr once it logged ``times`` reloads (or after 5 s)."""
        deadline = time.monotonic() + 5.0
        while True:
            log = await asyncio.to_thread(self.log.read_text)
            if log.count(" reloaded: ") >= times or time.monotonic() > deadline:
                return log
            await asyncio.sleep(0.05)

    async def logged(self, text: str) -> str:
        """The edge's stderr once it holds ``text`` (or after 5 s)."""
        deadline = time.monotonic() + 5.0
        while True:
            log = await asyncio.to_thread(self.log.read_text)
            if text in log or time.monotonic() > deadline:
                return log
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def edge(upstream: str, config: Path, tmp_path: Path) -> AsyncIterator[Edge]:
    """``python -m edge --config FILE`` until the block ends; it must stop cleanly."""
    port, admin = free_ports(2)
    log = tmp_path / "edge.stderr"
    args = ["-m", "edge", "--upstream", upstream, "--config", str(config)]
    args += ["--port", str(port), "--admin-port", str(admin)]
    async with node_process(args, log) as proc:
        yield Edge(proc, port, admin, log)
        assert proc.returncode is None, "SIGHUP must not stop the node"
    text = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in text, text[-2000:]


async def test_reload_mid_download_completes_byte_identical(aiohttp_server, tmp_path):
    origin = await paced_origin(aiohttp_server)
    config = tmp_path / "edge.toml"
    config.write_text("max-fills = 100\n")
    async with edge(url_of(origin), config, tmp_path) as node, aiohttp.ClientSession() as s:
        async with s.get(node.url("/big")) as resp:
            assert resp.status == 200
            got = await resp.content.readexactly(CHUNK)
            config.write_text("max-fills = 50\norigin-rate = 40.0\n")
            node.hup()
            assert "reloaded" in await node.logged("reloaded")
            got += await resp.read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(BIG).digest()
        async with s.get(node.url("/big")) as resp:  # stored whole: a hit, identical
            assert await resp.read() == BIG


async def test_reload_five_times_under_steady_load_fails_nothing(aiohttp_server, tmp_path):
    origin = await paced_origin(aiohttp_server)
    config = tmp_path / "edge.toml"
    config.write_text("max-fills = 64\n")
    statuses: list[int] = []
    async with edge(url_of(origin), config, tmp_path) as node, aiohttp.ClientSession() as s:

        async def client(i: int) -> None:
            for n in range(20):
                async with s.get(node.url(f"/small/{(i * 20 + n) % 60}")) as resp:
                    await resp.read()
                    statuses.append(resp.status)
                await asyncio.sleep(0.12)

        load = asyncio.gather(*(client(i) for i in range(10)))
        for k in range(5):
            await asyncio.sleep(0.5)
            config.write_text(f"max-fills = {32 + k}\norigin-rate = {100 + k}.0\n")
            node.hup()
        await load
        log = await node.logged("origin-rate")
        stats = await node.stats()
    failed = [x for x in statuses if x != 200]
    print(f"\n{len(statuses)} requests across 5 reloads, {len(failed)} failed")
    assert len(statuses) == 200 and not failed
    assert log.count("reloaded: ") == 5, log[-2000:]
    assert stats["origin_budget"]["rate"] == 104.0  # type: ignore[index]


async def test_bad_config_on_reload_changes_nothing(aiohttp_server, tmp_path):
    origin = await paced_origin(aiohttp_server)
    config = tmp_path / "edge.toml"
    config.write_text("origin-rate = 100.0\n")
    async with edge(url_of(origin), config, tmp_path) as node, aiohttp.ClientSession() as s:
        for bad in ("origin-rate = \n", 'origin-rate = 5.0\nmax-fills = "lots"\n'):
            config.write_text(bad)
            node.hup()
            log = await node.logged(" ERROR ")
            assert log.count(" ERROR ") == 1 and "reload refused" in log, log[-2000:]
            assert "edge.toml" in log
            assert (await node.stats())["origin_budget"]["rate"] == 100.0  # type: ignore[index]
            async with s.get(node.url("/small/1")) as resp:
                assert resp.status == 200
            node.log.write_text("")  # the next bad file's line counted alone
    assert node.proc.returncode == 0


async def test_changed_settings_are_applied_and_restart_ones_named(aiohttp_server, tmp_path):
    origin = await paced_origin(aiohttp_server)
    config = tmp_path / "edge.toml"
    config.write_text("origin-rate = 100.0\nmax-fills = 64\n")
    async with edge(url_of(origin), config, tmp_path) as node:
        config.write_text(
            'origin-rate = 20.0\norigin-burst = 5\nmax-fills = 8\nadmin-token = "t"\n'
            'upstream-connections = 64\nlog-level = "WARNING"\n'
        )
        node.hup()
        log = await node.logged("needs a restart")
        budget = (await node.stats())["origin_budget"]
        assert budget == {**budget, "rate": 20.0, "burst": 5.0}  # type: ignore[dict-item]
        purge = f"http://127.0.0.1:{node.admin}/purge"
        async with aiohttp.ClientSession() as s:
            async with s.post(purge, json={}) as resp:
                assert resp.status == 401, await resp.text()  # before: 403, no token set
            auth = {"Authorization": "Bearer t"}
            async with s.post(purge, json={"url": "/small/1"}, headers=auth) as resp:
                assert resp.status == 200, await resp.text()  # the new token works
        warning = next(line for line in log.splitlines() if "needs a restart" in line)
        assert " WARNING " in warning and "--upstream-connections" in warning, log
        assert "reloaded: " not in log  # --log-level WARNING: the INFO line is gone


async def test_reload_shrinks_the_store_while_downloads_go_on(aiohttp_server, tmp_path):
    """100 objects of 64 KiB and a 24 MiB one in a 32 MiB lru store; a SIGHUP makes it
    2 MiB tinylfu. /stats shows the store under the new budget, the newest objects
    still hit, and a memory hit and a fill in flight across the shrink finish whole."""
    origin = await paced_origin(aiohttp_server)
    config = tmp_path / "edge.toml"
    config.write_text('cache-bytes = "32MiB"\nadmission = "lru"\n')
    async with edge(url_of(origin), config, tmp_path) as node, aiohttp.ClientSession() as s:
        async with s.get(node.url("/huge")) as resp:
            assert await resp.read() == HUGE
        hit = await s.get(node.url("/huge"))  # a memory hit, held open
        assert "hit" in hit.headers["Cache-Status"]
        got = await hit.content.readexactly(CHUNK)
        for n in range(100):  # newer than /huge: lru keeps these first
            async with s.get(node.url(f"/obj/{n}")) as resp:
                assert resp.status == 200 and len(await resp.read()) == 64 * 1024
        before = await node.stats()
        assert before["objects"] == 101, before
        fill = await s.get(node.url("/big"))  # 3 MiB paced over 1.5 s: a fill in flight
        filled = await fill.content.readexactly(CHUNK)
        config.write_text('cache-bytes = "2MiB"\nadmission = "tinylfu"\n')
        node.hup()
        log = await node.reloaded(1)
        assert "--cache-bytes" in log and "--admission" in log, log[-2000:]
        after = await node.stats()
        got += await hit.content.read()
        filled += await fill.content.read()
        hit.release()
        fill.release()
        assert hashlib.sha256(got).digest() == hashlib.sha256(HUGE).digest()
        assert filled == BIG  # over the new --max-object-bytes: streamed on, not stored
        assert after["capacity_bytes"] == 2 << 20
        assert 0 < after["bytes"] <= 2 << 20  # type: ignore[operator]
        assert 20 <= after["objects"] < 32, after  # type: ignore[operator]
        async with s.get(node.url("/obj/99")) as resp:  # the newest stayed
            assert "hit" in resp.headers["Cache-Status"] and resp.status == 200
        async with s.get(node.url("/obj/0")) as resp:  # the oldest went: a miss, stored
            assert "miss" in resp.headers["Cache-Status"]
        async with s.get(node.url("/obj/0")) as resp:
            assert "hit" in resp.headers["Cache-Status"]
        final = await node.stats()
        assert final["bytes"] <= final["capacity_bytes"] == 2 << 20  # type: ignore[operator]
    print(
        f"\nstore {before['objects']} objects, {before['bytes']} B → {after['objects']},"
        f" {after['bytes']} B under 2 MiB; 24 MiB hit and 3 MiB fill in flight: identical"
    )


async def test_reload_shrinking_the_disk_tier_never_cuts_a_file_being_sent(
    aiohttp_server, tmp_path
):
    """A 24 MiB disk hit (sendfile) is in flight when a SIGHUP shrinks the disk tier
    under it: its files are unlinked at once, and the download still completes
    byte-identical (POSIX keeps an open, unlinked file readable)."""
    origin = await paced_origin(aiohttp_server)
    disk = tmp_path / "disk"
    config = tmp_path / "edge.toml"
    base = f'disk-path = "{disk}"\nadmission = "lru"\ndisk-bytes = "64MiB"\n'
    config.write_text(base + 'cache-bytes = "32MiB"\n')
    async with edge(url_of(origin), config, tmp_path) as node, aiohttp.ClientSession() as s:
        async with s.get(node.url("/huge")) as resp:
            assert await resp.read() == HUGE
        await until_stats(node, lambda st: st["disk"]["objects"] == 1)
        config.write_text(base + 'cache-bytes = "1MiB"\n')  # out of memory: disk only
        node.hup()
        await node.reloaded(1)
        stats = await node.stats()
        assert stats["bytes"] == stats["disk"]["bytes"]  # type: ignore[index]
        hit = await s.get(node.url("/huge"))  # sendfile from the body file, held open
        assert "hit" in hit.headers["Cache-Status"]
        got = await hit.content.readexactly(CHUNK)
        config.write_text(base.replace("64MiB", "1MiB") + 'cache-bytes = "1MiB"\n')
        node.hup()
        await node.reloaded(2)
        deadline = time.monotonic() + 5.0
        while True:  # the unlink runs in the store's writer thread
            bodies = list(disk.rglob("*.body"))
            if not bodies or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert not bodies  # unlinked while being sent
        targets = await asyncio.to_thread(open_files, node.proc.pid)
        if targets is not None:  # Linux: the edge still reads the unlinked file
            assert any(".body (deleted)" in target for target in targets), targets
        got += await hit.content.read()
        hit.release()
        assert hashlib.sha256(got).digest() == hashlib.sha256(HUGE).digest()
        stats = await node.stats()
        assert stats["disk"]["capacity_bytes"] == 1 << 20  # type: ignore[index]
        assert stats["disk"]["objects"] == 0  # type: ignore[index]


async def until_stats(node: Edge, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """/stats once ``ok`` holds for it (polled, at most 5 s)."""
    deadline = time.monotonic() + 5.0
    while True:
        stats = await node.stats()
        if ok(stats) or time.monotonic() > deadline:
            assert ok(stats), stats
            return stats
        await asyncio.sleep(0.05)


def open_files(pid: int) -> list[str] | None:
    """What process ``pid``'s descriptors point at; None without Linux's ``/proc``."""
    fds = Path(f"/proc/{pid}/fd")
    if not fds.is_dir():
        return None
    targets = []
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):
            targets.append(os.readlink(fd))
    return targets
