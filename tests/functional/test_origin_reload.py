"""SIGHUP reloads a real ``tiercdn-origin serve --config FILE`` (a subprocess): new
Cache-Control values reach the next response, a bad file changes nothing (one ERROR
line), a new library path is served, and a download in flight finishes whole."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from shared.ops.topology import free_ports
from tests.helpers import node_process

BIG = bytes(range(256)) * (4 * 1024 * 1024 // 256)  # 4 MiB
CHUNK = 64 * 1024


def library(root: Path, tag: bytes) -> Path:
    """A title ``t`` under ``root``: a manifest, a small segment and a 4 MiB one."""
    title = root / "t"
    title.mkdir(parents=True)
    (title / "manifest.mpd").write_bytes(b"<MPD>" + tag + b"</MPD>")
    (title / "chunk-1.m4s").write_bytes(tag * 100)
    (title / "chunk-2.m4s").write_bytes(BIG)
    return root


class Origin:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    async def logged(self, text: str, times: int = 1) -> str:
        """The origin's stderr once ``text`` is in it ``times`` times (or after 5 s)."""
        deadline = time.monotonic() + 5.0
        while True:
            log = await asyncio.to_thread(self.log.read_text)
            if log.count(text) >= times or time.monotonic() > deadline:
                return log
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def origin(config: Path, tmp_path: Path) -> AsyncIterator[Origin]:
    """``python -m origin serve --config FILE`` until the block ends; it must stop cleanly."""
    [port] = free_ports(1)
    log = tmp_path / "origin.stderr"
    args = ["-m", "origin", "serve", "--config", str(config), "--port", str(port)]
    async with node_process([*args, "--admin-port", "0"], log) as proc:
        yield Origin(proc, port, log)
        assert proc.returncode is None, "SIGHUP must not stop the origin"
    text = log.read_text()
    assert proc.returncode == 0 and "Traceback" not in text, text[-2000:]


async def headers(s: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str], bytes]:
    async with s.get(url) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def test_origin_reload_applies_new_cache_control(tmp_path: Path) -> None:
    """Segment and manifest Cache-Control, CDN-Cache-Control and the error field change
    on SIGHUP; a listener setting is named as needing a restart."""
    lib = library(tmp_path / "lib", b"a")
    config = tmp_path / "origin.toml"
    config.write_text(f'library = "{lib}"\nsegment-max-age = "60s"\n')
    async with origin(config, tmp_path) as node, aiohttp.ClientSession() as s:
        _, h, _ = await headers(s, node.url("/t/chunk-1.m4s"))
        assert h["Cache-Control"] == "public, max-age=60, immutable"
        assert "CDN-Cache-Control" not in h
        config.write_text(
            f'library = "{lib}"\nsegment-max-age = "120s"\nmanifest-max-age = "1s"\n'
            'segment-cdn-cache-control = "max-age=5"\nerror-cache-control = "max-age=3"\n'
            'keepalive-timeout = "30s"\nlive = ["sports"]\n'
        )
        node.hup()
        log = await node.logged("needs a restart")
        _, _, listing = await headers(s, node.url("/"))
        assert b'"live"' not in listing  # a reload starts no channel
        _, h, _ = await headers(s, node.url("/t/chunk-1.m4s"))
        assert h["Cache-Control"] == "public, max-age=120, immutable"
        assert h["CDN-Cache-Control"] == "max-age=5"
        _, h, _ = await headers(s, node.url("/t/manifest.mpd"))
        assert h["Cache-Control"] == "public, max-age=1"
        status, h, _ = await headers(s, node.url("/t/nope.m4s"))
        assert status == 404 and h["Cache-Control"] == "max-age=3"
    reloaded = next(line for line in log.splitlines() if "reloaded: " in line)
    assert "--segment-max-age" in reloaded and "--error-cache-control" in reloaded
    warning = next(line for line in log.splitlines() if "needs a restart" in line)
    assert " WARNING " in warning and "--keepalive-timeout" in warning, log
    assert "--keepalive-timeout, --live changed but needs a restart" in warning, log


async def test_origin_bad_config_on_reload_changes_nothing(tmp_path: Path) -> None:
    """Not TOML, a bad value, a missing library: one ERROR line each, the old
    Cache-Control still served."""
    lib = library(tmp_path / "lib", b"a")
    config = tmp_path / "origin.toml"
    good = f'library = "{lib}"\nsegment-max-age = "60s"\n'
    config.write_text(good)
    bad = (
        "segment-max-age = \n",
        good + 'fault-status = "often"\n',
        f'library = "{tmp_path / "missing"}"\nsegment-max-age = "5s"\n',
    )
    async with origin(config, tmp_path) as node, aiohttp.ClientSession() as s:
        for text in bad:
            node.log.write_text("")  # this file's line counted alone
            config.write_text(text)
            node.hup()
            log = await node.logged(" ERROR ")
            assert log.count(" ERROR ") == 1 and "reload refused" in log, log[-2000:]
            assert "origin.toml" in log or "missing" in log, log
            _, h, _ = await headers(s, node.url("/t/chunk-1.m4s"))
            assert h["Cache-Control"] == "public, max-age=60, immutable"


async def test_origin_download_in_flight_across_reload_completes(tmp_path: Path) -> None:
    """A 4 MiB segment paced at 4 MiB/s is in flight when a SIGHUP switches library,
    freshness and pacing: it finishes byte-identical; the next request sees it all."""
    old, new = library(tmp_path / "old", b"o"), library(tmp_path / "new", b"n")
    config = tmp_path / "origin.toml"
    config.write_text(f'library = "{old}"\nfault-rate = "4MiB"\n')
    async with origin(config, tmp_path) as node, aiohttp.ClientSession() as s:
        async with s.get(node.url("/t/chunk-2.m4s")) as resp:
            got = await resp.content.readexactly(CHUNK)
            config.write_text(f'library = "{new}"\nsegment-max-age = "7s"\n')
            node.hup()
            log = await node.logged("reloaded: ")
            assert "--library" in log and "--fault-rate" in log, log[-2000:]
            got += await resp.read()
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert got == BIG
        _, h, body = await headers(s, node.url("/t/chunk-1.m4s"))
        assert body == b"n" * 100 and h["Cache-Control"] == "public, max-age=7, immutable"
