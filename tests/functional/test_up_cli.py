"""``tiercdn up`` and the node CLIs, run as real subprocesses."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET

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
