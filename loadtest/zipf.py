"""Cache admission under Zipf workloads: tiercdn's policies against libCacheSim's.

``python -m loadtest.zipf`` makes a catalog of ``--objects`` objects with
lognormal body sizes (median 8 KiB, clipped to 2–64 KiB), writes them as
``.m4s`` media segments of one title (so the origin marks them ``immutable``
with a year of freshness: every edge miss is a capacity miss, never an
expiry), and draws two kinds of trace of ``--requests`` requests:

- static: one Zipf(α) trace per ``--alpha``;
- shift (``loadtest.zipfshift``): per ``--alpha`` and ``--shift-every``,
  ``--shift-new`` objects never seen before take the top ranks every
  ``--shift-every`` requests (a new episode drops), with ``--diurnal`` drift
  if asked.

On each trace, with the same byte budget, it runs in-process: tiercdn's
``MemoryStore`` under ``--admission lru``, ``tinylfu`` and ``adaptive``;
libCacheSim's LRU, W-TinyLFU, S3-FIFO, SIEVE, ARC, LHD, GDSF and the
BeladySize oracle (``loadtest.cachesim``; skipped, and said so, when the
``libcachesim`` package is not installed); a static cache of the most
requested objects (an oracle's top-K by request count, filled in count order
within the budget) and an approximation of Belady's optimum (on a miss, keep
the newcomer, then evict whatever is next used furthest in the future,
newcomer included; with unequal sizes that is a heuristic, not the optimum).
Then the first ``--http-requests`` of each trace are replayed over HTTP
through a fresh origin → regional → edge topology per tiercdn policy; the
edge's hits are counted from ``Cache-Status`` (``edge-1; hit``) and printed
beside the in-process figure of the same prefix. Verdicts, the table and a
plot: ``loadtest.zipfreport``.

Fair sizes: the store charges ``CachedObject.size`` (body + stored headers +
256 bytes of bookkeeping), not the body. The per-object overhead is measured
once over HTTP (an extra probe object, fetched through an edge, against the
edge's ``/stats`` bytes) and every offline model (libCacheSim's included)
charges body + that overhead; the edge budget is ``--cache-fraction`` of the
starting catalog's charged bytes. Object hit ratio counts requests; byte hit
ratio counts body bytes.

Invariants:

- Bounded: ``--requests`` per trace, ``--http-requests`` per replay and
  ``--max-seconds`` per HTTP replay (a replay cut short is flagged
  ``truncated``); every subprocess wait has a timeout. Only loopback, only
  ports from the OS (``Topology.start``).
- Deterministic: the catalog and each trace come from ``--seed``; the
  in-process sketch depends on ``hash`` of ``str`` keys, so the offline
  TinyLFU figures may move slightly between runs unless PYTHONHASHSEED is set.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import heapq
import itertools
import math
import os
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from loadtest import cachesim, zipfreport
from loadtest.eventloop import run_loop
from loadtest.report import config_of, host_facts, write_summary
from loadtest.topology import EDGE_HIT, Topology, TopologyError, get, stats
from loadtest.zipfshift import Shift, make_shift_trace
from shared.store import CachedObject, MemoryStore

__all__ = [
    "Ratio",
    "belady",
    "make_catalog",
    "make_trace",
    "main",
    "ratio_of",
    "replay",
    "simulate_store",
    "static_top_k",
]

SEED = 20240607
TITLE = "zipf"
POLICIES = zipfreport.OURS
KIB = 1024
MEDIAN_BYTES = 8 * KIB
SIGMA = 0.75
ASSUMED_OVERHEAD = 580  # bytes per object under --offline: what the probe measures
_STORE_OVERHEAD = 256  # CachedObject.size's bookkeeping charge (shared/store/memory.py)
_PAD = "X-Pad"


@dataclasses.dataclass
class Ratio:
    """Hits of one policy over one trace, by request and by body byte."""

    requests: int = 0
    hits: int = 0
    bytes: int = 0
    hit_bytes: int = 0
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def count(self, size: int, hit: bool) -> None:
        self.requests += 1
        self.bytes += size
        if hit:
            self.hits += 1
            self.hit_bytes += size

    @property
    def objects(self) -> float:
        return self.hits / self.requests if self.requests else 0.0

    @property
    def byte_ratio(self) -> float:
        return self.hit_bytes / self.bytes if self.bytes else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "hits": self.hits,
            "object_hit_ratio": round(self.objects, 4),
            "byte_hit_ratio": round(self.byte_ratio, 4),
            **self.extra,
        }


# -- workload -----------------------------------------------------------------------


def make_catalog(objects: int, seed: int, low: int = 2 * KIB, high: int = 64 * KIB) -> list[int]:
    """Body sizes of ``objects`` objects: lognormal around 8 KiB, clipped to [low, high]."""
    rng = random.Random(f"{seed}-sizes")
    mu = math.log(MEDIAN_BYTES)
    return [min(high, max(low, round(rng.lognormvariate(mu, SIGMA)))) for _ in range(objects)]


def make_trace(objects: int, alpha: float, requests: int, seed: int) -> list[int]:
    """``requests`` object ids drawn from Zipf(``alpha``); popularity is independent of
    id (and so of size): rank r maps to a seeded permutation of the ids."""
    rng = random.Random(f"{seed}-trace-{alpha}")
    ids = list(range(objects))
    rng.shuffle(ids)
    cum = list(itertools.accumulate((r + 1) ** -alpha for r in range(objects)))
    return [ids[r] for r in rng.choices(range(objects), cum_weights=cum, k=requests)]


def path_of(oid: int) -> str:
    return f"/{TITLE}/obj-{oid:05d}.m4s"


def write_library(root: Path, sizes: Sequence[int], seed: int) -> int:
    """One title folder of ``.m4s`` files; a probe object (id ``len(sizes)``) too.
    Returns the probe's size. No manifest: nothing for the edge to prefetch by."""
    rng = random.Random(f"{seed}-bytes")
    block = rng.randbytes(max(sizes) + MEDIAN_BYTES)
    folder = root / TITLE
    folder.mkdir(parents=True)
    for oid, size in enumerate([*sizes, MEDIAN_BYTES]):
        (root / path_of(oid).lstrip("/")).write_bytes(block[oid % MEDIAN_BYTES :][:size])
    return MEDIAN_BYTES


# -- offline models -----------------------------------------------------------------


def simulate_store(
    trace: Sequence[int], sizes: Sequence[int], overhead: int, capacity: int, policy: str
) -> Ratio:
    """Replay ``trace`` against an in-process ``MemoryStore``: lookup, and put on a miss,
    as the proxy does. Each object is charged body + ``overhead`` bytes."""
    store = MemoryStore(capacity, policy=policy)
    fill = "x" * max(0, overhead - _STORE_OVERHEAD - len(_PAD))  # so .size = body + overhead
    pad = CIMultiDictProxy(CIMultiDict({_PAD: fill}))
    ratio = Ratio()
    for oid in trace:
        key = path_of(oid)
        hit = bool(store.lookup(key))
        ratio.count(sizes[oid], hit)
        if not hit:
            store.put(_object(key, sizes[oid], pad))
    ratio.extra = {"evictions": store.evictions}
    if policy != "lru":
        ratio.extra |= {"admitted": store.admitted, "rejected": store.rejected}
    return ratio


def _object(key: str, size: int, headers: CIMultiDictProxy[str]) -> CachedObject:
    return CachedObject(
        key=key,
        vary_names=(),
        vary_key=(),
        status=200,
        headers=headers,
        body=bytes(size),
        request_time=0.0,
        response_time=0.0,
        lifetime=1e9,
        initial_age=0.0,
        must_validate=False,
    )


def static_top_k(trace: Sequence[int], sizes: Sequence[int], overhead: int, capacity: int) -> Ratio:
    """An oracle's static cache: the most requested objects of the whole trace, taken in
    request-count order while they fit, cached from the first request."""
    counts = Counter(trace)
    cached, used = set(), 0
    for oid, _ in counts.most_common():
        if used + sizes[oid] + overhead <= capacity:
            cached.add(oid)
            used += sizes[oid] + overhead
    ratio = Ratio()
    for oid in trace:
        ratio.count(sizes[oid], oid in cached)
    ratio.extra = {"objects_cached": len(cached)}
    return ratio


def belady(trace: Sequence[int], sizes: Sequence[int], overhead: int, capacity: int) -> Ratio:
    """Size-aware approximation of Belady's MIN: on a miss, add the object, then evict the
    cached object next used furthest in the future (the newcomer too, i.e. bypass)."""
    never = len(trace)
    following = [never] * len(trace)  # index of the next request of the same object
    last: dict[int, int] = {}
    for i in range(len(trace) - 1, -1, -1):
        following[i] = last.get(trace[i], never)
        last[trace[i]] = i
    next_use: dict[int, int] = {}  # cached object -> index of its next request
    heap: list[tuple[int, int]] = []  # (-next use, object); stale entries skipped lazily
    used = 0
    ratio = Ratio()
    for i, oid in enumerate(trace):
        hit = oid in next_use
        ratio.count(sizes[oid], hit)
        if not hit:
            used += sizes[oid] + overhead
        next_use[oid] = following[i]
        heapq.heappush(heap, (-following[i], oid))
        while used > capacity:
            neg, victim = heapq.heappop(heap)
            if next_use.get(victim) == -neg:
                del next_use[victim]
                used -= sizes[victim] + overhead
    return ratio


# -- HTTP ---------------------------------------------------------------------------


async def replay(
    base: str, trace: Sequence[int], sizes: Sequence[int], concurrency: int, max_seconds: float
) -> Ratio:
    """GET every object of ``trace`` from ``base`` in order, ``concurrency`` in flight;
    a hit is a response whose ``Cache-Status`` has ``edge-1; hit``."""
    loop = asyncio.get_running_loop()
    ratio, errors = Ratio(), Counter[str]()
    position = iter(range(len(trace)))
    deadline = loop.time() + max_seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    started = loop.time()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            for i in position:
                if loop.time() > deadline:
                    return
                oid = trace[i]
                try:
                    async with session.get(base + path_of(oid)) as resp:
                        body = await resp.read()
                        status = resp.headers.get("Cache-Status", "")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    continue
                if resp.status != 200 or len(body) != sizes[oid]:
                    errors[f"status {resp.status}" if resp.status != 200 else "short body"] += 1
                    continue
                ratio.count(sizes[oid], EDGE_HIT in status)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = loop.time() - started
    ratio.extra = {
        "errors": dict(errors),
        "seconds": round(seconds, 2),
        "requests_per_second": round(ratio.requests / seconds, 1) if seconds else None,
        "truncated": ratio.requests + sum(errors.values()) < len(trace),
    }
    return ratio


def measure_overhead(library: Path, probe: int, probe_size: int) -> int:
    """Bytes an edge charges per object beyond its body: one probe object, fetched twice
    through a fresh topology, against the edge's stored bytes."""
    with Topology.start(library) as top:
        for _ in range(2):
            get(top.edge.url + path_of(probe))
        held = stats(top.edge.admin_url)
    if held.get("objects") != 1:
        raise RuntimeError(f"probe: expected 1 object at the edge, got {held}")
    return int(held["bytes"]) - probe_size


def run_http(
    library: Path,
    policy: str,
    trace: Sequence[int],
    sizes: Sequence[int],
    capacity: int,
    ns: argparse.Namespace,
) -> Ratio:
    """Replay ``trace`` through a fresh topology whose edge runs ``policy``."""
    edge = ("--admission", policy, "--cache-bytes", str(capacity), "--max-object-bytes", "1MiB")
    with Topology.start(library, tier_args={"edge": edge}) as top:
        ratio = run_loop(replay(top.edge.url, trace, sizes, ns.concurrency, ns.max_seconds))
        top.check_alive()
        held = stats(top.edge.admin_url)
    keep = ("objects", "bytes", "capacity_bytes", "evictions", "admitted", "rejected")
    ratio.extra["edge_stats"] = {k: held[k] for k in keep if k in held}
    return ratio


# -- one trace ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    """One trace to draw: static Zipf(``alpha``), or shifting by ``shift``."""

    alpha: float
    shift: Shift | None = None

    @property
    def name(self) -> str:
        if self.shift is None:
            return f"static a={self.alpha:g}"
        return f"shift a={self.alpha:g}: {self.shift.label}"

    def draw(self, objects: int, requests: int, seed: int) -> tuple[list[int], int]:
        """The trace and how many object ids it may use."""
        if self.shift is None:
            return make_trace(objects, self.alpha, requests, seed), objects
        return make_shift_trace(objects, self.alpha, requests, seed, self.shift)


def ratio_of(trace: Sequence[int], sizes: Sequence[int], hits: Sequence[bool]) -> Ratio:
    """Object and byte hit ratio of per-request hit flags."""
    ratio = Ratio()
    for oid, hit in zip(trace, hits, strict=True):
        ratio.count(sizes[oid], hit)
    return ratio


def run_trace(
    work: Workload,
    trace: Sequence[int],
    sizes: Sequence[int],
    overhead: int,
    capacity: int,
    library: Path | None,
    ns: argparse.Namespace,
) -> dict[str, Any]:
    """Every model on one trace, then (given a library) tiercdn's policies over HTTP."""
    offline = {p: simulate_store(trace, sizes, overhead, capacity, p) for p in POLICIES}
    offline["static_top_k"] = static_top_k(trace, sizes, overhead, capacity)
    offline["belady"] = belady(trace, sizes, overhead, capacity)
    lcs = {}
    if ns.libcachesim:
        for name in cachesim.ONLINE + cachesim.ORACLES:
            flags = cachesim.hits(name, trace, sizes, overhead, capacity)
            lcs[name] = ratio_of(trace, sizes, flags)
    http, same = {}, {}
    if library is not None:
        prefix = trace[: ns.http_requests]
        for p in POLICIES:
            http[p] = run_http(library, p, prefix, sizes, capacity, ns)
            same[p] = simulate_store(prefix, sizes, overhead, capacity, p)
    result: dict[str, Any] = {
        "name": work.name,
        "kind": "static" if work.shift is None else "shift",
        "alpha": work.alpha,
        "shift": None if work.shift is None else dataclasses.asdict(work.shift),
        "requests": len(trace),
        "objects_requested": len(set(trace)),
        "cache_bytes": capacity,
        "offline": {p: r.summary() for p, r in offline.items()},
        "libcachesim": {n: r.summary() for n, r in lcs.items()},
        "http": {p: r.summary() for p, r in http.items()},
        "http_offline": {p: r.summary() for p, r in same.items()},
    }
    result["targets"] = zipfreport.judge(result, cachesim.ONLINE)
    zipfreport.print_trace(result)
    return result


# -- command line -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.zipf",
        description="Edge hit ratio under static and shifting Zipf traces: tiercdn's "
        "--admission lru|tinylfu|adaptive against libCacheSim's policies, Belady, top-K.",
    )
    p.add_argument("--objects", type=int, default=10_000, help="catalog size (default 10000)")
    p.add_argument("--requests", type=int, default=100_000, help="trace length")
    p.add_argument(
        "--alpha", type=float, action="append", help="Zipf exponent, repeatable (0.8 and 1.0)"
    )
    p.add_argument(
        "--workload",
        choices=("static", "shift"),
        action="append",
        help="kind of trace, repeatable (both)",
    )
    p.add_argument(
        "--shift-every",
        type=int,
        action="append",
        help="shift: requests between new-episode drops, repeatable (5000 and 20000)",
    )
    p.add_argument("--shift-new", type=int, default=50, help="shift: new objects per drop")
    p.add_argument("--diurnal", type=float, default=0.0, help="shift: peak night share (0-1)")
    p.add_argument("--diurnal-period", type=int, default=50_000, help="shift: requests a day")
    p.add_argument("--cache-fraction", type=float, default=0.05, help="of catalog bytes")
    p.add_argument("--http-requests", type=int, default=20_000, help="replayed per policy")
    p.add_argument("--concurrency", type=int, default=12, help="requests in flight")
    p.add_argument("--max-seconds", type=float, default=240.0, help="cap per HTTP replay")
    p.add_argument("--offline", action="store_true", help="skip HTTP: in-process models only")
    p.add_argument(
        "--no-libcachesim", dest="libcachesim", action="store_false", help="skip libCacheSim"
    )
    p.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--json", type=Path, default=Path("reports/zipf.json"), help="summary")
    p.add_argument("--plot", type=Path, help="bar chart (default: the summary's path, .png)")
    return p


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    ns = _parser().parse_args(argv)
    ns.alpha = ns.alpha or [0.8, 1.0]
    ns.workload = ns.workload or ["static", "shift"]
    ns.shift_every = ns.shift_every or [5000, 20_000]
    if ns.objects < 10 or ns.requests < 1 or ns.concurrency < 1 or ns.max_seconds <= 0:
        raise SystemExit("error: --objects >= 10, --requests, --concurrency, --max-seconds > 0")
    if not 0 < ns.cache_fraction < 1 or any(a <= 0 for a in ns.alpha):
        raise SystemExit("error: --cache-fraction in (0, 1) and --alpha > 0")
    if ns.http_requests < 1 or any(e < 1 for e in ns.shift_every):
        raise SystemExit("error: --http-requests and --shift-every must be at least 1")
    if not 0 <= ns.shift_new <= ns.objects or not 0 <= ns.diurnal <= 1:
        raise SystemExit("error: --shift-new in [0, --objects], --diurnal in [0, 1]")
    if ns.libcachesim and not cachesim.available():
        print("libCacheSim not installed (pip install 'tiercdn[benchmark]'): skipped")
        ns.libcachesim = False
    return ns


def workloads(ns: argparse.Namespace) -> list[Workload]:
    out = []
    if "static" in ns.workload:
        out += [Workload(a) for a in ns.alpha]
    if "shift" in ns.workload:
        for alpha, every in itertools.product(ns.alpha, ns.shift_every):
            shift = Shift(every, ns.shift_new, ns.diurnal, ns.diurnal_period)
            out.append(Workload(alpha, shift))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ns = _options(argv)
    works = workloads(ns)
    traces = [w.draw(ns.objects, ns.requests, ns.seed) for w in works]
    sizes = make_catalog(max(ids for _, ids in traces), ns.seed)
    catalog: dict[str, Any] = {"objects": ns.objects, "body_bytes": sum(sizes[: ns.objects])}
    catalog["ids"] = len(sizes)
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="tiercdn-zipf-") as tmp:
            library = None if ns.offline else Path(tmp)
            overhead, source = ASSUMED_OVERHEAD, "assumed"
            if library is not None:
                probe_size = write_library(library, sizes, ns.seed)
                overhead, source = measure_overhead(library, len(sizes), probe_size), "measured"
            charged = sum(sizes[: ns.objects]) + overhead * ns.objects
            capacity = int(charged * ns.cache_fraction)
            catalog |= {"overhead_bytes_per_object": overhead, "overhead_source": source}
            catalog |= {"charged_bytes": charged, "cache_bytes": capacity}
            print(
                f"{ns.objects} objects, {catalog['body_bytes'] / 1e6:.1f} MB of bodies, "
                f"{charged / 1e6:.1f} MB charged ({overhead} B/object {source}); "
                f"cache {capacity / 1e6:.2f} MB = {ns.cache_fraction:.1%}; "
                f"{ns.requests} requests per trace",
                flush=True,
            )
            results = [
                run_trace(w, t, sizes, overhead, capacity, library, ns)
                for w, (t, _) in zip(works, traces, strict=True)
            ]
    except (TopologyError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    met = all(r["targets"]["met"] for r in results)
    adaptive = [r["targets"]["adaptive_met"] for r in results]
    failed = [
        f"{r['name']} {p}: {h['errors']}"
        for r in results
        for p, h in r["http"].items()
        if h["errors"]
    ]
    summary = {
        "scenario": "zipf",
        "primary": "offline",
        "config": config_of(ns),
        "catalog": catalog,
        "results": results,
        "targets_met": met,
        "adaptive_targets_met": None if None in adaptive else all(adaptive),
        "http_errors": failed,
        "host": host_facts(load_before),
    }
    print(f"\ntargets met: {'yes' if met else 'NO'}")
    write_summary(ns.json, summary)
    if results:
        print(f"wrote {zipfreport.plot(results, ns.plot or ns.json.with_suffix('.png'))}")
    if failed:  # the ratios would be off: a failed request is neither hit nor miss
        print(f"error: HTTP errors: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 2 if ns.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
