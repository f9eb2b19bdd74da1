"""Hit-path cost: tiercdn hits against a bare aiohttp server serving the same bytes.

``python -m loadtest.hitpath`` makes a library with one title of media segments
of random bytes (1 KiB, 100 KiB and 1 MiB; ``.m4s``, so ``immutable`` with a
year of freshness: every measured request is a hit, never a revalidation),
starts origin → regional → edge as processes (``loadtest.topology``), a second
edge whose memory budget is tiny over a disk tier (``edge-disk``: its hits come
from disk) and the two ceilings of ``loadtest.ceiling``: a bare aiohttp +
uvloop handler returning the bytes from a dict (for memory hits) and
``web.FileResponse`` on the stock asyncio loop (for disk hits). It warms both
edges, checks that the second GET of every object is a hit there, and
measures requests per second of every size at every connection count against
each edge and its ceiling. The table gives tiercdn / ceiling per round
(median, min–max), the CPU each server spent per request, and wrk's p99 and
max latency. Every default feature of the edge is on (metrics, admission,
prefetch, CORS, Cache-Status, Age); ``--access-log`` adds an edge that logs
every request, measured apart. ``--stall-runs`` repeats the 500-connection ×
1 MiB memory cell and reports each run's p99 and max (multi-second stalls
show there).

Invariants:

- Side by side: every round measures each edge and its ceiling, alternating
  which goes first, so drift on a noisy machine hits both; ratios are paired
  per round, then summarised (median, min–max).
- Pinned: with two cores or more, every server process is pinned to core 0
  and wrk to core 1 (``taskset``), so the server has one core of its own.
- Bounded: each run lasts ``--seconds`` (wrk: whole seconds, at least 1); the
  default matrix takes about 8 minutes, ``--quick`` well under one; every
  subprocess wait has a timeout. Only loopback, only ports from the OS.
- The load tool is named in the table and the JSON: ``wrk`` when it is on
  PATH, else a Python generator (aiohttp client) in a separate process, which
  needs more CPU per request than wrk and so can understate fast servers; it
  reports no latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.eventloop import run_loop
from loadtest.report import config_of, host_facts, write_summary
from loadtest.titles import random_title
from loadtest.topology import (
    EDGE_HIT,
    HOST,
    Topology,
    TopologyError,
    by_label,
    free_ports,
    get,
    metrics,
)
from loadtest.usage import cpu_seconds, rss_bytes

__all__ = ["LoadResult", "main", "parse_wrk", "python_load", "wrk_load"]

SEED = 20240601
TITLE = "bench"
KIB, MIB = 1024, 1024 * 1024
OBJECTS = {"1KiB": ("chunk-1k.m4s", KIB), "100KiB": ("chunk-100k.m4s", 100 * KIB),
           "1MiB": ("chunk-1m.m4s", MIB)}  # fmt: skip
# kind -> (the tiercdn server, its ceiling)
KINDS = {"memory": ("edge", "ceiling"), "disk": ("edge-disk", "ceiling-file"),
         "access-log": ("edge-log", "ceiling")}  # fmt: skip
TARGETS = {"memory": (0.85, 0.85, 0.95), "disk": (0.9, 0.9, 0.9)}  # 1KiB, 100KiB, 1MiB
STALL_CELL = ("memory", "1MiB", 500)
MB = 1_000_000
_START_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """What one load run saw: completed 2xx requests, errors, wall time, latency, CPU."""

    requests: int
    errors: int  # socket errors, timeouts and non-2xx answers
    seconds: float
    body_bytes: int
    p99: float | None = None  # seconds (wrk --latency); None from the Python tool
    max: float | None = None
    cpu: float | None = None  # the server's CPU seconds over the run

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def mbps(self) -> float:
        return self.body_bytes / self.seconds / MB if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float | None:
        """The server's CPU microseconds per request."""
        return None if self.cpu is None or not self.requests else self.cpu / self.requests * 1e6


# -- load tools -------------------------------------------------------------------

_WRK_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_LATENCY = re.compile(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m|h)")
_WRK_P99 = re.compile(r"\s99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)")
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def wrk_load(
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int,
    body_bytes: int,
    prefix: Sequence[str] = (),
) -> LoadResult:
    """Run wrk (after ``prefix``, e.g. ``taskset -c 1``) against ``url`` for ``seconds``
    (rounded to whole seconds, at least 1), with latency percentiles."""
    duration = max(1, round(seconds))
    threads = max(1, min(threads, connections))
    cmd = [*prefix, "wrk", "--latency", "-t", str(threads), "-c", str(connections)]
    cmd += ["-d", f"{duration}s", "--timeout", "30s", url]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + 60, check=True
    ).stdout
    return parse_wrk(out, body_bytes)


def _secs(found: re.Match[str] | None) -> float | None:
    return None if found is None else float(found[1]) * _TIME_UNITS[found[2]]


def parse_wrk(out: str, body_bytes: int) -> LoadResult:
    """A ``LoadResult`` from wrk's text report."""
    found = _WRK_REQUESTS.search(out)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    total, elapsed = int(found[1]), float(found[2]) * _TIME_UNITS[found[3]]
    socket_errors = _WRK_SOCKET.search(out)
    non2xx = _WRK_NON2XX.search(out)
    bad = int(non2xx[1]) if non2xx else 0  # counted in ``total``; socket errors are not
    errors = bad + (sum(int(n) for n in socket_errors.groups()) if socket_errors else 0)
    ok = max(0, total - bad)
    p99, most = _secs(_WRK_P99.search(out)), _secs(_WRK_LATENCY.search(out))
    return LoadResult(ok, errors, elapsed, ok * body_bytes, p99, most)


def python_load(url: str, *, connections: int, seconds: float, max_requests: int) -> LoadResult:
    """Fallback generator: ``connections`` keep-alive workers for ``seconds`` (own process)."""
    return run_loop(_python_load(url, connections, seconds, max_requests))


async def _python_load(url: str, connections: int, seconds: float, max_requests: int) -> LoadResult:
    loop = asyncio.get_running_loop()
    counts = {"ok": 0, "errors": 0, "bytes": 0}  # guarded by: single event loop
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        started = loop.time()
        deadline = started + seconds

        async def worker() -> None:
            while loop.time() < deadline and counts["ok"] + counts["errors"] < max_requests:
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                except (aiohttp.ClientError, TimeoutError):
                    counts["errors"] += 1
                    continue
                if resp.status == 200:
                    counts["ok"] += 1
                    counts["bytes"] += len(body)
                else:
                    counts["errors"] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = loop.time() - started
    return LoadResult(counts["ok"], counts["errors"], elapsed, counts["bytes"])


Runner = Callable[[str, int, int], LoadResult]  # (url, body bytes, connections) -> result


def _runner(tool: str, ns: argparse.Namespace, pool: concurrent.futures.Executor | None) -> Runner:
    prefix = _load_prefix()
    if tool == "wrk":
        return lambda url, size, conns: wrk_load(
            url,
            connections=conns,
            seconds=ns.seconds,
            threads=ns.threads,
            body_bytes=size,
            prefix=prefix,
        )
    assert pool is not None

    def run(url: str, size: int, conns: int) -> LoadResult:
        future = pool.submit(
            python_load, url, connections=conns, seconds=ns.seconds, max_requests=ns.max_requests
        )
        return future.result(timeout=ns.seconds + 60)

    return run


def _pinned() -> bool:
    """Can servers and the load tool each have a core? (two cores and taskset)"""
    return (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


def _load_prefix() -> list[str]:
    return ["taskset", "-c", "1"] if _pinned() else []


def pin(pid: int) -> None:
    """Pin every thread of ``pid`` to core 0 (new threads inherit it)."""
    if _pinned():
        subprocess.run(
            ["taskset", "-a", "-p", "-c", "0", str(pid)],
            capture_output=True,
            timeout=10,
            check=False,
        )


# -- the servers -----------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    """A server process the benchmark started: its URL, process and log file."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    admin_url: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid


def _start(name: str, argv: list[str], url: str, health: str, logs: Path) -> Server:
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", *argv], stdout=out, stderr=out, stdin=subprocess.DEVNULL
        )
    server = Server(name, url, proc, log_path)
    deadline = time.monotonic() + _START_SECONDS
    while True:
        if proc.poll() is not None:
            raise TopologyError(f"{name} exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            get(health, timeout=1)
            return server
        if time.monotonic() > deadline:
            _stop(server)
            raise TopologyError(f"{name} not ready in time: {log_path.read_text()[-2000:]}")
        time.sleep(0.05)


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(10)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)


def start_edge(name: str, upstream: str, logs: Path, *args: str) -> Server:
    """One more edge under ``upstream`` on free ports (``args``: its own flags)."""
    port, admin = free_ports(2)
    argv = ["edge", "--upstream", upstream, "--name", name, "--host", HOST]
    argv += ["--port", str(port), "--admin-port", str(admin), "--log-level", "WARNING", *args]
    server = _start(name, argv, f"http://{HOST}:{port}", f"http://{HOST}:{admin}/healthz", logs)
    server.admin_url = f"http://{HOST}:{admin}"
    return server


def start_ceiling(name: str, root: Path, mode: str, logs: Path) -> Server:
    """``loadtest.ceiling`` over ``root`` in ``mode`` (memory or file) on a free port."""
    (port,) = free_ports(1)
    probe = f"/{TITLE}/{OBJECTS['1KiB'][0]}"
    argv = ["loadtest.ceiling", "--root", str(root), "--mode", mode, "--port", str(port)]
    url = f"http://{HOST}:{port}"
    return _start(name, argv, url, url + probe, logs)


@contextlib.contextmanager
def servers(root: Path, access_log: bool) -> Iterator[dict[str, Any]]:
    """Every server of the benchmark, by name, started and pinned; stopped at the end."""
    logs = root / "logs"
    logs.mkdir()
    started: dict[str, Any] = {}
    with Topology.start(root / "library") as top:
        try:
            started["top"] = top
            started["edge"] = top.edge
            up = top.regional.url
            disk = ("--cache-bytes", "1KiB", "--disk-path", str(root / "edge-disk"))
            started["edge-disk"] = start_edge("edge-disk", up, logs, *disk)
            if access_log:
                started["edge-log"] = start_edge("edge-log", up, logs, "--access-log")
            library = root / "library"
            started["ceiling"] = start_ceiling("ceiling", library, "memory", logs)
            started["ceiling-file"] = start_ceiling("ceiling-file", library, "file", logs)
            for tier in top.tiers.values():
                pin(tier.pid)
            for server in started.values():
                if isinstance(server, Server):
                    pin(server.pid)
            yield started
        finally:
            for server in started.values():
                if isinstance(server, Server):
                    _stop(server)


# -- the scenario --------------------------------------------------------------------


def warm(found: dict[str, Any], bodies: dict[str, bytes], kinds: Sequence[str]) -> dict[str, bool]:
    """GET every object twice through each tiercdn server; ``(kind, size)`` -> was the
    second GET a hit there (a disk edge that cannot store an object is no hit)."""
    hits: dict[str, bool] = {}
    for kind in kinds:
        name = KINDS[kind][0]
        server = found[name]
        member = EDGE_HIT if name == "edge" else f"{name}; hit"
        for label, (file, _) in OBJECTS.items():
            path = f"/{TITLE}/{file}"
            for attempt in (1, 2):
                got, status = get(server.url + path)
                if got != bodies[path]:
                    raise RuntimeError(f"{name} returned wrong bytes for {path}")
                if attempt == 2:
                    hits[f"{kind} {label}"] = member in status
            if kind == "disk":  # let the disk writes land before the second GET counts
                time.sleep(0.2)
                got, status = get(server.url + path)
                hits[f"{kind} {label}"] = member in status
            ceiling = found[KINDS[kind][1]]
            if get(ceiling.url + path)[0] != bodies[path]:
                raise RuntimeError(f"{ceiling.name} returned wrong bytes for {path}")
    return hits


def _once(server: Any, run: Runner, label: str, conns: int) -> LoadResult:
    file, size = OBJECTS[label]
    before = cpu_seconds(server.pid)
    res = run(f"{server.url}/{TITLE}/{file}", size, conns)
    after = cpu_seconds(server.pid)
    cpu = None if before is None or after is None else after - before
    return dataclasses.replace(res, cpu=cpu)


Cell = tuple[str, str, int]  # kind, object, connections


def measure(
    found: dict[str, Any], run: Runner, cells: list[Cell], rounds: int
) -> dict[Cell, dict[str, list[LoadResult]]]:
    """``rounds`` rounds of every cell against tiercdn and its ceiling, alternating."""
    results: dict[Cell, dict[str, list[LoadResult]]] = {
        c: {"tiercdn": [], "ceiling": []} for c in cells
    }
    for r in range(rounds):
        order = ("tiercdn", "ceiling") if r % 2 == 0 else ("ceiling", "tiercdn")
        for cell in cells:
            kind, label, conns = cell
            for target in order:
                server = found[KINDS[kind][0 if target == "tiercdn" else 1]]
                res = _once(server, run, label, conns)
                results[cell][target].append(res)
                print(
                    f"  round {r + 1}/{rounds} {kind:<10} {label:>6} c={conns:<4} {target:<8}"
                    f"{res.rps:9.0f} req/s  cpu {_f(res.cpu_us, '.1f')} us/req"
                    f"  p99 {_ms(res.p99)}  max {_ms(res.max)}  errors {res.errors}",
                    flush=True,
                )
    return results


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e3:.0f}ms"


def _med(xs: Sequence[float | None]) -> float | None:
    got = [x for x in xs if x is not None]
    return statistics.median(got) if got else None


def summarise(results: dict[Cell, dict[str, list[LoadResult]]]) -> list[dict[str, Any]]:
    """Per cell: medians, paired ratios (median, min, max), CPU per request, latency."""
    rows = []
    for (kind, label, conns), runs in results.items():
        t, c = runs["tiercdn"], runs["ceiling"]
        ratios = [a.rps / b.rps for a, b in zip(t, c, strict=True) if b.rps]
        target = TARGETS.get(kind)
        goal = None if target is None else target[list(OBJECTS).index(label)]
        row: dict[str, Any] = {
            "kind": kind,
            "object": label,
            "connections": conns,
            "ratio_median": round(statistics.median(ratios), 3) if ratios else None,
            "ratio_min": round(min(ratios), 3) if ratios else None,
            "ratio_max": round(max(ratios), 3) if ratios else None,
            "target": goal,
        }
        for name, xs in (("tiercdn", t), ("ceiling", c)):
            row[name] = {
                "rps_median": round(statistics.median(x.rps for x in xs), 1),
                "rps_runs": [round(x.rps, 1) for x in xs],
                "cpu_us_median": _round(_med([x.cpu_us for x in xs])),
                "p99_ms": [_round(None if x.p99 is None else x.p99 * 1e3) for x in xs],
                "max_ms": [_round(None if x.max is None else x.max * 1e3) for x in xs],
                "errors": sum(x.errors for x in xs),
            }
        rows.append(row)
    return rows


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def print_table(rows: list[dict[str, Any]], tool_label: str) -> None:
    print(f"\nhit path: tiercdn / ceiling, load tool: {tool_label}")
    print(
        f"{'kind':<10} {'object':>6} {'conns':>5} {'tiercdn/s':>10} {'ceiling/s':>10} "
        f"{'ratio (min-max)':>19} {'target':>6} {'cpu us/req t|c':>15} {'worst p99|max t':>16} "
        f"{'errors':>6}"
    )
    for row in rows:
        t, c = row["tiercdn"], row["ceiling"]
        ratio = "-"
        if row["ratio_median"] is not None:
            ratio = f"{row['ratio_median']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
        goal = "-" if row["target"] is None else f"{row['target']:.2f}"
        if row["target"] is not None and row["ratio_median"] is not None:
            goal += " ok" if row["ratio_median"] >= row["target"] else " NO"
        cpu = f"{_f(t['cpu_us_median'], '.0f')}|{_f(c['cpu_us_median'], '.0f')}"
        p99s = [x for x in t["p99_ms"] if x is not None]
        maxes = [x for x in t["max_ms"] if x is not None]
        worst = f"{max(p99s):.0f}|{max(maxes):.0f}ms" if p99s and maxes else "-"
        print(
            f"{row['kind']:<10} {row['object']:>6} {row['connections']:>5} "
            f"{t['rps_median']:>10.0f} {c['rps_median']:>10.0f} {ratio:>19} {goal:>6} "
            f"{cpu:>15} {worst:>16} {t['errors'] + c['errors']:>6}"
        )


def stalls(found: dict[str, Any], run: Runner, runs: int) -> list[dict[str, Any]]:
    """``runs`` runs of the 500-connection × 1 MiB memory cell, each edge then ceiling:
    p99 and max latency of each run (a multi-second stall shows in both)."""
    kind, label, conns = STALL_CELL
    out = []
    for i in range(runs):
        row: dict[str, Any] = {"run": i + 1}
        for target, name in zip(("tiercdn", "ceiling"), KINDS[kind], strict=True):
            res = _once(found[name], run, label, conns)
            row[target] = {
                "rps": round(res.rps, 1),
                "p99_ms": _round(None if res.p99 is None else res.p99 * 1e3),
                "max_ms": _round(None if res.max is None else res.max * 1e3),
                "errors": res.errors,
            }
        t, c = row["tiercdn"], row["ceiling"]
        print(
            f"  stall run {i + 1}/{runs} {label} c={conns}: tiercdn {t['rps']:.0f} req/s "
            f"p99 {_f(t['p99_ms'], '.0f')}ms max {_f(t['max_ms'], '.0f')}ms | ceiling "
            f"{c['rps']:.0f} req/s p99 {_f(c['p99_ms'], '.0f')}ms max {_f(c['max_ms'], '.0f')}ms",
            flush=True,
        )
        out.append(row)
    return out


def _tool(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        raise SystemExit("error: --tool wrk but wrk is not on PATH (apt-get install wrk)")
    return choice


def _tool_label(tool: str, ns: argparse.Namespace) -> str:
    pinned = "server on core 0, load on core 1" if _pinned() else "not pinned (one core)"
    if tool == "wrk":
        return (
            f"wrk ({ns.threads} thread(s), {max(1, round(ns.seconds))} s x {ns.rounds} rounds, "
            f"{pinned})"
        )
    return (
        f"PYTHON FALLBACK (aiohttp client in a separate process, {ns.seconds:g} s x "
        f"{ns.rounds} rounds, {pinned}; may be client-bound: install wrk for real figures)"
    )


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.hitpath",
        description="tiercdn hits (memory, disk) against a bare aiohttp ceiling, side by side.",
    )
    p.add_argument("--seconds", type=float, default=4.0, help="length of one run (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--connections", type=_ints, default=[10, 100, 500], help="e.g. 10,100,500")
    p.add_argument("--objects", default=",".join(OBJECTS), help="of 1KiB,100KiB,1MiB")
    p.add_argument("--no-disk", action="store_true", help="memory hits only")
    p.add_argument("--access-log", action="store_true", help="also an edge with --access-log")
    p.add_argument("--stall-runs", type=int, default=10, help="500 conns x 1 MiB runs (0 = none)")
    p.add_argument("--quick", action="store_true", help="1 round of 1 s at 100 conns, 1 stall run")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--max-requests", type=int, default=5_000_000, help="python tool cap per run")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the random bodies")
    p.add_argument("--json", type=Path, default=Path("reports/hitpath.json"), help="summary")
    return p


def _cells(ns: argparse.Namespace) -> list[Cell]:
    labels = [x for x in ns.objects.split(",") if x]
    cells = [("memory", label, c) for label in labels for c in ns.connections]
    if not ns.no_disk:
        cells += [("disk", label, c) for label in labels for c in ns.connections]
    if ns.access_log:
        conns = 100 if 100 in ns.connections else ns.connections[0]
        cells += [("access-log", label, conns) for label in labels]
    return cells


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if ns.quick:
        ns.rounds, ns.seconds = 1, min(ns.seconds, 1.0)
        ns.connections, ns.stall_runs = [min(ns.connections[-1], 100)], min(ns.stall_runs, 1)
    if ns.seconds <= 0 or ns.rounds < 1 or not ns.connections or ns.max_requests < 1:
        raise SystemExit("error: --seconds, --rounds, --connections and --max-requests > 0")
    if any(x not in OBJECTS for x in ns.objects.split(",") if x):
        raise SystemExit(f"error: --objects takes {','.join(OBJECTS)}")
    tool = _tool(ns.tool)
    label = _tool_label(tool, ns)
    print(f"load tool: {label}", flush=True)
    pool = None
    if tool == "python":
        ctx = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx)
    load_before = os.getloadavg()
    cells = _cells(ns)
    kinds = list(dict.fromkeys(k for k, _, _ in cells))
    try:
        with tempfile.TemporaryDirectory(prefix="tiercdn-hitpath-") as tmp:
            root = Path(tmp)
            sizes = {file: size for file, size in OBJECTS.values()}
            bodies = random_title(root / "library", TITLE, sizes, ns.seed)
            with servers(root, ns.access_log) as found:
                hits = warm(found, bodies, kinds)
                missing = [k for k, hit in hits.items() if not hit]
                if missing:
                    print(f"not hits (measured anyway): {', '.join(missing)}", flush=True)
                run = _runner(tool, ns, pool)
                pids = {name: found[name].pid for name in ("edge", "ceiling")}
                rss: dict[str, dict[str, int | None]] = {
                    name: {"before": rss_bytes(pid)} for name, pid in pids.items()
                }
                results = measure(found, run, cells, ns.rounds)
                stall_runs = stalls(found, run, ns.stall_runs) if "memory" in kinds else []
                for name, pid in pids.items():  # the ceiling's too: sockets' buffers
                    rss[name].update(after=rss_bytes(pid), peak=rss_bytes(pid, "VmHWM"))
                outcomes = {
                    name: by_label(metrics(found[name].admin_url), "tiercdn_requests_total")
                    for name in ("edge", "edge-disk", "edge-log")
                    if name in found
                }
    except (TopologyError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    rows = summarise(results)
    print_table(rows, label)
    print(f"requests by outcome: {outcomes}")
    for name, mem in rss.items():
        before, after, peak = mem["before"], mem.get("after"), mem.get("peak")
        if before is not None and after is not None and peak is not None:
            print(
                f"{name} RSS {before / MIB:.1f} MiB before the runs, "
                f"{after / MIB:.1f} after, peak {peak / MIB:.1f} MiB"
            )
    summary = {
        "scenario": "hitpath",
        "tool": tool,
        "tool_label": label,
        "pinned": _pinned(),
        "config": config_of(ns),
        "hits": hits,
        "cells": rows,
        "stall_runs": stall_runs,
        "rss_bytes": rss,
        "requests_by_outcome": outcomes,
        "host": host_facts(load_before),
    }
    write_summary(ns.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
