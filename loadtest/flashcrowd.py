"""Flash crowd: a new episode drops and N viewers start the same cold title at once.

``python -m loadtest.flashcrowd`` makes a real DASH title once (``python -m
origin sample``, 60 s, 2 s segments; or takes ``--library``), then for each of
four combinations of pre-warm off/on x edge prefetch off/on starts a FRESH
origin -> regional -> edge (cold caches, checked; the regional's disk tier in a
new temporary folder; origin slowed by ``--fault-delay`` and ``--fault-rate``),
optionally pre-warms the edge, and lets ``--viewers`` viewers start the title
within ``--ramp`` seconds. Each viewer GETs the MPD
from the edge, parses it (``shared.dash.parse_mpd``), picks one video
representation and the audio, GETs both init segments, then in every segment
time slot GETs the next video and audio segment together, waiting for the
playback clock (segment duration / ``--speedup``: 2 s / 10 = 0.2 s) between
slots. It reports, per combination: requests that reached the origin (during the pre-warm and
during the crowd), the origin's peak request rate during the crowd, the
viewers' media segment time to first byte (TTFB) and total time, errors, the
edge's own view (hits, collapsed, misses) and its prefetch counters; then the
targets: pre-warm + prefetch against neither cut the origin's peak by
``--target-peak-cut`` (60 %) and the viewers' p99 TTFB by ``--target-p99-cut``
(50 %), with no viewer errors.

Invariants:

- Seeded: start offsets (uniform in ``[0, --ramp)``) and video choices come from
  ``--seed``; every combination replays the same plan. Video choice by rank in
  the video AdaptationSet, 0 = lowest: ``--mix`` weights (default 70 % lowest,
  20 % the next, 7 %, 3 %; a title with fewer rungs renormalises). Audio: the
  lowest-bitrate audio representation.
- Playback clock: slot k is due when segment k starts in media time (from the
  MPD, divided by ``--speedup``) after the viewer's init segments arrived; a slot
  whose fetches end after the next one is due counts as late, and the next slot
  is asked for at once (a player catching up), never skipped.
- Pre-warm is timed and counted apart from the crowd: ``POST /prewarm`` on the
  edge's admin listener (``--admin-token``); if the route is missing (404/405)
  the benchmark GETs every init and media segment of every representation
  through the edge at ``--prewarm-concurrency``, and says which it did.
- The origin's ``tiercdn_origin_requests_total`` is sampled from a thread every
  ``--sample-interval`` during the crowd; the peak rate is the largest increase
  over any ``--peak-window`` of samples, per second.
- Bounded: ``--viewers`` x the title's segments requests; a per-request
  ``--timeout``; the crowd is cancelled after ``--deadline`` seconds. One client
  process (this one, on uvloop when available); each viewer has its own
  ``ClientSession`` of at most ``--connections`` (2) keep-alive connections, as a
  browser player does, opened as it starts: a pool shared by all viewers opens
  connections in bursts when load peaks, overflows the edge's listen backlog and
  stalls for the 1 s SYN retransmit. Only loopback, only ports from the OS.
  Exit 0 unless something crashed, or ``--check`` and a target failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from loadtest.dashclient import (
    ladder,
    media_clock,
    media_path,
    player_session,
    segment_count,
    timed_get,
    title_paths,
)
from loadtest.eventloop import run_loop
from loadtest.report import config_of, host_facts, write_summary
from loadtest.sampler import Sampler
from loadtest.stats import ms, percentile, spread
from loadtest.tables import cell, dig, print_targets
from loadtest.titles import make_title
from loadtest.topology import (
    EDGE_NAME,
    ORIGIN_REQUESTS,
    REQUESTS,
    Tier,
    Topology,
    TopologyError,
    by_label,
    counter_total,
    metrics,
    stats,
)
from loadtest.usage import cpu_seconds
from shared.dash import Presentation, Stream, parse_mpd

__all__ = [
    "COMBOS",
    "Fetch",
    "ViewerLog",
    "ViewerPlan",
    "main",
    "peak_rate",
    "plan_viewers",
    "summarise",
]

SEED = 20240611
MANIFEST = "/sample/manifest.mpd"
TOKEN = "flashcrowd-local-token"  # admin token of throwaway loopback nodes
COMBOS: dict[str, tuple[bool, bool]] = {  # name -> (pre-warm, prefetch)
    "none": (False, False),
    "prefetch": (False, True),
    "prewarm": (True, False),
    "prewarm+prefetch": (True, True),
}
BASELINE, BOTH = "none", "prewarm+prefetch"
PREFETCHES = "tiercdn_prefetches_total"
PREFETCH_RESULTS = ("done", "skipped", "failed")  # labels the edge may not have used yet
_CHUNK = 256 * 1024
TIMELINE_STEP = 0.5  # seconds per bucket of the TTFB timeline in the JSON


# -- the plan and the title ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ViewerPlan:
    """One viewer: when it starts and which video rung it wants."""

    index: int
    offset: float  # seconds after the crowd's start
    video_rank: int  # rank in the video AdaptationSet, 0 = lowest


def plan_viewers(viewers: int, ramp: float, mix: Sequence[float], seed: int) -> list[ViewerPlan]:
    """Seeded start offsets in ``[0, ramp)`` and video ranks drawn from ``mix``."""
    rng = random.Random(seed)
    ranks = list(range(len(mix)))
    return [
        ViewerPlan(i, rng.uniform(0.0, ramp), rng.choices(ranks, weights=mix)[0])
        for i in range(viewers)
    ]


def pick_streams(presentation: Presentation, video_rank: int) -> list[Stream]:
    """The first period's video stream of ``video_rank`` (or the top one) and its
    lowest-bitrate audio stream, whichever exist."""
    video, audio = ladder(presentation)
    chosen = []
    if video:
        chosen.append(video[min(video_rank, len(video) - 1)])
    if audio is not None:
        chosen.append(audio)
    return chosen


# -- the viewers: one process, a ClientSession each -----------------------------------------


@dataclasses.dataclass(frozen=True)
class Fetch:
    """One request of one viewer; times in seconds from when it was sent."""

    kind: str  # "mpd", "init", "video" or "audio"
    slot: int  # media segment index; -1 for the MPD and init segments
    ttfb: float | None  # response head received
    total: float | None  # last body byte received
    status: int
    error: str  # "" when a 200 with the announced length
    edge: str  # the edge's Cache-Status: "hit", "collapsed", "miss" or ""
    at: float  # when it was sent (``time.perf_counter()``)


@dataclasses.dataclass
class ViewerLog:
    """What one viewer did (appended to by its own task only)."""

    fetches: list[Fetch] = dataclasses.field(default_factory=list)
    startup: float | None = None  # from its start to both init segments received
    late_slots: int = 0
    error: str = ""  # why it stopped early ("" if it did not)
    done: bool = False


def edge_member(header: str, edge_name: str) -> str:
    """The edge's verdict from a ``Cache-Status`` header."""
    for member in header.split(","):
        parts = [p.strip() for p in member.split(";")]
        if parts[0] == edge_name:
            return "hit" if "hit" in parts else "collapsed" if "collapsed" in parts else "miss"
    return ""


async def fetch(
    session: aiohttp.ClientSession, url: str, kind: str, slot: int, keep: bool = False
) -> tuple[Fetch, bytes]:
    """GET ``url``, time its head and its last byte; the body only if ``keep``."""
    got = await timed_get(session, url, chunk=_CHUNK, keep=keep)
    edge = edge_member(got.cache_status, EDGE_NAME)
    fetched = Fetch(kind, slot, got.ttfb, got.total, got.status, got.error, edge, got.sent)
    return fetched, got.body


async def _viewer(
    session: aiohttp.ClientSession,
    base: str,
    manifest: str,
    plan: ViewerPlan,
    start: float,
    speedup: float,
    log: ViewerLog,
) -> None:
    await asyncio.sleep(max(0.0, start + plan.offset - time.perf_counter()))
    began = time.perf_counter()
    got, body = await fetch(session, base + manifest, "mpd", -1, keep=True)
    log.fetches.append(got)
    try:
        if got.error:
            raise ValueError(f"manifest: {got.error}")
        streams = pick_streams(parse_mpd(body, manifest), plan.video_rank)
        if not streams:
            raise ValueError("manifest: no video or audio representation")
        count = min(segment_count(s) for s in streams)
        clock = [t / speedup for t in media_clock(streams[0], count)]
        slots = [
            [(media_path(s, i), s.representation.kind.value) for s in streams] for i in range(count)
        ]
    except ValueError as exc:
        log.error = str(exc)[:120]
        return
    inits = [s.initialization for s in streams if s.initialization]
    for got, _ in await asyncio.gather(*(fetch(session, base + p, "init", -1) for p in inits)):
        log.fetches.append(got)
    log.startup = time.perf_counter() - began
    play = time.perf_counter()
    for slot, wanted in enumerate(slots):
        await asyncio.sleep(max(0.0, play + clock[slot] - time.perf_counter()))
        results = await asyncio.gather(*(fetch(session, base + p, k, slot) for p, k in wanted))
        log.fetches.extend(got for got, _ in results)
        log.late_slots += time.perf_counter() > play + clock[slot + 1]
    log.done = True


async def _own_connections(
    plan: ViewerPlan, log: ViewerLog, connections: int, request_seconds: float, **kw: Any
) -> None:
    """One viewer with its own keep-alive connections, as a browser player has (a pool
    shared by all viewers would open connections in bursts whenever load peaks)."""
    async with player_session(connections, request_seconds) as session:
        await _viewer(session, plan=plan, log=log, **kw)


async def run_crowd(
    base: str,
    manifest: str,
    plans: Sequence[ViewerPlan],
    *,
    speedup: float,
    connections: int,
    request_seconds: float,
    deadline: float,
) -> list[ViewerLog]:
    """Every viewer of ``plans`` against the edge at ``base``, each with at most
    ``connections`` connections of its own; cancelled after ``deadline`` seconds."""
    logs = [ViewerLog() for _ in plans]
    start = time.perf_counter() + 0.2  # every task is scheduled before the first start
    viewers = (
        _own_connections(
            p, log, connections, request_seconds,
            base=base, manifest=manifest, start=start, speedup=speedup,
        )
        for p, log in zip(plans, logs, strict=True)
    )  # fmt: skip
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(deadline):
            await asyncio.gather(*viewers)
    return logs


async def prewarm(
    edge: Tier, manifest: str, *, token: str, concurrency: int, deadline: float
) -> dict[str, Any]:
    """Fill the edge with the whole title before the crowd: the admin API if there is
    one, else GETs of every segment through the edge. Returns what was done."""
    began = time.perf_counter()
    body = {"manifest": manifest, "lowest": None, "seconds": None, "concurrency": concurrency}
    auth = {"Authorization": f"Bearer {token}"}
    limits = aiohttp.ClientTimeout(total=deadline)
    async with aiohttp.ClientSession(timeout=limits, auto_decompress=False) as session:
        async with session.post(edge.admin_url + "/prewarm", json=body, headers=auth) as resp:
            status, text = resp.status, await resp.text()
        if status not in (404, 405):
            report: dict[str, Any] = {"method": "admin-api", "status": status}
            try:
                report["report"] = json.loads(text)
            except ValueError:
                report["report"] = text[:500]
            failed = report["report"].get("failed") if isinstance(report["report"], dict) else None
            report["errors"] = (failed if isinstance(failed, int) else 0) if status == 200 else 1
            return report | {"seconds": round(time.perf_counter() - began, 3)}
        got, xml = await fetch(session, edge.url + manifest, "mpd", -1, keep=True)
        if got.error:
            raise RuntimeError(f"pre-warm: manifest {manifest}: {got.error}")
        paths = title_paths(parse_mpd(xml, manifest))
        gate = asyncio.Semaphore(concurrency)

        async def one(path: str) -> Fetch:
            async with gate:
                return (await fetch(session, edge.url + path, "warm", -1))[0]

        done = await asyncio.gather(*(one(p) for p in paths))
    errors = [f.error for f in done if f.error]
    return {
        "method": "fallback-get",
        "status": 404,
        "objects": len(paths) + 1,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "seconds": round(time.perf_counter() - began, 3),
    }


# -- the origin's request rate ------------------------------------------------------------


def origin_requests(admin_url: str) -> float:
    """``tiercdn_origin_requests_total`` summed over kinds and status classes."""
    return counter_total(metrics(admin_url), ORIGIN_REQUESTS)


def peak_rate(samples: Sequence[tuple[float, float]], window: float) -> float | None:
    """The largest increase per second of a counter between two of its ``(time, value)``
    samples at least ``window`` seconds apart (the closest such pair for each end); the
    mean rate if the samples span less than ``window``; None if fewer than 2."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return None
    if samples[-1][0] - samples[0][0] < window:
        return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
    best, i = 0.0, 0
    for t, value in samples:
        while t - samples[i + 1][0] >= window:
            i += 1
        if t - samples[i][0] >= window:
            best = max(best, (value - samples[i][1]) / (t - samples[i][0]))
    return best


# -- figures ------------------------------------------------------------------------------


_POINTS = (50, 90, 99)  # percentiles of each spread


def summarise(logs: Sequence[ViewerLog]) -> dict[str, Any]:
    """The viewers' figures: media segment TTFB and total time (ms), startup, errors."""
    fetches = [f for log in logs for f in log.fetches]
    media = [f for f in fetches if f.kind in ("video", "audio")]
    good = [f for f in media if not f.error and f.ttfb is not None]
    errors = [f.error for f in fetches if f.error] + [log.error for log in logs if log.error]
    seen: dict[str, int] = {}
    for f in good:
        seen[f.edge or "?"] = seen.get(f.edge or "?", 0) + 1
    out: dict[str, Any] = {
        "viewers": len(logs),
        "viewers_finished": sum(log.done for log in logs),
        "requests": len(fetches),
        "segments": len(media),
        "segments_ok": len(good),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "segment_ttfb_ms": spread([f.ttfb or 0.0 for f in good], _POINTS),
        "segment_total_ms": spread([f.total or 0.0 for f in good], _POINTS),
        "startup_ms": spread([log.startup for log in logs if log.startup is not None], _POINTS),
        "late_slots": sum(log.late_slots for log in logs),
        "edge_outcomes_seen": dict(sorted(seen.items())),
        "edge_hit_ratio": round(seen.get("hit", 0) / len(good), 4) if good else None,
        "timeline": timeline(good, TIMELINE_STEP),
    }
    steps = [b["ttfb_p99_ms"] for b in out["timeline"] if b["ttfb_p99_ms"] is not None]
    # one stall of a shared machine spoils one bucket; this median shrugs it off
    out["ttfb_p99_bucket_median_ms"] = percentile(steps, 50)
    return out


def timeline(fetches: Sequence[Fetch], step: float) -> list[dict[str, float | int | None]]:
    """Media segment TTFB by when the request was sent, in ``step``-second buckets from the
    first one: a stall of the machine shows as one bad bucket, congestion as a run."""
    if not fetches:
        return []
    first = min(f.at for f in fetches)
    buckets: dict[int, list[float]] = {}
    for f in fetches:
        buckets.setdefault(int((f.at - first) / step), []).append(f.ttfb or 0.0)
    return [
        {"t": round(k * step, 2), "n": len(v), "ttfb_p50_ms": ms(percentile(v, 50)),
         "ttfb_p99_ms": ms(percentile(v, 99)), "ttfb_max_ms": ms(max(v))}
        for k, v in sorted(buckets.items())
    ]  # fmt: skip


def targets(
    rows: dict[str, dict[str, Any]], peak_cut: float, p99_cut: float
) -> list[dict[str, Any]]:
    """Pre-warm + prefetch against neither; skipped (pass None) if either did not run."""
    base, both = rows.get(BASELINE), rows.get(BOTH)

    def cut(path: tuple[str, ...]) -> float | None:
        if base is None or both is None:
            return None
        before, after = dig(base, path), dig(both, path)
        if not isinstance(before, int | float) or not isinstance(after, int | float):
            return None
        return round(1 - after / before, 4) if before > 0 else None

    peak, p99 = cut(("origin", "peak_rps")), cut(("crowd", "segment_ttfb_ms", "p99"))
    ran = base is not None and both is not None
    errors = {name: row["crowd"]["errors"] for name, row in rows.items()}
    found = [
        ("origin peak requests/s cut, both vs none", f">= {peak_cut:.0%}", peak,
         (peak is not None and peak >= peak_cut) if ran else None),
        ("viewers' p99 segment TTFB cut, both vs none", f">= {p99_cut:.0%}", p99,
         (p99 is not None and p99 >= p99_cut) if ran else None),
        ("viewer errors", "0 in every run", errors, all(n == 0 for n in errors.values())),
    ]  # fmt: skip
    return [{"target": t, "goal": g, "seen": s, "pass": ok} for t, g, s, ok in found]


# (title, path into a combination's row)
_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("warm s", ("prewarm", "seconds")),
    ("o.warm", ("origin", "requests_prewarm")),
    ("o.crowd", ("origin", "requests_crowd")),
    ("o.peak/s", ("origin", "peak_rps")),
    ("ttfb50", ("crowd", "segment_ttfb_ms", "p50")),
    ("ttfb99", ("crowd", "segment_ttfb_ms", "p99")),
    ("b.ttfb99", ("crowd", "ttfb_p99_bucket_median_ms")),
    ("total99", ("crowd", "segment_total_ms", "p99")),
    ("start99", ("crowd", "startup_ms", "p99")),
    ("hit%", ("crowd", "edge_hit_pct")),
    ("late", ("crowd", "late_slots")),
    ("cli.cpu", ("crowd", "client_cpu_pct")),
    ("edge.cpu", ("crowd", "edge_cpu_pct")),
    ("errors", ("crowd", "errors")),
    ("pf.done", ("edge", "prefetches", "done")),
    ("pf.skip", ("edge", "prefetches", "skipped")),
    ("pf.fail", ("edge", "prefetches", "failed")),
)


def print_report(rows: dict[str, dict[str, Any]], goals: list[dict[str, Any]]) -> None:
    print("\n" + f"{'combination':<17} {'warm by':<12} " + " ".join(f"{t:>8}" for t, _ in _COLUMNS))
    for name, row in rows.items():
        method = row["prewarm"]["method"] if row["prewarm"] else "-"
        cells = " ".join(cell(dig(row, path), 8) for _, path in _COLUMNS)
        print(f"{name:<17} {method:<12} {cells}")
    for name, row in rows.items():
        if row["prewarm"] and row["prewarm"]["errors"]:
            print(f"  pre-warm errors in {name}: {row['prewarm']}")
        if row["crowd"]["error_examples"]:
            print(f"  errors in {name}: {row['crowd']['error_examples'][:3]}")
    print(
        "warm s: pre-warm time (not in the viewers' figures); o.warm, o.crowd: requests at the\n"
        "origin during the pre-warm and during the crowd; o.peak/s: the origin's peak rate over\n"
        "the peak window during the crowd; ttfb50/99: media segment time to first byte (ms);\n"
        f"b.ttfb99: median over {TIMELINE_STEP:g} s buckets of their p99 (a stall of a shared\n"
        "machine spoils one bucket, not this); total99: to the last byte; start99: MPD + init\n"
        "segments; hit%: edge hits among the media segments; late: slots that ended after the\n"
        "next was due; cli.cpu, edge.cpu: % CPU of this client and of the edge during the crowd\n"
        "(near 100: that process is the bottleneck); pf.*: edge prefetches done, skipped (no\n"
        "room) and failed"
    )
    print_targets(goals, 46, 15)


# -- the scenario -------------------------------------------------------------------------


def run_combination(
    name: str, library: Path, plans: Sequence[ViewerPlan], ns: argparse.Namespace
) -> dict[str, Any]:
    """One combination on a fresh topology: pre-warm (maybe), then the crowd."""
    warm, prefetch = COMBOS[name]
    admin = ("--admin-token", TOKEN)
    with (
        tempfile.TemporaryDirectory(prefix="tiercdn-flashcrowd-disk-") as disk,
        Topology.start(
            library,
            tier_args={
                "origin": ("--fault-delay", ns.fault_delay, "--fault-rate", ns.fault_rate),
                "regional": (*admin, "--disk-path", disk),  # never a disk tier of an earlier run
                "edge": (*admin, "--prefetch", str(ns.prefetch if prefetch else 0)),
            },
        ) as top,
    ):
        check_cold(top)
        origin = top.origin.admin_url
        at_start = origin_requests(origin)
        report = None
        if warm:
            report = run_loop(
                prewarm(
                    top.edge,
                    ns.manifest,
                    token=TOKEN,
                    concurrency=ns.prewarm_concurrency,
                    deadline=ns.deadline,
                )
            )
        before = origin_requests(origin)
        sampling = Sampler(
            lambda: origin_requests(origin), ns.sample_interval, name="origin-sampler"
        )
        with sampling as sampler:
            edge_cpu = cpu_seconds(top.edge.pid)
            began, cpu = time.perf_counter(), time.process_time()
            logs = run_loop(
                run_crowd(
                    top.edge.url,
                    ns.manifest,
                    plans,
                    speedup=ns.speedup,
                    connections=ns.connections,
                    request_seconds=ns.timeout,
                    deadline=ns.deadline,
                )
            )
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            edge_after = cpu_seconds(top.edge.pid)
        top.check_alive()
        after = origin_requests(origin)
        edge = metrics(top.edge.admin_url)
    crowd = summarise(logs)
    crowd["seconds"] = round(seconds, 2)
    crowd["client_cpu_pct"] = round(100 * cpu / seconds, 1)  # near 100: the client limits
    crowd["edge_cpu_pct"] = (
        None
        if edge_cpu is None or edge_after is None
        else round(100 * (edge_after - edge_cpu) / seconds, 1)
    )
    ratio = crowd["edge_hit_ratio"]
    crowd["edge_hit_pct"] = None if ratio is None else round(100 * ratio, 1)
    peak = peak_rate(sampler.samples, ns.peak_window)
    return {
        "prewarm_on": warm,
        "prefetch": ns.prefetch if prefetch else 0,
        "prewarm": report,
        "origin": {
            "requests_prewarm": round(before - at_start),
            "requests_crowd": round(after - before),
            "peak_rps": None if peak is None else round(peak, 1),
            "samples": len(sampler.samples),
            "sample_errors": sampler.errors,
        },
        "crowd": crowd,
        "edge": {
            "prefetches": ({r: 0 for r in PREFETCH_RESULTS} if prefetch else {})
            | {k: round(v) for k, v in by_label(edge, PREFETCHES).items()},
            "requests": {k: round(v) for k, v in by_label(edge, REQUESTS).items()},
        },
    }


def check_cold(top: Topology) -> None:
    """``RuntimeError`` unless the edge and the regional start with empty stores."""
    for tier in (top.edge, top.regional):
        held = stats(tier.admin_url).get("bytes")
        if held:
            raise RuntimeError(f"{tier.name} starts with {held} bytes cached: not a cold start")


@contextlib.contextmanager
def _library(ns: argparse.Namespace) -> Iterator[tuple[Path, float | None]]:
    """(library, seconds spent making the title or None if reused)."""
    if ns.library is not None:
        if not (ns.library / ns.manifest.lstrip("/")).is_file():
            raise SystemExit(f"error: no {ns.manifest} under {ns.library}")
        yield ns.library, None
        return
    with tempfile.TemporaryDirectory(prefix="tiercdn-flashcrowd-") as tmp:
        print(f"making a {ns.duration:g} s sample title ...", flush=True)
        title = Path(tmp) / MANIFEST.strip("/").split("/")[0]
        yield Path(tmp), make_title(title, ns.duration, ns.deadline)


def _mix(text: str) -> list[float]:
    weights = [float(w) for w in text.split(",")]
    if not weights or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise argparse.ArgumentTypeError("--mix: comma-separated weights >= 0, not all 0")
    return weights


def _combos(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in COMBOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--only: choose from {', '.join(COMBOS)}")
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.flashcrowd",
        description="A new episode drops: N viewers start the same cold title within seconds.",
    )
    a = p.add_argument
    a("--viewers", type=int, default=300, help="viewers (default 300)")
    a("--ramp", type=float, default=3.0, help="seconds over which they start (default 3)")
    a("--speedup", type=float, default=10.0, help="playback speed factor (default 10)")
    a("--mix", type=_mix, default=_mix("70,20,7,3"), help="video rank weights, lowest first")
    a("--only", type=_combos, default=list(COMBOS), help=f"subset of {','.join(COMBOS)}")
    a("--prefetch", type=int, default=2, help="edge --prefetch K when prefetch is on (2)")
    a("--prewarm-concurrency", type=int, default=8, help="pre-warm fetches at once (8)")
    a("--fault-delay", default="50ms", help="origin latency before headers (50ms)")
    a("--fault-rate", default="8MiB", help="origin per-response bandwidth cap (8MiB)")
    a("--library", type=Path, help="reuse this library instead of making a title")
    a("--manifest", default=MANIFEST, help=f"the title's MPD path (default {MANIFEST})")
    a("--duration", type=float, default=60.0, help="seconds of the title to make (60)")
    a("--connections", type=int, default=2, help="connections per viewer (2: video, audio)")
    a("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    a("--deadline", type=float, default=120.0, help="seconds per crowd, pre-warm (120)")
    a("--sample-interval", type=float, default=0.2, help="origin metrics period, s (0.2)")
    a("--peak-window", type=float, default=1.0, help="window of the peak rate, s (1)")
    a("--target-peak-cut", type=float, default=0.60, help="origin peak cut goal (0.60)")
    a("--target-p99-cut", type=float, default=0.50, help="p99 TTFB cut goal (0.50)")
    a("--seed", type=int, default=SEED, help="seed of start offsets and video choices")
    a("--json", type=Path, default=Path("reports/flashcrowd.json"), help="summary")
    a("--check", action="store_true", help="exit 1 when a target fails")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    positive = (ns.viewers, ns.speedup, ns.timeout, ns.deadline, ns.duration)
    if min(positive) <= 0 or ns.ramp < 0 or ns.prefetch < 1 or ns.prewarm_concurrency < 1:
        raise SystemExit("error: counts, times and --prefetch must be > 0, --ramp >= 0")
    if ns.sample_interval <= 0 or ns.peak_window < ns.sample_interval or ns.connections < 1:
        raise SystemExit("error: --sample-interval > 0, --peak-window >= it, --connections > 0")
    load_before = os.getloadavg()
    plans = plan_viewers(ns.viewers, ns.ramp, ns.mix, ns.seed)
    print(
        f"flashcrowd: {ns.viewers} viewers over {ns.ramp:g} s, playback x{ns.speedup:g}, "
        f"origin delay {ns.fault_delay}, rate {ns.fault_rate}/s; {', '.join(ns.only)}",
        flush=True,
    )
    rows: dict[str, dict[str, Any]] = {}
    try:
        with _library(ns) as (library, made):
            if made is not None:
                print(f"  title made in {made:.1f} s", flush=True)
            for name in ns.only:
                row = rows[name] = run_combination(name, library, plans, ns)
                print(
                    f"  {name}: origin {row['origin']['requests_crowd']} requests in the crowd, "
                    f"peak {row['origin']['peak_rps']}/s, TTFB p99 "
                    f"{row['crowd']['segment_ttfb_ms']['p99']} ms, errors {row['crowd']['errors']}",
                    flush=True,
                )
    except (TopologyError, RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    goals = targets(rows, ns.target_peak_cut, ns.target_p99_cut)
    print_report(rows, goals)
    summary = {
        "scenario": "flashcrowd",
        "config": config_of(ns),
        "title": {
            "manifest": ns.manifest,
            "made_seconds": None if made is None else round(made, 1),
        },
        "combinations": rows,
        "targets": goals,
        "pass": all(g["pass"] is not False for g in goals),
        "host": host_facts(load_before),
    }
    write_summary(ns.json, summary)
    return 1 if ns.check and not summary["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
