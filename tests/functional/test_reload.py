"""SIGHUP reloads a real ``tiercdn-edge`` (a subprocess with ``--config FILE``): a
download in flight completes byte-identical, steady load sees no failure across
five reloads, a bad file changes nothing, a good one is applied."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

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


async def _small(request: web.Request) -> web.Response:
    await asyncio.sleep(0.01)
    body = request.match_info["n"].encode() * 100
    return web.Response(body=body, headers={"Cache-Control": "max-age=1"})


async def paced_origin(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    app = web.Application()
    app.router.add_get("/big", _big)
    app.router.add_get("/small/{n}", _small)
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
            'cache-bytes = "64MiB"\nlog-level = "WARNING"\n'
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
        assert " WARNING " in warning and "--cache-bytes" in warning, log
        assert "reloaded: " not in log  # --log-level WARNING: the INFO line is gone
