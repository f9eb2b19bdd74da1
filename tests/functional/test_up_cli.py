"""``tiercdn up`` and the node CLIs, run as real subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import pytest

from loadtest.startup import up_ports

pytestmark = pytest.mark.slow


def is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ports_with_admin() -> tuple[list[int], int]:
    """Three free ports and an offset that leaves their admin ports free too."""
    return up_ports(random.Random())


async def read_until(proc: asyncio.subprocess.Process, marker: str) -> str:
    """Lines the process prints, up to the one holding ``marker``."""
    seen: list[str] = []
    assert proc.stdout is not None
    while line := (await proc.stdout.readline()).decode():
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed; output: {''.join(seen)}")


async def test_up_serves_all_tiers_and_stops_on_sigint(sample_library, http, tmp_path):
    """`tiercdn up` answers on every tier, plays the first segments and exits 0 on SIGINT."""
    (edge, regional, origin), offset = ports_with_admin()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.ops.cli", "up", "--library", str(sample_library),
        "--edge-port", str(edge), "--regional-port", str(regional),
        "--origin-port", str(origin), "--admin-offset", str(offset),
        "--cache-dir", str(tmp_path / "cache"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            out = await read_until(proc, "Ctrl-C")
        manifest = f"http://127.0.0.1:{edge}/sample/manifest.mpd"
        assert f"play:      {manifest}" in out
        async with http.get(manifest) as r:
            assert r.status == 200
            mpd = ET.fromstring(await r.read())
        ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
        template = mpd.find(".//d:SegmentTemplate", ns)
        rep = mpd.find(".//d:Representation", ns)
        assert template is not None and rep is not None
        rid = rep.get("id", "")
        start = int(template.get("startNumber", "1"))
        paths = [template.get("initialization", "").replace("$RepresentationID$", rid)]
        for n in (start, start + 1):
            media = template.get("media", "").replace("$RepresentationID$", rid)
            paths.append(media.replace("$Number%05d$", f"{n:05d}"))
        for path in paths:
            async with http.get(f"http://127.0.0.1:{edge}/sample/{path}") as r:
                assert r.status == 200, path
                assert await r.read() == (sample_library / "sample" / path).read_bytes()
        for port in (regional, origin):
            async with http.get(f"http://127.0.0.1:{port}/sample/manifest.mpd") as r:
                assert r.status == 200
        for port in (edge, regional, origin):
            async with http.get(f"http://127.0.0.1:{port + offset}/healthz") as r:
                assert r.status == 200
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    for port in (edge, regional, origin):
        assert is_free(port)
    assert list((tmp_path / "cache" / "regional-1").rglob("*.meta"))  # the regional's disk tier


@pytest.mark.parametrize("module", ["edge", "regional", "origin", "shared.ops.cli"])
def test_cli_help(module):
    """Every console entry point answers --help."""
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and "usage" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--cache-bytes", "lots"], "not a size"), (["--upstream", "ftp://x"], "http(s) URL")],
)
def test_cli_node_bad_settings_clear_error(args, message):
    """A bad flag ends the node with a one-line error, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_node_port_in_use_clear_error():
    """A node whose port is taken says so and exits non-zero."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "edge", "--port", str(port), "--admin-port", "0"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert "error:" in result.stderr and "Traceback" not in result.stderr


# --- supervision: busy ports, restarts, stop order, bad --library ------------------


def up_argv(library, ports: list[int], offset: int, tmp_path, *extra: str) -> list[str]:
    edge, regional, origin = ports
    return [
        sys.executable, "-m", "shared.ops.cli", "up", "--library", str(library),
        "--edge-port", str(edge), "--regional-port", str(regional),
        "--origin-port", str(origin), "--admin-offset", str(offset),
        "--cache-dir", str(tmp_path / "cache"), *extra,
    ]  # fmt: skip


def child_pids(pid: int) -> dict[str, int]:
    """The tiers ``up`` started, by name (from their command lines, Linux /proc)."""
    found: dict[str, int] = {}
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            name = argv[2].decode() if len(argv) > 2 else ""
            found[name] = int(child)
    return found


async def healthy(http: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with http.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


def test_up_refuses_a_busy_port_and_starts_nothing(sample_library, tmp_path):
    """A taken admin port: exit 1, one line naming it, no tier started, no sample made."""
    ports, offset = ports_with_admin()
    busy = ports[1] + offset  # the regional's admin port
    with socket.socket() as s:
        s.bind(("127.0.0.1", busy))
        s.listen()
        result = subprocess.run(
            up_argv(tmp_path / "library", ports, offset, tmp_path),
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(busy) in lines[0] and "regional admin" in lines[0]
    assert not (tmp_path / "library").exists()
    assert all(is_free(p) for p in ports)


@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_up_bad_library_one_line(tmp_path, kind):
    """--library naming a file, or a path that cannot be made: one line, exit 1."""
    afile = tmp_path / "notadir"
    afile.write_text("x")
    library = afile if kind == "a file" else afile / "library"
    ports, offset = ports_with_admin()
    result = subprocess.run(
        up_argv(library, ports, offset, tmp_path), capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--library" in lines[0] and "Traceback" not in result.stderr


async def test_up_restarts_a_killed_regional_and_stops_in_order(sample_library, http, tmp_path):
    """kill -9 of the regional: restarted within seconds while the edge serves every
    segment through its fallback (0 failures); SIGTERM then stops edge, regional, origin."""
    ports, offset = ports_with_admin()
    edge, regional = ports[0], ports[1]
    with (tmp_path / "up.err").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *up_argv(sample_library, ports, offset, tmp_path, "--drain-timeout", "5s"),
            stdout=subprocess.PIPE, stderr=err,
        )  # fmt: skip
    tiers: dict[str, int] = {}
    try:
        async with asyncio.timeout(30):
            await read_until(proc, "Ctrl-C")
        tiers = child_pids(proc.pid)
        assert set(tiers) == {"origin", "regional", "edge"}
        os.kill(tiers["regional"], signal.SIGKILL)
        restarted = asyncio.create_task(read_until(proc, "regional restarted"))
        files = sorted((sample_library / "sample").glob("*.m4s"))
        files += sorted((sample_library / "sample").glob("*.mp4"))
        served = failed = 0
        async with asyncio.timeout(10):
            while not restarted.done() or served < len(files):
                path = files[served % len(files)]
                async with http.get(f"http://127.0.0.1:{edge}/sample/{path.name}") as r:
                    ok = r.status == 200 and await r.read() == path.read_bytes()
                served, failed = served + 1, failed + (not ok)
                await asyncio.sleep(0.01)
            assert "exited with status -9; restart in 1s" in await restarted
            for _ in range(100):  # the restarted regional answers again
                if await healthy(http, f"http://127.0.0.1:{regional + offset}/healthz"):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the restarted regional never answered /healthz")
        assert failed == 0 and served >= len(files)
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            out = (await proc.stdout.read()).decode()
            assert await proc.wait() == 0
        order = [out.index(f"stopping {t}") for t in ("edge", "regional", "origin")]
        done = [out.index(f"{t} stopped") for t in ("edge", "regional", "origin")]
        assert order[0] < done[0] < order[1] < done[1] < order[2] < done[2], out
        assert "restarts: {'regional': 1}" in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in tiers.values():  # tiers run in their own sessions: not killed with `up`
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert all(is_free(p) for p in ports)
