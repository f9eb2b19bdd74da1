"""``tiercdn-edge --workers 2``, for real: two processes on one port, one owner per object.

The edge runs as a subprocess (its supervisor and two workers) in front of an
in-process regional that counts every request it gets, with a real origin
behind it. A storm of clients on cold segments reaches the regional once per
segment; a worker killed with SIGKILL is started again while the other keeps
serving; the supervisor's admin listener sums the workers and sends purge to
each; SIGTERM stops everything.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import REPO, url_of

TOKEN = "workers-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def gone(pid: int) -> bool:
    """Has process ``pid`` exited (gone, or a zombie its parent has not reaped)?"""
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


def worker_index(pid: int) -> str:
    """A worker's index, from its environment (``TIERCDN_WORKER``)."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    value = next(e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"TIERCDN_WORKER="))
    return value.split("/")[0]  # I/N


class Recorder:
    def __init__(self) -> None:
        self.paths: collections.Counter[str] = collections.Counter()

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        self.paths[request.path] += 1
        return await handler(request)


@contextlib.asynccontextmanager
async def workers_edge(
    regional: str, admin_port: int, log: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    args = ["-m", "edge", "--upstream", regional, "--port", "0", "--workers", "2"]
    args += ["--admin-port", str(admin_port), "--name", "edge-1", "--admin-token", TOKEN]
    args += ["--prefetch", "0"]
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert "ready on http://" in line and "(2 workers)" in line, line
            yield proc, line.split("ready on ")[1].split("/ ")[0]
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), 40)


@pytest.fixture
async def pop(start_node, origin_server, sample_library: Path, tmp_path: Path):
    recorder = Recorder()
    regional = await start_node(
        "regional-1", url_of(origin_server), middlewares=[recorder.middleware]
    )
    admin_port = free_port()
    async with workers_edge(url_of(regional), admin_port, tmp_path / "edge.log") as (proc, url):
        paths = sorted(f"/sample/{p.name}" for p in (sample_library / "sample").glob("*.m4s"))
        yield proc, url, f"http://127.0.0.1:{admin_port}", recorder, paths


async def fetch(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as r:
        await r.read()
        return r.status


async def test_a_storm_on_two_workers_reaches_the_regional_once_per_object(pop, http):
    """120 clients per segment on 4 cold segments, each on its own connection (the
    kernel spreads them over both workers): one regional request per segment, and
    the admin listener shows both workers with every request counted."""
    proc, edge, admin, recorder, paths = pop
    targets = paths[:4]
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True)
    ) as fresh:
        statuses = await asyncio.gather(*(fetch(fresh, edge + p) for p in targets * 120))
    assert statuses == [200] * 480
    assert {p: recorder.paths[p] for p in targets} == dict.fromkeys(targets, 1)
    async with http.get(admin + "/stats") as r:
        stats = await r.json()
    assert stats["workers_up"] == 2
    assert [w["name"] for w in stats["workers"]] == ["edge-1.w0", "edge-1.w1"]
    assert [w["capacity_bytes"] for w in stats["workers"]] == [128 * 2**20] * 2  # 256MiB / 2
    served = [sum(w["requests"].values()) for w in stats["workers"]]
    assert all(n > 0 for n in served), served  # both took clients
    assert sum(stats["requests"].values()) >= 480  # plus the owners' peer requests
    async with http.get(admin + "/metrics") as r:
        text = await r.text()
    assert 'worker="0"' in text and 'worker="1"' in text
    assert 'tiercdn_worker_up{worker="1"} 1.0' in text


async def test_a_killed_worker_is_started_again_and_the_other_keeps_serving(pop, http):
    """SIGKILL one worker: every request still gets a 200 (the live worker serves, the
    dead one's queue waits for its restart), the supervisor restarts it and counts it,
    purge reaches both workers, and SIGTERM stops the supervisor and its workers."""
    proc, edge, admin, recorder, paths = pop
    for p in paths[:4]:
        assert await fetch(http, edge + p) == 200
    victim = children(proc.pid)[0]
    restarts = f'tiercdn_worker_restarts_total{{worker="{worker_index(victim)}"}} 1.0'
    os.kill(victim, signal.SIGKILL)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, force_close=True)
    ) as fresh:
        async with asyncio.timeout(30):
            statuses = await asyncio.gather(*(fetch(fresh, edge + p) for p in paths[:4] * 10))
    assert statuses == [200] * 40

    async with asyncio.timeout(30):
        while True:
            async with http.get(admin + "/metrics") as r:
                text = await r.text()
            async with http.get(admin + "/healthz") as h:
                if restarts in text and h.status == 200:
                    break
            await asyncio.sleep(0.1)
    assert victim not in children(proc.pid) and len(children(proc.pid)) == 2
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.post(admin + "/purge", json={"all": True}, headers=headers) as r:
        body = await r.json()
        assert r.status == 200, body
    assert len(body["workers"]) == 2 and body["purged"] >= 1
    # SIGTERM stops the supervisor and both workers
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 40) == 0
    assert all(gone(pid) for pid in workers)
