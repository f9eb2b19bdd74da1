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
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
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
    """`tiercdn up` answers on every tier, plays the first segments and exits 0 on SIGINT;
    its edge runs as two workers (``--edge-workers 2``) on the port up holds."""
    (edge, regional, origin), offset = ports_with_admin()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.ops.cli", "up", "--library", str(sample_library),
        "--edge-port", str(edge), "--regional-port", str(regional),
        "--origin-port", str(origin), "--admin-offset", str(offset),
        "--cache-dir", str(tmp_path / "cache"), "--edge-workers", "2",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(60):
            out = await read_until(proc, "Ctrl-C")
        manifest = f"http://127.0.0.1:{edge}/sample/manifest.mpd"
        assert f"play:      {manifest}" in out
        assert f"edge-1 ready on http://127.0.0.1:{edge}/ (2 workers)" in out
        assert f"hls:       http://127.0.0.1:{edge}/sample/master.m3u8" in out
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
    [
        (["--cache-bytes", "lots"], "not a size"),
        (["--upstream", "ftp://x"], "http(s) URL"),
        (["--workers", "many"], "--workers takes a number from 1 to 256 or auto"),
        (["--peer", "edge-2"], "--peer must be an http(s) URL"),
    ],
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


@contextlib.asynccontextmanager
async def running_up(argv: list[str], err_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``tiercdn up`` started with ``argv`` (stderr to ``err_path``), up to its ready
    banner; killed at the end, with every tier it started (own sessions)."""
    with err_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=err)
    seen: set[int] = set()
    try:
        async with asyncio.timeout(30):
            await read_until(proc, "Ctrl-C")
        seen.update(child_pids(proc.pid).values())
        yield proc
    finally:
        if proc.returncode is None:
            seen.update(child_pids(proc.pid).values())
            proc.kill()
        for pid in seen:  # before waiting: tiers hold up's stdout pipe open, and
            with contextlib.suppress(ProcessLookupError):  # 3.11's wait() waits for it
                os.kill(pid, signal.SIGKILL)
        await proc.wait()


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


def descendants(pid: int) -> list[int]:
    """Every live process under ``pid`` (Linux /proc)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def test_up_stopped_while_making_the_sample_stops_ffmpeg_and_leaves_nothing(tmp_path):
    """SIGTERM while the first run makes the sample: up exits 130 within seconds, the
    packager and its ffmpeg are gone, no half-made title is left in the library."""
    ports, offset = ports_with_admin()
    library = tmp_path / "library"
    argv = [*up_argv(library, ports, offset, tmp_path), "--sample-duration", "120"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 30
        while not list(library.glob(".sample.*.partial/*")) and time.monotonic() < deadline:
            time.sleep(0.05)  # ffmpeg has begun writing
        workers = descendants(proc.pid)
        assert len(workers) >= 2, workers  # the packager and its ffmpeg
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "stopped before it was up" in out and "Traceback" not in err
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert list(library.iterdir()) == []
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
    argv = up_argv(sample_library, ports, offset, tmp_path, "--drain-timeout", "5s")
    async with running_up(argv, tmp_path / "up.err") as proc:
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
    assert all(is_free(p) for p in ports)


# --- up --config and tiercdn reload ------------------------------------------------


def run_cli(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def tier_config(pid: int) -> Path:
    """The ``--config`` file a tier was started with (from its command line)."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return Path(argv[argv.index("--config") + 1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[edge]\ncache-byts = "64MiB"\n', "unknown key cache-byts"),
        ("[edge]\nport = 1\n", "port = 1 is set by tiercdn up itself"),
        ('[edge]\n[up]\nedge-port = "x"\n', "edge-port"),
    ],
)
def test_up_config_bad_key_one_line_nothing_started(tmp_path, text, message):
    """A bad key in up's --config: exit 1, one line naming file and key, nothing made."""
    config = tmp_path / "cdn.toml"
    config.write_text(text)
    ports, offset = ports_with_admin()
    result = subprocess.run(
        [*up_argv(tmp_path / "library", ports, offset, tmp_path), "--config", str(config)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and message in lines[0], lines
    assert not (tmp_path / "library").exists() and not (tmp_path / "cache").exists()


def test_reload_without_a_running_up_one_line(tmp_path):
    """`tiercdn reload` with no up.pid, or a stale one: one line, exit 1."""
    argv = [sys.executable, "-m", "shared.ops.cli", "reload", "--cache-dir", str(tmp_path)]
    missing = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    (tmp_path / "up.pid").write_text("999999999\n\n")
    stale = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    for result, word in ((missing, "not found"), (stale, "stale")):
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and word in lines[0], lines


async def test_up_config_sections_and_reload(sample_library, http, tmp_path):
    """`up --config`: [edge] cache-bytes reaches the edge; `tiercdn reload` refuses a bad
    file (nothing changes), then takes an edited one: files rewritten, tiers serving."""
    ports, offset = ports_with_admin()
    edge_admin = f"http://127.0.0.1:{ports[0] + offset}"
    config = tmp_path / "cdn.toml"
    config.write_text('[edge]\ncache-bytes = "64MiB"\n\n[up]\ndrain-timeout = "3s"\n')
    reload_argv = [sys.executable, "-m", "shared.ops.cli", "reload"]
    reload_argv += ["--cache-dir", str(tmp_path / "cache")]
    argv = up_argv(sample_library, ports, offset, tmp_path, "--config", str(config))
    async with running_up(argv, tmp_path / "up.err") as proc:
        tiers = child_pids(proc.pid)
        async with http.get(edge_admin + "/stats") as r:
            assert (await r.json())["capacity_bytes"] == 64 * 2**20
        edge_file = tier_config(tiers["edge"])
        assert (tmp_path / "cache" / "up.pid").read_text().split()[0] == str(proc.pid)

        config.write_text('[edge]\ncache-bytes = "lots"\n')
        bad = await asyncio.to_thread(run_cli, reload_argv)
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
        assert "cache-bytes" in bad.stderr and "max-requests" not in edge_file.read_text()

        origin_section = '[origin]\nmanifest-max-age = "7s"\n'
        config.write_text('[edge]\ncache-bytes = "64MiB"\nmax-requests = 77\n' + origin_section)
        good = await asyncio.to_thread(run_cli, reload_argv)
        assert good.returncode == 0, good.stderr
        async with asyncio.timeout(10):
            taken = await read_until(proc, "reload:")
            assert "edge SIGHUP" in taken and "origin SIGHUP" in taken, taken
            origin_mpd = f"http://127.0.0.1:{ports[2]}/sample/manifest.mpd"
            for _ in range(200):  # the origin applies its new max-age in place
                async with http.get(origin_mpd) as r:
                    if "max-age=7" in r.headers["Cache-Control"]:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the origin kept its old manifest max-age")
            assert "max-requests = 77" in edge_file.read_text()
            for _ in range(200):  # the edge logs what its reload changed
                if "edge-1 reloaded: --max-requests" in (tmp_path / "up.err").read_text():
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the edge logged no reload")
            assert await healthy(http, edge_admin + "/healthz")
        assert child_pids(proc.pid) == tiers  # every tier reloaded in place
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
        assert not (tmp_path / "cache" / "up.pid").exists() and not edge_file.exists()


async def test_up_reload_restarts_a_tier_gracefully_under_load(sample_library, tmp_path):
    """A reload that changes a listener setting (--max-connections) starts a new edge on
    the same sockets and drains the old one: under steady load (a new connection per
    request) nothing fails, and a miss in flight on the old edge completes whole."""
    ports, offset = ports_with_admin()
    base = f"http://127.0.0.1:{ports[0]}/sample/"
    config = tmp_path / "cdn.toml"
    head = '[up]\ndrain-timeout = "10s"\n\n[origin]\nfault-delay = "1500ms"\n\n[edge]\n'
    config.write_text(head + "max-connections = 5000\n")
    reload_argv = [sys.executable, "-m", "shared.ops.cli", "reload"]
    reload_argv += ["--cache-dir", str(tmp_path / "cache")]
    segments = sorted((sample_library / "sample").glob("*.m4s"))
    warm, cold = segments[:3], segments[-1]
    argv = up_argv(sample_library, ports, offset, tmp_path, "--config", str(config))
    connector = aiohttp.TCPConnector(force_close=True)  # every request a new connection
    async with (
        running_up(argv, tmp_path / "up.err") as proc,
        aiohttp.ClientSession(connector=connector) as http,
    ):
        old_edge = child_pids(proc.pid)["edge"]
        bodies = {path: path.read_bytes() for path in (*warm, cold)}

        async def fetch(path: Path) -> bool:
            async with http.get(base + path.name) as r:
                return r.status == 200 and await r.read() == bodies[path]

        async with asyncio.timeout(10):  # each a miss down to the slow origin, once
            assert all(await asyncio.gather(*map(fetch, warm)))
        in_flight = asyncio.create_task(fetch(cold))  # held ≥ 1.5 s at the origin
        stop, outcomes = asyncio.Event(), list[bool]()

        async def steady(worker: int) -> None:
            while not stop.is_set():
                try:
                    outcomes.append(await fetch(warm[worker % len(warm)]))
                except aiohttp.ClientError:
                    outcomes.append(False)

        load = [asyncio.create_task(steady(w)) for w in range(4)]
        try:
            await asyncio.sleep(0.3)
            config.write_text(head + "max-connections = 6000\n")
            result = await asyncio.to_thread(run_cli, reload_argv)
            assert result.returncode == 0, result.stderr
            async with asyncio.timeout(40):
                out = await read_until(proc, f"reload: {config} taken")
                assert "edge: --max-connections need a new process" in out
                assert "edge restarted" in out and "nothing" not in out
                out = await read_until(proc, "drained and stopped")
                assert f"old edge (pid {old_edge})" in out
                assert await in_flight, "the miss in flight on the old edge was cut"
                await asyncio.sleep(0.5)  # load on the new edge alone
        finally:
            stop.set()
            await asyncio.gather(*load, in_flight, return_exceptions=True)
        new_edge = child_pids(proc.pid)["edge"]
        assert new_edge != old_edge
        print(
            f"\n{len(outcomes)} requests across a graceful restart, {outcomes.count(False)} failed"
        )
        assert outcomes.count(False) == 0 and len(outcomes) > 20, len(outcomes)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await proc.wait() == 0
    assert all(is_free(p) for p in ports)


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def test_up_access_log_file_has_every_tier_and_reopens_on_sigusr1(
    sample_library, http, tmp_path
):
    """`up --access-log-file`: each tier's lines, named, in one file; after logrotate's
    move, SIGUSR1 to up makes every tier start a new file at the path."""
    ports, offset = ports_with_admin()
    log, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    argv = up_argv(sample_library, ports, offset, tmp_path, "--access-log-file", str(log))
    base = f"http://127.0.0.1:{ports[0]}/sample/"

    async def lines_naming(path: Path, *names: str) -> list[str]:
        for _ in range(200):  # each tier writes its line once its response is sent
            lines = lines_of(path)
            if all(any(name in line for line in lines) for name in names):
                return lines
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path} lacks a line of {names}")

    async with running_up(argv, tmp_path / "up.err") as proc:
        async with http.get(base + "manifest.mpd") as r:
            assert r.status == 200
        before = await lines_naming(log, "edge-1", "regional-1", "origin")
        assert sum("/sample/manifest.mpd" in line for line in before) == 3, before
        log.rename(rotated)
        proc.send_signal(signal.SIGUSR1)
        for _ in range(200):  # every tier has reopened once the file holds all three
            for port in ports:  # each tier asked itself: a line from each
                async with http.get(f"http://127.0.0.1:{port}/sample/manifest.mpd") as r:
                    assert r.status == 200
            after = lines_of(log)
            if all(any(n in line for line in after) for n in ("edge-1", "regional-1", "origin")):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("a tier kept writing to the moved file")
        assert rotated.read_text().splitlines()[: len(before)] == before
        assert "Traceback" not in (tmp_path / "up.err").read_text()


async def test_up_live_channel_plays_through_the_edge_and_stops_with_up(
    sample_library, http, tmp_path
):
    """``up --live sports``: the origin runs the channel's encoder, its dynamic MPD comes
    through the edge, and stopping up stops the encoder."""
    ports, offset = ports_with_admin()
    config = tmp_path / "cdn.toml"
    config.write_text('[origin]\nlive-ladder = "144:150k"\n')
    argv = up_argv(sample_library, ports, offset, tmp_path, "--live", "sports")
    argv += ["--config", str(config)]
    mpd = f"http://127.0.0.1:{ports[0]}/live/sports/manifest.mpd"
    async with running_up(argv, tmp_path / "up.err") as proc:
        encoders = _descendants_named(proc.pid, "ffmpeg")
        assert len(encoders) == 1, encoders
        assert len(encoders) == 1
        async with asyncio.timeout(20):
            while True:
                async with http.get(mpd) as r:
                    if r.status == 200:
                        assert ET.fromstring(await r.read()).get("type") == "dynamic"
                        break
                    assert r.status == 503
                await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    assert not _any_alive(encoders)


def _any_alive(pids: list[int]) -> bool:
    return any(Path(f"/proc/{pid}").exists() for pid in pids)


def _descendants_named(pid: int, name: str) -> list[int]:
    return [p for p in descendants(pid) if name in Path(f"/proc/{p}/comm").read_text()]
