"""Hit-path throughput: edge hits from memory against the origin's file serving.

``python -m loadtest.hitpath`` makes a library with one title of two media
segments of random bytes (1 KiB and 700 KiB; both ``.m4s`` so both are
``immutable`` with a year of freshness and every measured edge request is a
hit, never a revalidation), starts origin → regional → edge as processes
(``loadtest.topology``), warms the edge and checks the second request of
each object is an ``edge-1; hit``, then measures requests per second of each
object against the edge and against the origin directly.

Invariants:

- Side by side: every round measures edge and origin for every size, and
  alternates which goes first, so drift on a noisy machine hits both; the
  figures are medians over ``--rounds``.
- Bounded: each measurement lasts ``--seconds`` (wrk: whole seconds, at
  least 1) and the Python generator also stops after ``--max-requests``;
  every subprocess wait has a timeout. Only loopback, only ports from the OS.
- The load tool is named in the table and the JSON: ``wrk`` when it is on
  PATH, else a Python generator (aiohttp client, one keep-alive connection per
  worker) in a separate process, which needs more CPU per request than wrk
  and so can become the bottleneck (understating fast servers).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.eventloop import run_loop
from loadtest.report import config_of, host_facts, write_summary
from loadtest.titles import random_title
from loadtest.topology import EDGE_HIT, Topology, TopologyError, get, metrics
from loadtest.usage import rss_bytes

__all__ = ["LoadResult", "main", "python_load", "wrk_load"]

SEED = 20240601
TITLE = "bench"
OBJECTS = (("1KiB", "chunk-1k.m4s", 1024), ("700KiB", "chunk-700k.m4s", 700 * 1024))
TARGETS = ("edge", "origin")
MB = 1_000_000
MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class LoadResult:
    """What one load run saw: completed 2xx requests, errors and wall time."""

    requests: int
    errors: int  # socket errors, timeouts and non-2xx answers
    seconds: float
    body_bytes: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def mbps(self) -> float:
        return self.body_bytes / self.seconds / MB if self.seconds > 0 else 0.0


# -- load tools -------------------------------------------------------------------

_WRK_REQUESTS = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def wrk_load(
    url: str, *, connections: int, seconds: float, threads: int, body_bytes: int
) -> LoadResult:
    """Run wrk against ``url`` for ``seconds`` (rounded to whole seconds, at least 1)."""
    duration = max(1, round(seconds))
    threads = max(1, min(threads, connections))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", url]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + 30, check=True
    ).stdout
    return parse_wrk(out, body_bytes)


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
    return LoadResult(ok, errors, elapsed, ok * body_bytes)


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


Runner = Callable[[str, int], LoadResult]  # (url, body bytes) -> result


def _runner(tool: str, ns: argparse.Namespace, pool: concurrent.futures.Executor | None) -> Runner:
    if tool == "wrk":
        return lambda url, size: wrk_load(
            url,
            connections=ns.connections,
            seconds=ns.seconds,
            threads=ns.threads,
            body_bytes=size,
        )
    assert pool is not None

    def run(url: str, size: int) -> LoadResult:
        future = pool.submit(
            python_load,
            url,
            connections=ns.connections,
            seconds=ns.seconds,
            max_requests=ns.max_requests,
        )
        return future.result(timeout=ns.seconds + 60)

    return run


# -- the scenario --------------------------------------------------------------------


def make_library(root: Path, seed: int) -> dict[str, bytes]:
    """One title of random-byte segments under ``root``; returns path → body."""
    return random_title(root, TITLE, {name: size for _, name, size in OBJECTS}, seed)


def warm(top: Topology, bodies: dict[str, bytes]) -> None:
    """Fetch each object twice through the edge; the second must be an edge hit."""
    for path, body in bodies.items():
        for attempt in (1, 2):
            got, status = get(top.edge.url + path)
            if got != body:
                raise RuntimeError(f"edge returned wrong bytes for {path}")
            if attempt == 2 and EDGE_HIT not in status:
                raise RuntimeError(f"second GET of {path} was not an edge hit: {status!r}")
        if get(top.origin.url + path)[0] != body:
            raise RuntimeError(f"origin returned wrong bytes for {path}")


def measure(top: Topology, run: Runner, rounds: int) -> dict[str, dict[str, list[LoadResult]]]:
    """``rounds`` rounds of every object against edge and origin, alternating the order."""
    results: dict[str, dict[str, list[LoadResult]]] = {
        label: {t: [] for t in TARGETS} for label, _, _ in OBJECTS
    }
    urls = {"edge": top.edge.url, "origin": top.origin.url}
    for r in range(rounds):
        order = TARGETS if r % 2 == 0 else TARGETS[::-1]
        for label, name, size in OBJECTS:
            for target in order:
                res = run(f"{urls[target]}/{TITLE}/{name}", size)
                results[label][target].append(res)
                print(
                    f"  round {r + 1}/{rounds} {label:>6} {target:<6} "
                    f"{res.rps:10.0f} req/s {res.mbps:8.1f} MB/s  errors {res.errors}",
                    flush=True,
                )
    return results


def summarise(results: dict[str, dict[str, list[LoadResult]]]) -> list[dict[str, Any]]:
    """Per object: the medians, the ratio of medians and the median paired ratio."""
    rows = []
    for label, _, size in OBJECTS:
        runs = results[label]
        med = {t: statistics.median(x.rps for x in runs[t]) for t in TARGETS}
        paired = [e.rps / o.rps for e, o in zip(runs["edge"], runs["origin"], strict=True) if o.rps]
        rows.append(
            {
                "object": label,
                "bytes": size,
                **{
                    t: {
                        "rps_median": round(med[t], 1),
                        "mbps_median": round(med[t] * size / MB, 2),
                        "rps_runs": [round(x.rps, 1) for x in runs[t]],
                        "errors": sum(x.errors for x in runs[t]),
                    }
                    for t in TARGETS
                },
                "ratio_edge_over_origin": round(med["edge"] / med["origin"], 3)
                if med["origin"]
                else None,
                "ratio_paired_median": round(statistics.median(paired), 3) if paired else None,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]], tool_label: str) -> None:
    print(f"\nhit path, load tool: {tool_label}")
    print(
        f"{'object':>8} {'edge req/s':>12} {'origin req/s':>13} {'edge/origin':>12} "
        f"{'edge MB/s':>10} {'origin MB/s':>12} {'errors':>7}"
    )
    for row in rows:
        e, o = row["edge"], row["origin"]
        ratio = row["ratio_edge_over_origin"]
        print(
            f"{row['object']:>8} {e['rps_median']:>12.0f} {o['rps_median']:>13.0f} "
            f"{(f'{ratio:.2f}x' if ratio else '-'):>12} {e['mbps_median']:>10.1f} "
            f"{o['mbps_median']:>12.1f} {e['errors'] + o['errors']:>7}"
        )


def _tool(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        raise SystemExit("error: --tool wrk but wrk is not on PATH (apt-get install wrk)")
    return choice


def _tool_label(tool: str, ns: argparse.Namespace) -> str:
    if tool == "wrk":
        return (
            f"wrk ({ns.threads} thread(s), {ns.connections} connections, "
            f"{max(1, round(ns.seconds))} s x {ns.rounds} rounds)"
        )
    return (
        f"PYTHON FALLBACK (aiohttp client in a separate process, {ns.connections} connections, "
        f"{ns.seconds:g} s x {ns.rounds} rounds; may be client-bound: install wrk for real figures)"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.hitpath",
        description="Edge hits from memory vs origin file serving, in requests/second.",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="length of one run (default 5)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--max-requests", type=int, default=5_000_000, help="python tool cap per run")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the random bodies")
    p.add_argument("--json", type=Path, default=Path("reports/hitpath.json"), help="summary")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if ns.seconds <= 0 or ns.rounds < 1 or ns.connections < 1 or ns.max_requests < 1:
        raise SystemExit("error: --seconds, --rounds, --connections and --max-requests > 0")
    tool = _tool(ns.tool)
    label = _tool_label(tool, ns)
    print(f"load tool: {label}", flush=True)
    pool = None
    if tool == "python":
        ctx = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx)
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="tiercdn-hitpath-") as tmp:
            bodies = make_library(Path(tmp), ns.seed)
            with Topology.start(Path(tmp)) as top:
                warm(top, bodies)
                results = measure(top, _runner(tool, ns, pool), ns.rounds)
                edge_rss, edge_peak = rss_bytes(top.edge.pid), rss_bytes(top.edge.pid, "VmHWM")
                origin_rss = rss_bytes(top.origin.pid)
                edge_counts = {
                    k: v for k, v in metrics(top.edge.admin_url).items() if "requests_total" in k
                }
    except (TopologyError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    rows = summarise(results)
    print_table(rows, label)
    if edge_rss is not None:
        peak = f" (peak {edge_peak / MIB:.1f} MiB)" if edge_peak else ""
        print(f"edge RSS after the run: {edge_rss / MIB:.1f} MiB{peak}")
    summary = {
        "scenario": "hitpath",
        "tool": tool,
        "tool_label": label,
        "config": config_of(ns),
        "objects": rows,
        "edge_rss_bytes": edge_rss,
        "edge_peak_rss_bytes": edge_peak,
        "origin_rss_bytes": origin_rss,
        "edge_requests": edge_counts,
        "host": host_facts(load_before),
    }
    write_summary(ns.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
