"""The access log (issue 11 part 5): one line per request per node with the bytes
actually sent (sendfile disk hits and Range included), the node's Cache-Status
member and its times; ``--log-json`` lines are JSON objects with separate fields;
``--access-log-file`` is reopened on SIGUSR1.

Listeners are started by ``shared.service.run.open_listeners`` (what ``serve``
runs); the file and JSON case runs the real origin CLI.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from origin.app import make_app as make_origin_app
from origin.settings import OriginSettings
from shared.engine.node import NODE
from shared.engine.node import make_app as make_node_app
from shared.ops.topology import free_ports
from shared.service.listener import Listener
from shared.service.run import open_listeners
from tests.helpers import REPO, node_settings

SEGMENT = "/sample/chunk-0-00002.m4s"
FIELDS = {"node", "client", "method", "target", "status", "bytes", "cache_status"}
FIELDS |= {"ttfb_ms", "total_ms", "upstream_ms"}

Start = Callable[..., Any]


@pytest.fixture
async def listen() -> AsyncIterator[Start]:
    """``open_listeners(app, access_log=True, name=...)``; the base URL."""
    started: list[Listener] = []

    async def start(app: web.Application, name: str) -> str:
        listeners = await open_listeners(app, "127.0.0.1", 0, access_log=True, name=name)
        started.extend(listeners)
        return f"http://127.0.0.1:{listeners[0].port}"

    yield start
    for listener in reversed(started):
        await listener.stop()


def access(caplog: pytest.LogCaptureFixture, node: str) -> list[dict[str, Any]]:
    return [
        r.access  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == f"tiercdn.access.{node}"
    ]


async def test_disk_hit_and_range_log_the_bytes_sent(
    listen: Start,
    sample_library: Path,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sendfile disk hit logs its body size (not the header size); a Range its slice;
    the origin logs its FileResponse bytes with "-" for the Cache-Status member."""
    caplog.set_level(logging.INFO, "tiercdn.access")
    settings = OriginSettings(library=str(sample_library), port=0, admin_port=0, name="origin-1")
    origin = await listen(make_origin_app(settings), "origin-1")
    disk = str(tmp_path / "cache")
    first = make_node_app(node_settings("regional-1", origin, disk_path=disk))
    url = await listen(first, "regional-1") + SEGMENT
    async with http.get(url) as r:
        body = await r.read()
    await first[NODE].tasks.join()  # the fill commits after its last byte
    disk_store = first[NODE].store.disk
    assert disk_store is not None
    await disk_store.flush()
    second = make_node_app(node_settings("regional-2", origin, disk_path=disk))
    url = await listen(second, "regional-2") + SEGMENT
    async with http.get(url) as r:  # from the file: sendfile on the stock loop
        assert r.status == 200 and await r.read() == body
        assert r.headers["Cache-Status"].startswith("regional-2; hit")
    async with http.get(url, headers={"Range": "bytes=10-19"}) as r:
        assert r.status == 206 and await r.read() == body[10:20]
    await second[NODE].tasks.join()

    (miss,) = access(caplog, "regional-1")
    assert miss["bytes"] == len(body) and miss["cache_status"].startswith("regional-1; fwd=")
    assert miss["upstream_ms"] is not None and miss["upstream_ms"] >= 0
    hit, ranged = access(caplog, "regional-2")
    assert set(hit) == FIELDS
    assert hit["node"] == "regional-2" and hit["client"] == "127.0.0.1"
    assert (hit["method"], hit["target"], hit["status"]) == ("GET", SEGMENT, 200)
    assert hit["bytes"] == len(body) > 10_000  # not the header's few hundred bytes
    assert hit["cache_status"].startswith("regional-2; hit;") and hit["upstream_ms"] is None
    assert 0 <= hit["ttfb_ms"] <= hit["total_ms"]
    assert (ranged["status"], ranged["bytes"]) == (206, 10)
    (served,) = access(caplog, "origin-1")
    assert (served["status"], served["bytes"], served["cache_status"]) == (200, len(body), "-")
    text = [r.getMessage() for r in caplog.records if r.name == "tiercdn.access.regional-2"]
    assert text[0].startswith(f'regional-2 127.0.0.1 "GET {SEGMENT}" 200 {len(body)} "')


async def test_client_leaving_mid_body_still_gets_its_line(
    listen: Start, upstream_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that closes while its miss streams is logged once, with the status and
    the bytes it was sent, and no traceback (nginx logs such a request too)."""
    caplog.set_level(logging.INFO)
    rest = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Cache-Control": "max-age=60"})
        resp.content_length = 256 * 1024
        await resp.prepare(request)
        await resp.write(b"a" * 64 * 1024)
        await rest.wait()  # until the client has gone
        await resp.write(b"b" * 192 * 1024)
        return resp

    upstream = await upstream_app({"/slow": slow})
    node = make_node_app(node_settings("edge-1", str(upstream.make_url("")).rstrip("/")))
    url = await listen(node, "edge-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    await reader.readexactly(1000)
    writer.transport.abort()  # gone mid-body
    await asyncio.sleep(0.05)
    rest.set()
    for _ in range(100):
        if access(caplog, "edge-1"):
            break
        await asyncio.sleep(0.02)
    (line,) = access(caplog, "edge-1")
    assert (line["target"], line["status"]) == ("/slow", 200)
    assert 1000 <= line["bytes"] < 256 * 1024
    assert not [r for r in caplog.records if r.exc_info], "a traceback for a client leaving"
    await node[NODE].tasks.join()


async def test_log_json_and_access_log_file_reopened_on_sigusr1(
    sample_library: Path, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The origin CLI with --log-json --access-log-file: every stdout/stderr line and
    every file line is one JSON object; after a rename and SIGUSR1 the lines go to a
    new file at the path."""
    path = tmp_path / "access.log"
    port, admin_port = free_ports(2)
    args = ["-m", "origin", "serve", "--library", str(sample_library), "--name", "origin-9"]
    args += ["--port", str(port), "--admin-port", str(admin_port), "--log-json"]
    args += ["--access-log-file", str(path)]
    stderr = tmp_path / "stderr.log"
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=err
        )
    try:
        assert proc.stdout is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        assert "ready" in ready["msg"]
        url = f"http://127.0.0.1:{port}{SEGMENT}"
        async with http.get(url) as r:
            size = len(await r.read())
        os.rename(path, tmp_path / "access.log.1")
        proc.send_signal(signal.SIGUSR1)
        for _ in range(100):  # the handler runs on the node's loop
            await asyncio.sleep(0.05)
            if path.exists():
                break
        async with http.get(url, headers={"Range": "bytes=0-99"}) as r:
            assert r.status == 206
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    (old,) = [json.loads(x) for x in (tmp_path / "access.log.1").read_text().splitlines()]
    (new,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert set(old) >= FIELDS and "msg" not in old
    assert (old["node"], old["status"], old["bytes"], old["cache_status"]) == (
        "origin-9",
        200,
        size,
        "-",
    )
    assert (new["status"], new["bytes"], new["target"]) == (206, 100, SEGMENT)
    lines = out.decode().splitlines() + stderr.read_text().splitlines()
    assert lines and all(isinstance(json.loads(x), dict) for x in lines)
