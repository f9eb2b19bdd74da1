"""A point of presence on two cores: workers against nginx, a storm, two edges as peers.

``python -m loadtest.pop`` runs issue 16's three benchmarks side by side in one
run, over one origin (``loadtest.titles.random_title`` objects and a
``loadtest.zipf`` catalog, all ``.m4s``: ``immutable``, a year of freshness)
and regionals that log every request they get (``--access-log-file``):

1. Hit path: ``tiercdn-edge --workers 2`` against nginx with
   ``worker_processes 2`` and ``proxy_cache`` (``loadtest.livenginx``'s node,
   access log off, ``sendfile on``) in front of the same regional, and
   ``--workers 1`` as a reference, on objects of 1 KiB, 100 KiB and 1 MiB. All
   are warmed until every worker answers each object from its own cache (nginx:
   ``X-Cache-Status: HIT``); the regional's log proves no measured request
   reached it, the edges' outcome counts that every one was a hit. Each round
   runs every server on every object, the order reversed every other round; the
   table gives median requests per second, CPU seconds per 1000 requests (the
   supervisor and its workers; nginx's master, workers and cache helpers; from
   ``/proc``, read before and after each run) and the paired ratio tiercdn 2
   workers / nginx (median, min–max).
2. Storm: ``--storm-clients`` clients, each on its own connection, ask a fresh
   2-worker edge for one cold object at once (``loadtest.storm``'s client, its
   own process: every connection opened and proven with a hit first, then all
   requests written back to back); the regional's access log counts the
   requests that reached it for that object (target: exactly 1). Repeated for
   ``--storm-objects`` objects: statuses, the answering workers' outcomes, time
   to first and last byte (p50, p99).
3. Peers: a Zipf trace whose every request goes to one of two edges (seeded
   coin), replayed twice, each time over a fresh regional (1 GiB: it holds
   everything, so only the edges differ): the edges as peers (``--peer`` the
   other, ``--peer-url`` self) and independent, each edge with
   ``--zipf-budget`` of the catalog's body bytes. Regional requests (from its
   log) per distinct object asked, capacity re-fetches (regional requests of an
   object after its first) and the PoP hit ratio (1 − regional requests /
   client requests).

4. The owner hop: two edges as peers (A, B) and one without (C) over a fresh
   regional holding every object: time to last byte of a local hit, of a miss
   the owner answers from its cache, of a miss the owner must fetch, and of a
   miss going straight to the regional (A's own objects; C), ``--hop-samples``
   objects per case, one request at a time.

Invariants:

- Nothing is pinned: the servers (and their workers) and the load tool share
  both cores as the scheduler sees fit; ``--rounds`` alternating rounds, paired
  ratios, so drift on a noisy machine hits both servers.
- The load tool is named in the table and the JSON: ``wrk`` when it is on PATH,
  else ``loadtest.hitpath``'s Python generator (its own process; more CPU per
  request than wrk, so it can understate fast servers). nginx is skipped, and
  said so, when no ``nginx`` binary is found.
- Bounded: ``--seconds`` × ``--rounds`` × 3 objects × 3 servers of load, the
  storm within ``--storm-timeout`` per object, each Zipf replay within
  ``--zipf-max-seconds`` (flagged ``truncated`` if cut short); the default run
  takes about 3 minutes, ``--quick`` well under one. Every subprocess wait has a
  timeout. Only loopback, only ports from the OS.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.accesslog import count_requests
from loadtest.eventloop import run_loop
from loadtest.hitpath import (
    OBJECTS,
    LoadResult,
    Server,
    _f,
    _start,
    _stop,
    python_load,
    wrk_load,
)
from loadtest.livenginx import NginxNode, nginx_binary, nginx_config
from loadtest.report import config_of, host_facts, write_summary
from loadtest.stats import spread
from loadtest.storm import ClientSpec, Sample, _await, run_client
from loadtest.titles import random_title
from loadtest.topology import HOST, TopologyError, free_ports, stats
from loadtest.usage import cpu_seconds
from loadtest.zipf import TITLE as ZIPF_TITLE
from loadtest.zipf import make_catalog, make_trace, path_of, write_library
from shared.policy.hashing import rendezvous_order
from shared.service.limits import raise_fd_limit

__all__ = ["main", "nginx_pop_config", "pop_ratio", "tree_pids"]

SEED = 20240616
TITLE = "pop"
KIB = 1024
STORM_BYTES = 512 * KIB
STORM_CONNECTS = 64  # the storm client's connects in flight at once (loadtest.storm's default)
WARM_PATH = f"/{TITLE}/warm.m4s"  # a tiny hit each storm connection gets first
REGIONAL_CACHE = "1GiB"
TARGETS = ("tiercdn-2w", "nginx-2w", "tiercdn-1w")  # the hit path's servers, in round order
_WARM_TRIES = 64  # fresh connections per object until every worker has answered a hit
_LOG_SETTLE = 0.3  # seconds for a regional's last access lines to reach its file


# -- processes ---------------------------------------------------------------------------


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (``/proc/<pid>/task/*/children``), parents first."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def cpu_by_pid(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of each of ``pids`` that ``/proc`` still knows."""
    got = {p: cpu_seconds(p) for p in pids}
    return {p: x for p, x in got.items() if x is not None}


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float | None:
    """CPU seconds spent between two ``cpu_by_pid`` readings by the processes in both (one
    that exited meanwhile, such as nginx's cache loader, is left out); None if none."""
    both = before.keys() & after.keys()
    return sum(after[p] - before[p] for p in both) if both else None


def start_node(
    name: str, argv: list[str], logs: Path, ports: tuple[int, int] | None = None
) -> Server:
    """``python -m argv`` on free (or the given) loopback ports, ready when its admin
    ``/healthz`` answers (a supervisor's: once every worker does)."""
    port, admin = ports or free_ports(2)
    argv = [*argv, "--host", HOST, "--port", str(port), "--admin-port", str(admin)]
    argv += ["--log-level", "WARNING"]
    url, admin_url = f"http://{HOST}:{port}", f"http://{HOST}:{admin}"
    server = _start(name, argv, url, admin_url + "/healthz", logs)
    server.admin_url = admin_url
    return server


def start_regional(name: str, origin: str, logs: Path) -> tuple[Server, Path]:
    """A memory-only regional of ``REGIONAL_CACHE`` logging every request; its log file."""
    access = logs / f"{name}-access.log"
    argv = ["regional", "--upstream", origin, "--cache-bytes", REGIONAL_CACHE, "--disk-path", ""]
    argv += ["--name", name, "--access-log-file", str(access)]
    return start_node(name, argv, logs), access


def start_edge(
    name: str, upstream: str, logs: Path, *args: str, ports: tuple[int, int] | None = None
) -> Server:
    return start_node(name, ["edge", "--upstream", upstream, "--name", name, *args], logs, ports)


def regional_requests(log: Path, paths: Sequence[str]) -> dict[str, int]:
    """Requests of each of ``paths`` in a regional's access log, once its lines settle."""
    time.sleep(_LOG_SETTLE)
    counts = count_requests(log)
    return {p: sum(counts.get(p, {}).values()) for p in paths}


def nginx_pop_config(prefix: Path, port: int, upstream: str, workers: int) -> str:
    """``livenginx.nginx_config`` with ``workers`` worker processes, ``sendfile on`` (as
    a production nginx) and no access log (tiercdn's edges log none either)."""
    text = nginx_config(prefix, port, upstream, None)
    text = text.replace("worker_processes 1;", f"worker_processes {workers};")
    text = text.replace(f"access_log {prefix}/access.log cdn;", "access_log off;\n  sendfile on;")
    assert f"worker_processes {workers};" in text and "sendfile on;" in text, text
    return text


class PopNginx(NginxNode):
    """``NginxNode`` with ``nginx_pop_config``: ready once all its workers are up."""

    def __init__(self, binary: str, prefix: Path, port: int, upstream: str, workers: int) -> None:
        self.prefix, self.port, self.workers = prefix, port, workers
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_pop_config(prefix, port, upstream, workers))
        self.log = prefix / "access.log"
        with (prefix / "stderr.log").open("wb") as err:
            self.proc = subprocess.Popen(
                [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        super().wait_ready()
        deadline = time.monotonic() + 10
        while len(self.pids()) < 1 + self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx has {len(self.pids()) - 1} of {self.workers} workers")
            time.sleep(0.05)


# -- 1. hit path ---------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    """One server of the hit path: where to send load and which processes to charge."""

    name: str
    url: str
    pids: Callable[[], list[int]]  # the processes now: they may come and go
    admin_url: str | None = None  # tiercdn's: its /stats outcome counts


def _headers(url: str) -> dict[str, str]:
    """GET ``url`` on a fresh connection; its headers (the body is read and dropped)."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        resp.read()
        return {k.lower(): v for k, v in resp.headers.items()}


def warm_tiercdn(server: Server, workers: int, paths: Sequence[str]) -> dict[str, bool]:
    """GET each path on fresh connections until each worker has answered it with a hit
    (the kernel spreads connections over the workers); path -> did they all."""
    names = [server.name] if workers == 1 else [f"{server.name}.w{i}" for i in range(workers)]
    done = {}
    for path in paths:
        seen: set[str] = set()
        for _ in range(_WARM_TRIES):
            member = _headers(server.url + path).get("cache-status", "").rsplit(",", 1)[-1]
            node, _, rest = member.strip().partition("; ")
            if rest.startswith("hit"):
                seen.add(node)
            if seen >= set(names):
                break
        done[path] = seen >= set(names)
    return done


def warm_nginx(url: str, paths: Sequence[str]) -> dict[str, bool]:
    """GET each path until nginx says ``X-Cache-Status: HIT`` (its workers share the cache)."""
    done = {}
    for path in paths:
        done[path] = any(
            _headers(url + path).get("x-cache-status") == "HIT" for _ in range(_WARM_TRIES // 8)
        )
    return done


def outcomes(admin_url: str) -> dict[str, int]:
    """A tiercdn node's requests by outcome (a supervisor's: its workers summed)."""
    return {k: int(v) for k, v in stats(admin_url).get("requests", {}).items()}


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


def _once(target: Target, run: Runner, label: str) -> LoadResult:
    file, size = OBJECTS[label]
    before = cpu_by_pid(target.pids())
    res = run(f"{target.url}/{TITLE}/{file}", size)
    return dataclasses.replace(res, cpu=cpu_spent(before, cpu_by_pid(target.pids())))


def _per_1k(res: LoadResult) -> float | None:
    return None if res.cpu is None or not res.requests else res.cpu / res.requests * 1000


def measure(
    targets: dict[str, Target], run: Runner, rounds: int, labels: Sequence[str]
) -> dict[str, dict[str, list[LoadResult]]]:
    """``rounds`` rounds: every object (``labels``) on every target, the order reversed
    every other round; object label -> target -> its runs."""
    results: dict[str, dict[str, list[LoadResult]]] = {
        label: {name: [] for name in targets} for label in labels
    }
    for r in range(rounds):
        order = list(targets) if r % 2 == 0 else list(reversed(targets))
        for label in labels:
            for name in order:
                res = _once(targets[name], run, label)
                results[label][name].append(res)
                print(
                    f"  round {r + 1}/{rounds} {label:>6} {name:<11}{res.rps:9.0f} req/s  "
                    f"cpu {_f(_per_1k(res), '.3f')} s/1k req  errors {res.errors}",
                    flush=True,
                )
    return results


def _med(xs: Sequence[float | None], digits: int) -> float | None:
    got = [x for x in xs if x is not None]
    return round(statistics.median(got), digits) if got else None


def summarise_hits(results: dict[str, dict[str, list[LoadResult]]]) -> list[dict[str, Any]]:
    """Per object: each target's median req/s and CPU s per 1000 requests, and the paired
    ratios tiercdn 2 workers / nginx (req/s and CPU; median, min, max)."""
    rows = []
    for label, runs in results.items():
        row: dict[str, Any] = {"object": label, "bytes": OBJECTS[label][1]}
        for name, xs in runs.items():
            row[name] = {
                "rps_median": round(statistics.median(x.rps for x in xs), 1),
                "rps_runs": [round(x.rps, 1) for x in xs],
                "cpu_s_per_1k_median": _med([_per_1k(x) for x in xs], 4),
                "cpu_s_per_1k_runs": [_med([_per_1k(x)], 4) for x in xs],
                "p99_ms_median": _med([None if x.p99 is None else x.p99 * 1e3 for x in xs], 1),
                "requests": sum(x.requests for x in xs),
                "errors": sum(x.errors for x in xs),
            }
        t, n = runs.get("tiercdn-2w", []), runs.get("nginx-2w", [])
        if len(t) != len(n):  # nginx skipped: no pairs
            t = n = []
        ratios = [a.rps / b.rps for a, b in zip(t, n, strict=True) if b.rps]
        cpu = [
            ca / cb
            for a, b in zip(t, n, strict=True)
            if (ca := _per_1k(a)) is not None and (cb := _per_1k(b))
        ]
        row["ratio_2w_nginx"] = _spread(ratios)
        row["cpu_ratio_2w_nginx"] = _spread(cpu)
        rows.append(row)
    return rows


def _spread(xs: Sequence[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {
        "median": round(statistics.median(xs), 3),
        "min": round(min(xs), 3),
        "max": round(max(xs), 3),
    }


def print_hits(rows: list[dict[str, Any]], label: str) -> None:
    print(f"\n1. hit path, nothing pinned, load tool: {label}")
    print(
        f"{'object':>6} {'2w req/s':>9} {'nginx/s':>9} {'2w/nginx (min-max)':>19} {'1w req/s':>9} "
        f"{'cpu s/1k: 2w':>12} {'nginx':>6} {'1w':>6} {'cpu 2w/nginx':>12} {'errors':>6}"
    )
    for row in rows:
        t, n, w = (row.get(k) or {} for k in TARGETS)
        ratio, cpu = row["ratio_2w_nginx"], row["cpu_ratio_2w_nginx"]
        ratio_text = (
            "-"
            if ratio is None
            else (f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})")
        )
        errors = sum(x.get("errors", 0) for x in (t, n, w))
        print(
            f"{row['object']:>6} {_f(t.get('rps_median'), '.0f'):>9} "
            f"{_f(n.get('rps_median'), '.0f'):>9} {ratio_text:>19} "
            f"{_f(w.get('rps_median'), '.0f'):>9} {_f(t.get('cpu_s_per_1k_median'), '.3f'):>12} "
            f"{_f(n.get('cpu_s_per_1k_median'), '.3f'):>6} "
            f"{_f(w.get('cpu_s_per_1k_median'), '.3f'):>6} "
            f"{_f(None if cpu is None else cpu['median'], '.2f'):>12} {errors:>6}"
        )


def hit_path(
    origin: Server, logs: Path, ns: argparse.Namespace, run: Runner, nginx: str | None
) -> dict[str, Any]:
    """Part 1: warm, measure, check that nothing reached the regional meanwhile."""
    paths = [f"/{TITLE}/{OBJECTS[label][0]}" for label in ns.objects]
    with contextlib.ExitStack() as stack:
        regional, access = start_regional("regional-hit", origin.url, logs)
        stack.callback(_stop, regional)
        targets: dict[str, Target] = {}
        warmed: dict[str, dict[str, bool]] = {}
        for name in TARGETS:
            workers = 1 if name.endswith("1w") else 2
            if name.startswith("nginx"):
                if nginx is None:
                    continue
                (port,) = free_ports(1)
                prefix = logs / "nginx"
                prefix.mkdir()
                os.chmod(logs, 0o755)
                node = PopNginx(
                    nginx, prefix, port, f"{HOST}:{regional.url.rsplit(':', 1)[1]}", workers
                )
                stack.callback(node.stop)
                node.wait_ready()
                warmed[name] = warm_nginx(node.url, paths)
                targets[name] = Target(name, node.url, node.pids)
                continue
            edge = start_edge(name, regional.url, logs, "--workers", str(workers))
            stack.callback(_stop, edge)
            warmed[name] = warm_tiercdn(edge, workers, paths)
            targets[name] = Target(
                name, edge.url, functools.partial(tree_pids, edge.pid), edge.admin_url
            )
        cold = [f"{n} {p}" for n, w in warmed.items() for p, hit in w.items() if not hit]
        if cold:
            print(f"  not warm on every worker (measured anyway): {', '.join(cold)}", flush=True)
        before_regional = regional_requests(access, paths)
        before = {n: outcomes(t.admin_url) for n, t in targets.items() if t.admin_url}
        results = measure(targets, run, ns.rounds, ns.objects)
        after = {n: outcomes(t.admin_url) for n, t in targets.items() if t.admin_url}
        after_regional = regional_requests(access, paths)
        servers = {n: {"url": t.url, "processes": len(t.pids())} for n, t in targets.items()}
    not_hits = {
        n: {k: v - before[n].get(k, 0) for k, v in after[n].items() if k != "hit"} for n in after
    }
    during = sum(after_regional.values()) - sum(before_regional.values())
    return {
        "servers": servers,
        "nginx": "measured" if nginx else "skipped: no nginx binary (or --no-nginx)",
        "warm_on_every_worker": warmed,
        "regional_requests_during_runs": during,
        "non_hit_outcomes_during_runs": {
            n: {k: v for k, v in d.items() if v} for n, d in not_hits.items()
        },
        "rows": summarise_hits(results),
    }


# -- 2. storm ------------------------------------------------------------------------------


def _outcome(member: str) -> str:
    """What one ``Cache-Status`` member says happened: hit, collapsed (waited for a fill
    in flight), miss (went forward), or the member itself."""
    params = [x.strip() for x in member.split(";")[1:]]
    if "hit" in params:
        return "hit"
    if "collapsed" in params:
        return "collapsed"
    return "miss" if any(x.startswith("fwd=") for x in params) else member.strip()


def storm_once(
    edge: Server, path: str, library: Path, clients: int, seconds: float
) -> dict[str, Any]:
    """One storm by ``loadtest.storm``'s client (its own process): ``clients`` connections
    opened and each proven with a hit on ``WARM_PATH``, then ``GET path`` written on
    all of them back to back. Statuses, the answering worker's outcomes, time to first
    and last byte from each request's write."""
    port = int(edge.url.rsplit(":", 1)[1])
    spec = ClientSpec(
        HOST,
        port,
        path,
        str(library / path.lstrip("/")),
        WARM_PATH,
        str(library / WARM_PATH.lstrip("/")),
        clients,
        STORM_CONNECTS,
        seconds,
    )
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=run_client, args=(spec, child), name="pop-storm", daemon=True)
    proc.start()
    child.close()
    try:
        ready = _await(parent, "ready", 3 * seconds + 30)
        parent.send("go")
        result = _await(parent, "done", seconds + 30)
    finally:
        parent.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    samples = [Sample(**x) for x in result["samples"]]
    statuses = collections.Counter(
        str(x.status) if not x.error else f"{x.status}: {x.error[:40]}" for x in samples
    )
    statuses.update(f"connect: {e[:40]}" for e in result["errors"])
    good = [x for x in samples if not x.error]
    return {
        "connected": ready["connected"],
        "warm_errors": ready["warm_errors"],
        "statuses": dict(statuses),
        "outcomes": dict(collections.Counter(_outcome(x.member) for x in samples if x.member)),
        "ttfb_ms": spread([x.ttfb for x in good if x.ttfb is not None]),
        "latency_ms": spread([x.last_byte for x in good if x.last_byte is not None]),
    }


def storm(origin: Server, logs: Path, ns: argparse.Namespace, library: Path) -> dict[str, Any]:
    """Part 2: a storm per cold object on a fresh 2-worker edge; regional requests each."""
    rows = []
    paths = [f"/{TITLE}/storm-{i}.m4s" for i in range(ns.storm_objects)]
    regional, access = start_regional("regional-storm", origin.url, logs)
    try:
        edge = start_edge("edge-storm", regional.url, logs, "--workers", "2")
        try:
            warm_tiercdn(edge, 2, [WARM_PATH])
            for i, path in enumerate(paths):
                got = {
                    "object": path,
                    **storm_once(edge, path, library, ns.storm_clients, ns.storm_timeout),
                }
                got["regional_requests"] = regional_requests(access, [path])[path]
                rows.append(got)
                lat = got["latency_ms"]
                print(
                    f"  storm {i + 1}/{len(paths)} {path}: regional {got['regional_requests']}, "
                    f"statuses {got['statuses']}, p50 {_f(lat['p50'], '.0f')} ms "
                    f"p99 {_f(lat['p99'], '.0f')} ms",
                    flush=True,
                )
            held = stats(edge.admin_url) if edge.admin_url else {}
        finally:
            _stop(edge)
    finally:
        _stop(regional)
    per = [r["regional_requests"] for r in rows]
    return {
        "clients": ns.storm_clients,
        "object_bytes": ns.storm_bytes,
        "rows": rows,
        "regional_requests_per_object": per,
        "single_flight": bool(per) and all(n == 1 for n in per),
        "edge_requests": held.get("requests"),
        "edge_workers_up": held.get("workers_up"),
    }


def print_storm(part: dict[str, Any]) -> None:
    print(
        f"\n2. storm: {part['clients']} clients, each on its own connection, on a 2-worker "
        f"edge, objects of {part['object_bytes'] // KIB} KiB"
    )
    print(
        f"{'object':<18} {'regional reqs':>13} {'ttfb p50':>8} {'p99':>6} "
        f"{'last byte p50':>13} {'p99':>6} {'max':>6}  statuses / edge outcomes"
    )
    for row in part["rows"]:
        lat, first = row["latency_ms"], row["ttfb_ms"]
        print(
            f"{row['object']:<18} {row['regional_requests']:>13} {_f(first['p50'], '.1f'):>8} "
            f"{_f(first['p99'], '.1f'):>6} {_f(lat['p50'], '.1f'):>13} "
            f"{_f(lat['p99'], '.1f'):>6} {_f(lat['max'], '.1f'):>6}  {row['statuses']} "
            f"{row['outcomes']}"
        )
    print("(ms from each request's write; connections opened and warmed before the go)")


# -- 3. two edges as peers -----------------------------------------------------------------


async def replay_pop(
    urls: Sequence[str],
    trace: Sequence[int],
    which: Sequence[int],
    sizes: Sequence[int],
    concurrency: int,
    max_seconds: float,
) -> dict[str, Any]:
    """GET ``trace[i]`` from ``urls[which[i]]`` in order, ``concurrency`` in flight."""
    loop = asyncio.get_running_loop()
    ok, errors = 0, collections.Counter[str]()
    position = iter(range(len(trace)))
    deadline = loop.time() + max_seconds
    connector = aiohttp.TCPConnector(limit=2 * concurrency)
    started = loop.time()
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:

        async def worker() -> None:
            nonlocal ok
            for i in position:
                if loop.time() > deadline:
                    return
                oid = trace[i]
                try:
                    async with session.get(urls[which[i]] + path_of(oid)) as resp:
                        body = await resp.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if resp.status != 200 or len(body) != sizes[oid]:
                    errors[f"status {resp.status}" if resp.status != 200 else "short body"] += 1
                    continue
                ok += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = loop.time() - started
    return {
        "ok": ok,
        "errors": dict(errors),
        "seconds": round(seconds, 2),
        "truncated": ok + sum(errors.values()) < len(trace),
    }


def pop_ratio(regional: int, clients: int) -> float | None:
    """The PoP's hit ratio: the share of client requests that never reached the regional."""
    return None if not clients else round(1 - regional / clients, 4)


def zipf_config(
    origin: Server,
    logs: Path,
    ns: argparse.Namespace,
    peers: bool,
    work: tuple[list[int], list[int], list[int], int],
) -> dict[str, Any]:
    """One replay of the Zipf trace over a fresh regional and two fresh edges."""
    trace, which, sizes, budget = work
    tag = "peers" if peers else "independent"
    with contextlib.ExitStack() as stack:
        regional, access = start_regional(f"regional-{tag}", origin.url, logs)
        stack.callback(_stop, regional)
        free = free_ports(4)  # held at once: all distinct
        ports = [(free[0], free[1]), (free[2], free[3])]
        urls = [f"http://{HOST}:{port}" for port, _ in ports]
        edges = []
        for i, name in enumerate(("a", "b")):
            args = ["--cache-bytes", str(budget), "--workers", "1"]
            if peers:
                args += ["--peer", urls[1 - i], "--peer-url", urls[i]]
            edge = start_edge(f"{tag}-{name}", regional.url, logs, *args, ports=ports[i])
            stack.callback(_stop, edge)
            edges.append(edge)
        got = run_loop(
            replay_pop(urls, trace, which, sizes, ns.zipf_concurrency, ns.zipf_max_seconds)
        )
        time.sleep(_LOG_SETTLE)
        counts = count_requests(access)
        held = [stats(e.admin_url) for e in edges if e.admin_url]
    asked = {path_of(oid) for oid in trace}
    per = {p: sum(c.values()) for p, c in counts.items() if p.startswith(f"/{ZIPF_TITLE}/")}
    total = sum(per.values())
    edge_requests = sum(sum(h.get("requests", {}).values()) for h in held)
    client_requests = got["ok"] + sum(got["errors"].values())
    row = {
        "config": tag,
        "client_requests": client_requests,
        **got,
        "distinct_objects_asked": len(asked),
        "distinct_objects_at_regional": len(per),
        "regional_requests": total,
        "regional_requests_per_distinct_object": round(total / len(asked), 3) if asked else None,
        "capacity_refetches": total - len(per),
        "pop_hit_ratio": pop_ratio(total, client_requests),
        "peer_requests": max(0, edge_requests - client_requests),
        "edges": [
            {
                k: h.get(k)
                for k in ("name", "objects", "bytes", "capacity_bytes", "evictions", "requests")
            }
            for h in held
        ],
    }
    print(
        f"  {tag}: {client_requests} client requests in {got['seconds']} s, regional {total}, "
        f"PoP hit ratio {_f(row['pop_hit_ratio'], '.3f')}, errors {got['errors']}",
        flush=True,
    )
    return row


def zipf_pop(
    origin: Server, logs: Path, ns: argparse.Namespace, sizes: list[int]
) -> dict[str, Any]:
    """Part 3: the same trace and edge choices through peers, then independent edges."""
    trace = make_trace(ns.zipf_objects, ns.zipf_alpha, ns.zipf_requests, ns.seed)
    rng = random.Random(f"{ns.seed}-edges")
    which = [rng.randrange(2) for _ in trace]
    body_bytes = sum(sizes[: ns.zipf_objects])
    budget = int(body_bytes * ns.zipf_budget)
    rows = [
        zipf_config(origin, logs, ns, peers, (trace, which, sizes, budget))
        for peers in (True, False)
    ]
    peers, alone = rows
    return {
        "objects": ns.zipf_objects,
        "alpha": ns.zipf_alpha,
        "requests": ns.zipf_requests,
        "concurrency": ns.zipf_concurrency,
        "catalog_body_bytes": body_bytes,
        "edge_cache_bytes": budget,
        "rows": rows,
        "regional_ratio_peers_independent": (
            round(peers["regional_requests"] / alone["regional_requests"], 3)
            if alone["regional_requests"]
            else None
        ),
    }


def print_zipf(part: dict[str, Any]) -> None:
    share = part["edge_cache_bytes"] / part["catalog_body_bytes"]
    print(
        f"\n3. two edges, Zipf({part['alpha']}) over {part['objects']} objects, "
        f"{part['requests']} requests, {part['concurrency']} clients, each edge "
        f"{part['edge_cache_bytes'] / 1e6:.2f} MB ({share:.0%} of the catalog's bodies)"
    )
    print(
        f"{'config':<12} {'client reqs':>11} {'distinct':>8} {'regional':>8} {'per distinct':>12} "
        f"{'re-fetches':>10} {'PoP hit':>7} {'peer reqs':>9} {'errors':>6}"
    )
    for row in part["rows"]:
        print(
            f"{row['config']:<12} {row['client_requests']:>11} {row['distinct_objects_asked']:>8} "
            f"{row['regional_requests']:>8} "
            f"{_f(row['regional_requests_per_distinct_object'], '.3f'):>12} "
            f"{row['capacity_refetches']:>10} {_f(row['pop_hit_ratio'], '.3f'):>7} "
            f"{row['peer_requests']:>9} {sum(row['errors'].values()):>6}"
        )
    print(
        "regional requests, peers / independent: "
        f"{_f(part['regional_ratio_peers_independent'], '.3f')}"
    )


# -- the run ---------------------------------------------------------------------------------


# -- 4. the owner hop ---------------------------------------------------------------

HOP_CASES = (
    ("local hit", "a second request at A for an object B owns: A kept a copy"),
    ("miss at A, owner B has it", "A asks B, B answers from its cache"),
    ("miss at A, owner B fetches", "A asks B, B asks the regional (a hit there)"),
    ("miss at A, A owns it", "A asks the regional (a hit there)"),
    ("miss at C, no peers", "an edge without peers asks the regional (a hit there)"),
)


async def _hop_samples(urls: dict[str, str], regional: str, paths: list[str], n: int) -> Any:
    """Time-to-last-byte (ms) of each ``HOP_CASES`` case, ``n`` times, one request at a
    time; every object used once per case, all warm at the regional first."""
    owner = {p: rendezvous_order([urls["a"], urls["b"]], p)[0] for p in paths}
    by_b = [p for p in paths if owner[p] == urls["b"]]
    by_a = [p for p in paths if owner[p] == urls["a"]]
    if min(len(by_b), len(by_a)) < 3 * n:
        raise RuntimeError(f"hop: {len(paths)} objects are too few for {n} samples")
    samples: dict[str, list[float]] = {case: [] for case, _ in HOP_CASES}
    async with aiohttp.ClientSession() as http:

        async def timed(url: str) -> float:
            started = time.perf_counter()
            async with http.get(url) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"hop: {url} answered {r.status}")
            return (time.perf_counter() - started) * 1e3

        for p in by_b[: 2 * n] + by_a[n : 2 * n] + by_b[2 * n : 3 * n]:
            await timed(regional + p)  # warm: every miss below is a hit at the regional
        for i in range(n):
            held, cold_b, cold_a, cold_c = by_b[i], by_b[n + i], by_a[n + i], by_b[2 * n + i]
            await timed(urls["b"] + held)  # the owner has it
            samples["miss at A, owner B has it"].append(await timed(urls["a"] + held))
            samples["local hit"].append(await timed(urls["a"] + held))
            samples["miss at A, owner B fetches"].append(await timed(urls["a"] + cold_b))
            samples["miss at A, A owns it"].append(await timed(urls["a"] + cold_a))
            samples["miss at C, no peers"].append(await timed(urls["c"] + cold_c))
    return samples


def owner_hop(origin: Server, logs: Path, ns: argparse.Namespace) -> dict[str, Any]:
    """Part 4: what the owner hop costs, two edges as peers (A, B) and one without (C)."""
    with contextlib.ExitStack() as stack:
        regional, _ = start_regional("regional-hop", origin.url, logs)
        stack.callback(_stop, regional)
        free = free_ports(6)
        ports = {name: (free[2 * i], free[2 * i + 1]) for i, name in enumerate("abc")}
        urls = {name: f"http://{HOST}:{port}" for name, (port, _) in ports.items()}
        for name in "abc":
            args = ["--workers", "1", "--prefetch", "0"]
            if name != "c":
                other = urls["b" if name == "a" else "a"]
                args += ["--peer", other, "--peer-url", urls[name]]
            edge = start_edge(f"hop-{name}", regional.url, logs, *args, ports=ports[name])
            stack.callback(_stop, edge)
        paths = [path_of(i) for i in range(ns.zipf_objects)]
        samples = run_loop(_hop_samples(urls, regional.url, paths, ns.hop_samples))
    rows = []
    for case, what in HOP_CASES:
        xs = sorted(samples[case])
        p90 = xs[min(len(xs) - 1, int(len(xs) * 0.9))]
        rows.append({"case": case, "what": what, "p50_ms": round(statistics.median(xs), 2),
                     "p90_ms": round(p90, 2), "samples": len(xs)})  # fmt: skip
    return {"samples": ns.hop_samples, "rows": rows}


def print_hop(part: dict[str, Any]) -> None:
    print(f"\n4. the owner hop: time to last byte, {part['samples']} objects per case")
    print(f"{'case':<28}{'p50 ms':>8}{'p90 ms':>8}  what")
    for row in part["rows"]:
        print(f"{row['case']:<28}{row['p50_ms']:>8.2f}{row['p90_ms']:>8.2f}  {row['what']}")


def _tool(choice: str) -> str:
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if choice == "wrk" and not shutil.which("wrk"):
        raise SystemExit("error: --tool wrk but wrk is not on PATH (apt-get install wrk)")
    return choice


def _tool_label(tool: str, ns: argparse.Namespace) -> str:
    runs = f"{ns.connections} connections, {max(1, round(ns.seconds))} s x {ns.rounds} rounds"
    if tool == "wrk":
        return f"wrk ({ns.threads} thread(s), {runs}, nothing pinned)"
    return (
        f"PYTHON FALLBACK (aiohttp client in a separate process, {ns.connections} connections, "
        f"{ns.seconds:g} s x {ns.rounds} rounds, nothing pinned; may be client-bound: "
        "install wrk for real figures)"
    )


PARTS = ("hitpath", "storm", "zipf", "hop")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.pop",
        description="A PoP on two cores: --workers 2 against nginx on hits, a miss storm "
        "on two workers, two edges as peers against independent ones under Zipf.",
    )
    p.add_argument("--parts", default=",".join(PARTS), help="of hitpath,storm,zipf (all)")
    p.add_argument("--seconds", type=float, default=4.0, help="length of one load run (4)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--connections", type=int, default=100, help="load connections (100)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--max-requests", type=int, default=5_000_000, help="python tool cap per run")
    p.add_argument("--no-nginx", action="store_true", help="skip nginx even if installed")
    p.add_argument(
        "--objects", default=",".join(OBJECTS), help=f"hit path objects, of {','.join(OBJECTS)}"
    )
    p.add_argument("--storm-clients", type=int, default=1000, help="connections per storm")
    p.add_argument("--storm-objects", type=int, default=5, help="cold objects, one storm each")
    p.add_argument("--storm-bytes", type=int, default=STORM_BYTES, help="each one's size")
    p.add_argument("--storm-timeout", type=float, default=30.0, help="seconds per storm")
    p.add_argument("--zipf-objects", type=int, default=2000, help="catalog size (2000)")
    p.add_argument("--zipf-alpha", type=float, default=0.8, help="Zipf exponent (0.8)")
    p.add_argument("--zipf-requests", type=int, default=20_000, help="trace length (20000)")
    p.add_argument("--zipf-concurrency", type=int, default=20, help="clients in flight (20)")
    p.add_argument("--zipf-budget", type=float, default=0.05, help="edge cache, of catalog bytes")
    p.add_argument("--zipf-max-seconds", type=float, default=120.0, help="cap per replay")
    p.add_argument("--hop-samples", type=int, default=200, help="objects per owner-hop case")
    p.add_argument(
        "--quick",
        action="store_true",
        help="1 round of 1 s, 100 storm clients on 2 objects, 1000 Zipf requests of 500 objects",
    )
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--json", type=Path, default=Path("reports/pop.json"), help="summary")
    return p


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    ns = _parser().parse_args(argv)
    if ns.quick:
        ns.rounds, ns.seconds = 1, min(ns.seconds, 1.0)
        ns.storm_clients, ns.storm_objects = min(ns.storm_clients, 100), min(ns.storm_objects, 2)
        ns.zipf_requests, ns.zipf_objects = min(ns.zipf_requests, 1000), min(ns.zipf_objects, 500)
        ns.zipf_max_seconds = min(ns.zipf_max_seconds, 30.0)
        ns.hop_samples = min(ns.hop_samples, 20)
    if ns.hop_samples < 1:
        raise SystemExit("error: --hop-samples must be at least 1")
    ns.objects = [x for x in ns.objects.split(",") if x]
    if not ns.objects or any(x not in OBJECTS for x in ns.objects):
        raise SystemExit(f"error: --objects takes {','.join(OBJECTS)}")
    ns.parts = [x for x in ns.parts.split(",") if x]
    if not ns.parts or any(x not in PARTS for x in ns.parts):
        raise SystemExit(f"error: --parts takes {','.join(PARTS)}")
    if min(ns.seconds, ns.rounds, ns.connections, ns.threads, ns.max_requests) <= 0:
        raise SystemExit("error: --seconds, --rounds, --connections, --threads must be > 0")
    if min(ns.storm_clients, ns.storm_objects, ns.storm_bytes, ns.storm_timeout) <= 0:
        raise SystemExit("error: --storm-clients, --storm-objects, --storm-bytes, --storm-timeout")
    if ns.zipf_objects < 10 or min(ns.zipf_requests, ns.zipf_concurrency) < 1:
        raise SystemExit("error: --zipf-objects >= 10, --zipf-requests, --zipf-concurrency >= 1")
    if not 0 < ns.zipf_budget <= 2 or ns.zipf_alpha <= 0 or ns.zipf_max_seconds <= 0:
        raise SystemExit("error: --zipf-budget in (0, 2], --zipf-alpha, --zipf-max-seconds > 0")
    return ns


def print_summary(summary: dict[str, Any]) -> None:
    print("\nsummary:")
    hits = summary.get("hitpath")
    if hits:
        for row in hits["rows"]:
            ratio, cpu = row["ratio_2w_nginx"], row["cpu_ratio_2w_nginx"]
            print(
                f"  hit path {row['object']:>6}: tiercdn 2 workers / nginx "
                f"{_f(None if ratio is None else ratio['median'], '.2f')} in req/s, "
                f"{_f(None if cpu is None else cpu['median'], '.2f')} in CPU per request"
            )
        print(
            f"  hit path: regional requests during the runs {hits['regional_requests_during_runs']}"
            f", non-hit outcomes {hits['non_hit_outcomes_during_runs']}; nginx {hits['nginx']}"
        )
    part = summary.get("storm")
    if part:
        print(
            f"  storm: regional requests per object {part['regional_requests_per_object']} "
            f"(single flight: {'yes' if part['single_flight'] else 'NO'})"
        )
    part = summary.get("zipf")
    if part:
        peers, alone = part["rows"]
        print(
            f"  peers: regional {peers['regional_requests']} vs {alone['regional_requests']} "
            f"independent (x{_f(part['regional_ratio_peers_independent'], '.2f')}); PoP hit "
            f"ratio {_f(peers['pop_hit_ratio'], '.3f')} vs {_f(alone['pop_hit_ratio'], '.3f')}"
        )
    part = summary.get("hop")
    if part:
        p50 = {row["case"]: row["p50_ms"] for row in part["rows"]}
        print(
            f"  owner hop p50: miss served by the owner's cache {p50['miss at A, owner B has it']}"
            f" ms, by the owner's fetch {p50['miss at A, owner B fetches']} ms, straight to the"
            f" regional {p50['miss at A, A owns it']} ms; local hit {p50['local hit']} ms"
        )


def main(argv: Sequence[str] | None = None) -> int:
    ns = _options(argv)
    raise_fd_limit()
    tool = _tool(ns.tool)
    label = _tool_label(tool, ns)
    nginx = None if ns.no_nginx else nginx_binary()
    print(f"load tool: {label}; nginx: {nginx or 'not found, skipped'}", flush=True)
    pool = None
    if tool == "python" and "hitpath" in ns.parts:
        ctx = multiprocessing.get_context("spawn")
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx)
    load_before = os.getloadavg()
    summary: dict[str, Any] = {"scenario": "pop", "tool": tool, "tool_label": label}
    summary["nginx_binary"] = nginx
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="tiercdn-pop-") as tmp:
            root = Path(tmp)
            logs = root / "logs"
            logs.mkdir()
            library = root / "library"
            sizes = {file: size for file, size in OBJECTS.values()}
            storm_files = {f"storm-{i}.m4s": ns.storm_bytes for i in range(ns.storm_objects)}
            warm = {WARM_PATH.rsplit("/", 1)[1]: KIB}
            random_title(library, TITLE, {**sizes, **storm_files, **warm}, ns.seed)
            catalog = make_catalog(ns.zipf_objects, ns.seed)
            write_library(library, catalog, ns.seed)
            origin = start_node("origin", ["origin", "serve", "--library", str(library)], logs)
            try:
                if "hitpath" in ns.parts:
                    print("\n1. hit path", flush=True)
                    summary["hitpath"] = hit_path(origin, logs, ns, _runner(tool, ns, pool), nginx)
                    print_hits(summary["hitpath"]["rows"], label)
                if "storm" in ns.parts:
                    print("\n2. storm", flush=True)
                    summary["storm"] = storm(origin, logs, ns, library)
                    print_storm(summary["storm"])
                if "zipf" in ns.parts:
                    print("\n3. two edges as peers, Zipf replay", flush=True)
                    summary["zipf"] = zipf_pop(origin, logs, ns, catalog)
                    print_zipf(summary["zipf"])
                if "hop" in ns.parts:
                    summary["hop"] = owner_hop(origin, logs, ns)
                    print_hop(summary["hop"])
            finally:
                _stop(origin)
    except (TopologyError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    summary["seconds"] = round(time.monotonic() - began, 1)
    summary["config"] = config_of(ns)
    summary["host"] = host_facts(load_before)
    print_summary(summary)
    write_summary(ns.json, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
