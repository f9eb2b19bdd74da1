"""`tiercdn purge` and `tiercdn prewarm` as subprocesses against in-process nodes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shared.engine.node import NODE
from shared.ops.topology import free_ports
from shared.service.admin import make_admin_app
from tests.functional.test_up_cli import ports_with_admin, read_until
from tests.helpers import url_of

TOKEN = "cli-token"
MPD = "/sample/manifest.mpd"


async def tiercdn(*args: str, token: str | None = TOKEN) -> tuple[int, str, str]:
    """Run ``python -m shared.ops.cli ARGS`` without blocking the loop the servers run in."""
    env = {k: v for k, v in os.environ.items() if k != "TIERCDN_ADMIN_TOKEN"}
    if token is not None:
        env["TIERCDN_ADMIN_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.ops.cli", *args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def nodes(origin_server, start_node, aiohttp_server):
    """Two regionals and two edges with admin listeners; purges are logged in order."""
    purges: list[tuple[str, float]] = []

    def recorder(name):
        @web.middleware
        async def record(request, handler):
            if request.path == "/purge":
                purges.append((name, time.monotonic()))
            return await handler(request)

        return record

    servers: dict[str, TestServer] = {}
    admins: dict[str, str] = {}
    for name, parent in (
        ("regional-1", "origin"),
        ("regional-2", "origin"),
        ("edge-1", "regional-1"),
        ("edge-2", "regional-2"),
    ):
        upstream = url_of(origin_server if parent == "origin" else servers[parent])
        servers[name] = await start_node(name, upstream, admin_token=TOKEN)
        admin = make_admin_app(servers[name].app)
        admin.middlewares.append(recorder(name))
        admins[name] = url_of(await aiohttp_server(admin))
    return servers, admins, purges


async def test_cli_purge_does_regionals_before_edges(nodes, http):
    """Every regional is purged before any edge; one line per node; exit 0."""
    servers, admins, purges = nodes
    for edge in ("edge-1", "edge-2"):
        for path in ("/sample/init-0.mp4", "/sample/chunk-0-00001.m4s"):
            async with http.get(url_of(servers[edge]) + path) as r:
                assert r.status == 200
                await r.read()
    code, out, err = await tiercdn(
        "purge", "--prefix", "/sample/",
        "--edge", admins["edge-1"], "--regional", admins["regional-1"],
        "--edge", admins["edge-2"], "--regional", admins["regional-2"],
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"regional {admins['regional-1']}: purged 2",
        f"regional {admins['regional-2']}: purged 2",
        f"edge {admins['edge-1']}: purged 2",
        f"edge {admins['edge-2']}: purged 2",
    ]
    assert [name for name, _ in purges] == ["regional-1", "regional-2", "edge-1", "edge-2"]
    assert [t for _, t in purges] == sorted(t for _, t in purges)
    assert all(len(servers[name].app[NODE].store) == 0 for name in servers)


async def test_cli_purge_reports_each_failed_node_and_goes_on(nodes):
    """A dead node and a wrong token give one error line each, exit 1, no traceback."""
    _, admins, purges = nodes
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    code, out, err = await tiercdn(
        "purge", "--all", "--regional", dead, "--regional", admins["regional-1"],
        "--edge", admins["edge-1"],
    )  # fmt: skip
    assert code == 1
    assert out.splitlines() == [
        f"regional {admins['regional-1']}: purged 0",
        f"edge {admins['edge-1']}: purged 0",
    ]
    assert err.splitlines() == [f"regional {dead}: error: connection refused at {dead}/purge"
                                " (is that the admin port?)"]  # fmt: skip
    code, out, err = await tiercdn("purge", "--all", "--edge", admins["edge-1"], token="wrong")
    assert (code, out) == (1, "")
    assert err == f"edge {admins['edge-1']}: error: HTTP 403: wrong admin token\n"
    code, _, err = await tiercdn("purge", "--url", "/x", "--edge", admins["edge-1"], token=None)
    assert code == 1 and "HTTP 401: admin token required (use --token" in err
    assert "Traceback" not in err
    assert [name for name, _ in purges] == ["regional-1", "edge-1", "edge-1", "edge-1"]


async def test_cli_prewarm_finds_the_admin_port_and_prints_the_report(nodes):
    """MANIFEST_URL at port P goes to the admin at P + 1000; the report is printed; reruns skip."""
    servers, admins, _ = nodes
    admin_port = int(admins["edge-1"].rsplit(":", 1)[1])
    manifest = f"http://127.0.0.1:{admin_port - 1000}{MPD}"
    args = ("prewarm", manifest, "--lowest", "1", "--seconds", "4", "--concurrency", "2")
    code, out, err = await tiercdn(*args, "--token", TOKEN, token=None)
    assert (code, err) == (0, "")
    first, done = out.splitlines()
    assert first.startswith(
        f"edge-1 {MPD}: 7 paths, fetched 7, skipped 0 (already cached), failed 0 in "
    )
    assert done.startswith("done in ")
    assert len(servers["edge-1"].app[NODE].store) == 7
    code, out, _ = await tiercdn(*args)
    assert code == 0 and "fetched 0, skipped 7" in out


async def test_cli_prewarm_top_and_errors(nodes, http):
    """--top warms the node's most requested title; a missing title or dead admin exits 1."""
    servers, admins, _ = nodes
    edge = url_of(servers["edge-2"])
    async with http.get(edge + MPD) as r:
        await r.read()
    code, out, err = await tiercdn("prewarm", "--top", "3", "--admin", admins["edge-2"])
    assert (code, err) == (0, "")
    assert f"edge-2 {MPD}: 13 paths, fetched 12, skipped 1" in out
    code, out, err = await tiercdn("prewarm", edge + "/nope.mpd", "--admin", admins["edge-2"])
    assert code == 1 and "failed 1" in out
    assert "error: manifest could not be fetched" in err
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    code, _, err = await tiercdn("prewarm", edge + MPD, "--admin", dead)
    assert code == 1
    assert err == f"error: {dead}: connection refused at {dead}/prewarm (is that the admin port?)\n"
    code, _, err = await tiercdn("prewarm", "--top", "3")
    assert code == 1 and "--top needs --admin" in err


@pytest.mark.slow
async def test_cli_up_with_a_token_enables_purge_and_prewarm(sample_library, http, tmp_path):
    """`tiercdn up --admin-token` hands the token to regional and edge and says how to use it."""
    (edge, regional, origin), offset = ports_with_admin()
    env = {k: v for k, v in os.environ.items() if k != "TIERCDN_ADMIN_TOKEN"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.ops.cli", "up", "--library", str(sample_library),
        "--edge-port", str(edge), "--regional-port", str(regional),
        "--origin-port", str(origin), "--admin-offset", str(offset), "--admin-token", TOKEN,
        "--cache-dir", str(tmp_path / "cache"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            out = await read_until(proc, "Ctrl-C")
        admin = {port: f"http://127.0.0.1:{port + offset}" for port in (edge, regional)}
        assert f"--regional {admin[regional]} --edge {admin[edge]}" in out
        assert f"tiercdn prewarm http://127.0.0.1:{edge}{MPD}" in out
        assert TOKEN not in out
        for port in (edge, regional):
            body = {"manifest": MPD, "lowest": 1, "seconds": 2}
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.post(admin[port] + "/prewarm", json=body, headers=headers) as r:
                assert r.status == 200 and (await r.json())["total"] == 5
        code, out, err = await tiercdn(
            "purge", "--all", "--regional", admin[regional], "--edge", admin[edge]
        )
        assert (code, err) == (0, "") and out.count("purged 5") == 2
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_bare_tiercdn_lists_its_verbs():
    proc = subprocess.run(
        [sys.executable, "-m", "shared.ops.cli"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    for verb in ("up", "purge", "prewarm", "loadtest", "check-config"):
        assert f"    {verb}" in proc.stdout


def test_tiercdn_unknown_flag_is_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "shared.ops.cli", "purge", "--all", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tiercdn: error: unrecognized arguments: --bogus; see --help"
    ]


def test_check_config_subprocess_exit_codes(tmp_path):
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('[edge]\ncache-bytes = "64MiB"\n[origin]\nport = 9000\n')
    bad.write_text('[regional]\ncache-bytes = "lots"\n')
    for path, code in ((good, 0), (bad, 1)):
        proc = subprocess.run(
            [sys.executable, "-m", "shared.ops.cli", "check-config", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == code, proc.stderr
    assert f"{bad} [regional]: cache-bytes 'lots'" in proc.stderr
