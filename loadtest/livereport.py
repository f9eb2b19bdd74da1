"""The figures of a live run (``loadtest.live``), for its JSON summary, table and plots.

Per CDN (tiercdn, nginx): the viewers' requests and errors; each scheduled media
GET's first body byte against the reference probe's (the origin's first chunk of
the same object, ``loadtest.liveprobe``) and against the segment's availability;
the generator's own lateness in sending; playback latency and stalls; the bitrate
mix; requests per segment object at the regional and the origin, counted from their
access logs (``loadtest.accesslog``; the target is exactly one); per segment number the
same; the edge's CPU and RSS and the generator's CPU and loop lag over time.

Pure: it reads logs and samples after the run (the access log files excepted).
Percentiles are nearest-rank (``loadtest.stats``), in ms.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Sequence
from typing import Any

from loadtest.accesslog import Counts, count_requests, object_requests
from loadtest.liveviewer import Fetch, ViewerLog
from loadtest.stats import ms, percentile
from loadtest.tables import cell, dig, print_targets

__all__ = [
    "FIRST_BYTE_TARGET_MS",
    "Counts",
    "count_requests",
    "first_bytes",
    "print_table",
    "summarise_cdn",
    "targets",
    "usage_series",
]

FIRST_BYTE_TARGET_MS = 100.0
MEDIA = ("video", "audio")


def first_bytes(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """The probe's first body byte per path (its first whole 200)."""
    found: dict[str, float] = {}
    for r in records:
        if not r["error"] and r["first"] is not None and r["path"] not in found:
            found[r["path"]] = r["first"]
    return found


def _spread(seconds: Sequence[float]) -> dict[str, Any]:
    out: dict[str, Any] = {"count": len(seconds)}
    for p in (50, 90, 99, 99.9):
        out[f"p{p:g}"] = ms(percentile(seconds, p))
    out["max"] = ms(max(seconds, default=None))
    return out


def _tier(counts: Counts, objects: set[str], mpd: str) -> dict[str, Any]:
    return {
        **object_requests(counts, objects),
        "mpd_requests": sum(counts.get(mpd, {}).values()),
        "time_requests": sum(counts.get("/time", {}).values()),
    }


def _per_segment(media: Sequence[Fetch], probe: dict[str, float], tiers: dict[str, Counts],
                 fb: dict[int, list[float]]) -> list[dict[str, Any]]:  # fmt: skip
    paths: dict[int, set[str]] = collections.defaultdict(set)
    avail: dict[int, float] = {}
    for f in media:
        paths[f.n].add(f.path)
        avail.setdefault(f.n, f.availability)
    rows = []
    for n in sorted(paths):
        objs = paths[n]
        firsts = [probe[p] for p in objs if p in probe]
        row: dict[str, Any] = {"n": n, "objects": len(objs)}
        for name, counts in tiers.items():
            row[name] = sum(sum(counts.get(p, {}).values()) for p in objs)
        row["origin_first_chunk_after_availability_ms"] = (
            ms(min(firsts) - avail[n]) if firsts else None
        )
        row["first_byte_after_origin_ms"] = {
            "count": len(fb.get(n, [])),
            "p50": ms(percentile(fb.get(n, []), 50)),
            "p99": ms(percentile(fb.get(n, []), 99)),
        }
        rows.append(row)
    return rows


def summarise_cdn(
    logs: Sequence[ViewerLog],
    probe: dict[str, float],
    tiers: dict[str, Counts],
    mpd_path: str,
    kickoff: float,
    seconds: float,
) -> dict[str, Any]:
    """One CDN's figures (see the module); times in ``timeline`` from ``kickoff``."""
    fetches = [f for log in logs for f in log.fetches]
    media = [f for f in fetches if f.kind in MEDIA]
    errors = [f for f in fetches if f.error]
    on_time = [f for f in media if f.scheduled and not f.error and f.first is not None]
    after_origin = [(f, f.first - probe[f.path]) for f in on_time if f.first and f.path in probe]
    by_n: dict[int, list[float]] = collections.defaultdict(list)
    for f, d in after_origin:
        by_n[f.n].append(d)
    objects = {f.path for f in fetches if f.kind in (*MEDIA, "init")}
    latency = [log.playhead.latency for log in logs if log.playhead and log.playhead.latency]
    heads = [log.playhead for log in logs if log.playhead is not None]
    video = [f.rung for f in media if f.kind == "video" and not f.error]
    switches = 0
    for log in logs:
        rungs = [f.rung for f in log.fetches if f.kind == "video" and f.scheduled]
        switches += sum(a != b for a, b in zip(rungs, rungs[1:], strict=False))
    return {
        "viewers": {
            "planned": len(logs),
            "joined": sum(log.first_segment is not None for log in logs),
            "no_mpd": sum(bool(log.error) for log in logs),
            "rejoined": sum(log.rejoins for log in logs),
        },
        "requests": {
            "total": len(fetches),
            "media": len(media),
            "by_kind": dict(collections.Counter(f.kind for f in fetches)),
            "errors": len(errors),
            "error_examples": sorted({f"{f.kind} {f.error}" for f in errors})[:5],
            "segments_lost": sum(log.lost for log in logs),
            "scheduled_media": sum(f.scheduled for f in media),
        },
        "first_byte_after_origin_ms": _spread([d for _, d in after_origin]),
        # the CDN's own part: from the later of the request and the origin's first chunk
        # (a request the generator sent late waited in the generator, not in the CDN)
        "first_byte_after_send_or_origin_ms": _spread(
            [f.first - max(f.sent, probe[f.path]) for f, _ in after_origin if f.first]
        ),
        "first_byte_after_availability_ms": _spread(
            [f.first - f.availability for f in on_time if f.first is not None]
        ),  # fmt: skip
        "send_lag_ms": _spread([f.sent - f.availability for f in media if f.scheduled]),
        "latency_s": {
            "p50": _s(percentile(latency, 50)),
            "p99": _s(percentile(latency, 99)),
            "max": _s(max(latency, default=None)),
        },
        "stalls": {
            "count": sum(h.stalls for h in heads),
            "viewers_stalled": sum(h.stalls > 0 for h in heads),
            "stalled_s": round(sum(h.stalled for h in heads), 3),
        },
        "abr": {
            "mix": {str(k): round(video.count(k) / len(video), 4) for k in sorted(set(video))},
            "switches": switches,
        },
        "tiers": {name: _tier(counts, objects, mpd_path) for name, counts in tiers.items()},
        "per_segment": _per_segment(media, probe, tiers, by_n),
        "timeline": _client_series(media, after_origin, kickoff, seconds),
    }


def _s(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def _client_series(
    media: Sequence[Fetch],
    after_origin: Sequence[tuple[Fetch, float]],
    kickoff: float,
    seconds: float,
) -> dict[str, Any]:
    n = max(1, math.ceil(seconds))
    sent, errors = [0] * n, [0] * n
    fb: list[list[float]] = [[] for _ in range(n)]

    def bucket(t: float) -> int:
        return min(n - 1, max(0, int(t - kickoff)))

    for f in media:
        sent[bucket(f.sent)] += 1
        errors[bucket(f.sent)] += bool(f.error)
    for f, d in after_origin:
        fb[bucket(f.sent)].append(d)
    return {
        "t": list(range(n)),
        "media_requests": sent,
        "errors": errors,
        "first_byte_p50_ms": [ms(percentile(v, 50)) for v in fb],
        "first_byte_p99_ms": [ms(percentile(v, 99)) for v in fb],
    }


def usage_series(samples: Sequence[tuple[float, dict[str, float | None]]],
                 kickoff: float) -> dict[str, Any]:  # fmt: skip
    """CPU % (of one core) between samples and RSS (MiB) of each measured process, from
    ``(time.time(), {"edge_cpu": s, "edge_rss": bytes, ...})`` samples."""
    out: dict[str, Any] = {"t": [round(t - kickoff, 2) for t, _ in samples[1:]]}
    names = {k.rsplit("_", 1)[0] for _, s in samples for k in s}
    for name in sorted(names):
        cpu: list[float | None] = []
        for (t0, a), (t1, b) in zip(samples, samples[1:], strict=False):
            x, y = a.get(f"{name}_cpu"), b.get(f"{name}_cpu")
            cpu.append(
                None if x is None or y is None or t1 <= t0 else round(100 * (y - x) / (t1 - t0), 1)
            )
        out[f"{name}_cpu_pct"] = cpu
        rss = [s.get(f"{name}_rss") for _, s in samples[1:]]
        out[f"{name}_rss_mib"] = [None if v is None else round(v / 2**20, 1) for v in rss]
        if f"{name}_lag" in samples[-1][1]:
            out[f"{name}_loop_lag_ms"] = [ms(s.get(f"{name}_lag")) for _, s in samples[1:]]
    return out


def _figures(values: Sequence[float | None]) -> dict[str, float | None]:
    seen = [v for v in values if v is not None]
    return {
        "mean": round(sum(seen) / len(seen), 1) if seen else None,
        "max": max(seen, default=None),
    }


def usage_figures(series: dict[str, Any]) -> dict[str, Any]:
    """Mean and max of each usage series."""
    return {k: _figures(v) for k, v in series.items() if k != "t"}


def targets(name: str, s: dict[str, Any]) -> list[dict[str, Any]]:
    """The live targets, judged on one CDN's figures (n/a where a figure is missing)."""
    tiers = s["tiers"]
    worst = {k: t["max_per_object"] for k, t in tiers.items()}
    once = None
    if tiers:
        once = all(t["max_per_object"] == 1 and not t["objects_missing"] for t in tiers.values())
    errors = s["requests"]["errors"]
    p99 = s["first_byte_after_origin_ms"]["p99"]
    fast = None if p99 is None else p99 <= FIRST_BYTE_TARGET_MS
    goal = f"<= {FIRST_BYTE_TARGET_MS:g} ms"
    return [
        _goal(f"{name}: 1 request per segment object per tier", "max 1", worst, once),
        _goal(f"{name}: errors", "0", errors, errors == 0),
        _goal(f"{name}: p99 first byte after the origin's", goal, f"{p99} ms", fast),
    ]


def _goal(target: str, goal: str, seen: Any, ok: bool | None) -> dict[str, Any]:
    return {"target": target, "goal": goal, "seen": seen, "pass": ok}


_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("viewers joined", ("viewers", "joined")),
    ("media requests", ("requests", "media")),
    ("  sent at availability", ("requests", "scheduled_media")),
    ("errors (failed GETs)", ("requests", "errors")),
    ("segments lost", ("requests", "segments_lost")),
    ("regional: segment objects", ("tiers", "regional", "objects")),
    ("regional: requests for them", ("tiers", "regional", "requests")),
    ("regional: max per object", ("tiers", "regional", "max_per_object")),
    ("regional: MPD requests", ("tiers", "regional", "mpd_requests")),
    ("origin: requests for them", ("tiers", "origin", "requests")),
    ("origin: max per object", ("tiers", "origin", "max_per_object")),
    ("origin: MPD requests", ("tiers", "origin", "mpd_requests")),
    ("1st byte after origin p50 ms", ("first_byte_after_origin_ms", "p50")),
    ("1st byte after origin p90 ms", ("first_byte_after_origin_ms", "p90")),
    ("1st byte after origin p99 ms", ("first_byte_after_origin_ms", "p99")),
    ("1st byte after origin max ms", ("first_byte_after_origin_ms", "max")),
    ("1st byte after max(sent, origin) p50", ("first_byte_after_send_or_origin_ms", "p50")),
    ("1st byte after max(sent, origin) p99", ("first_byte_after_send_or_origin_ms", "p99")),
    ("1st byte after avail. p50 ms", ("first_byte_after_availability_ms", "p50")),
    ("1st byte after avail. p99 ms", ("first_byte_after_availability_ms", "p99")),
    ("generator send lag p50 ms", ("send_lag_ms", "p50")),
    ("generator send lag p99 ms", ("send_lag_ms", "p99")),
    ("playback latency p50 s", ("latency_s", "p50")),
    ("playback latency p99 s", ("latency_s", "p99")),
    ("stalls", ("stalls", "count")),
    ("viewers stalled", ("stalls", "viewers_stalled")),
    ("edge CPU mean %", ("usage", "edge_cpu_pct", "mean")),
    ("edge CPU max %", ("usage", "edge_cpu_pct", "max")),
    ("edge RSS max MiB", ("usage", "edge_rss_mib", "max")),
    ("generator CPU mean %", ("usage", "generator_cpu_pct", "mean")),
    ("generator CPU max %", ("usage", "generator_cpu_pct", "max")),
    ("generator loop lag max ms", ("usage", "generator_loop_lag_ms", "max")),
)


def print_table(cdns: dict[str, dict[str, Any]]) -> None:
    """The CDNs side by side, a row per figure, then every target's verdict."""
    names = list(cdns)
    width, label = 12, max(len(r[0]) for r in _ROWS) + 2
    print(f"\n{'':<{label}}" + "".join(f"{n:>{width}}" for n in names))
    for title, path in _ROWS:
        print(f"{title:<{label}}" + "".join(cell(dig(cdns[n], path), width) for n in names))
    for n in names:
        mix = dig(cdns[n], ("abr", "mix")) or {}
        print(f"{n} rung mix: " + ", ".join(f"rung {k} {100 * v:.0f}%" for k, v in mix.items()))
    goals = [g for n in names for g in targets(n, cdns[n])]
    print_targets(goals, max(len(g["target"]) for g in goals), 10)
