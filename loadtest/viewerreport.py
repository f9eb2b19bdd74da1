"""The figures of a viewers run (``loadtest.viewers``), for its JSON summary and plots.

Per request TTFB and time to the last byte, and each viewer's startup, in
HdrHistograms of microseconds (1 µs .. 120 s, 3 significant digits; 2 per
plot step), reported in ms; stalls, rebuffer ratio (stalled share of the
viewer-seconds in playback), rung switches and the bitrate mix. From each
tier's request counters sampled during the run (``topology.request_counts``):
the hit ratio of edge and regional (hits = ``hit`` + ``stale``) and the
origin's requests/s; a counter that goes down means the tier was restarted,
and counts from zero. Around each chaos event, errors and stalls in equal
windows before, during and after it. The plots (``loadtest.plots``) read the
``timeline``.

Per protocol (``by_protocol``: DASH and HLS viewers of a ``--protocol mix``
run apart), the same figures. Per segment object (init and media segments the
viewers asked for), the requests that reached the origin, from its access log
(``loadtest.accesslog``), for the objects only DASH viewers, only HLS viewers
and both asked for (``origin_objects``): the segments are the same files, so
the target is one origin request per object whatever the protocol mix.

Pure: it reads the viewers' logs, the samples and the access log's counts after
the run.
``hdrhistogram`` is imported only when a figure needs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from loadtest.accesslog import Counts, object_requests
from loadtest.player import ViewerLog
from loadtest.tables import cell, dig, print_targets

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

__all__ = [
    "SETTLE_SECONDS",
    "around_events",
    "by_protocol",
    "client_series",
    "origin_objects",
    "percentiles",
    "print_summary",
    "summarise",
    "targets",
    "tier_series",
]

HIT_OUTCOMES = ("hit", "stale")
SEGMENT_KINDS = ("init", "video", "audio")  # the requests for segment objects
MANIFEST_SUFFIXES = {"mpd": ".mpd", "playlists": ".m3u8"}
SETTLE_SECONDS = 2.0  # an event's window runs until this long after the tier is back
_US_MAX = 120_000_000  # histograms hold 1 µs .. 120 s

TierSamples = Sequence[tuple[float, dict[str, dict[str, float] | None]]]


def _histogram(digits: int = 3) -> HdrHistogram:
    from hdrh.histogram import HdrHistogram

    return HdrHistogram(1, _US_MAX, digits)


def _record(hist: HdrHistogram, seconds: float) -> None:
    hist.record_value(min(_US_MAX, max(1, round(seconds * 1e6))))


def _ms(us: float) -> float:
    return round(us / 1000, 2)


def percentiles(hist: HdrHistogram) -> dict[str, float | int | None]:
    """count, mean, p50/p90/p99/p99.9 and max in ms of an HdrHistogram of µs."""
    count = int(hist.get_total_count())
    if not count:
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "p99.9": None,
                "max": None}  # fmt: skip
    out: dict[str, float | int | None] = {"count": count, "mean": _ms(hist.get_mean_value())}
    for p in (50, 90, 99, 99.9):
        out[f"p{p:g}"] = _ms(hist.get_value_at_percentile(p))
    out["max"] = _ms(hist.get_max_value())
    return out


def _overlap(a: float, b: float, lo: float, hi: float) -> float:
    return max(0.0, min(b, hi) - max(a, lo))


# -- the tiers ------------------------------------------------------------------------------


def _deltas(samples: TierSamples, tier: str) -> list[tuple[float, float, dict[str, float]]]:
    """``(t, dt, increase per label)`` between successive answered samples of ``tier``; a
    total that went down means a restart, so the new counts are the increase."""
    out = []
    last: tuple[float, dict[str, float]] | None = None
    for t, found in samples:
        now = found.get(tier)
        if now is None:
            continue
        if last is not None:
            before = last[1]
            reset = sum(now.values()) < sum(before.values())
            inc = {k: v - (0.0 if reset else before.get(k, 0.0)) for k, v in now.items()}
            out.append((t, t - last[0], inc))
        last = (t, now)
    return out


def _hit_ratio(counts: dict[str, float]) -> float | None:
    total = sum(counts.values())
    return round(sum(counts.get(o, 0.0) for o in HIT_OUTCOMES) / total, 4) if total else None


def tier_series(samples: TierSamples) -> tuple[dict[str, Any], dict[str, Any]]:
    """(per-interval series for the plots, totals per tier for the summary) from
    ``(seconds from the run's start, topology.request_counts())`` samples."""
    series: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    for tier in ("edge", "regional", "origin"):
        steps = _deltas(samples, tier)
        if not steps and not any(f.get(tier) is not None for _, f in samples):
            continue
        summed: dict[str, float] = {}
        for _, _, inc in steps:
            for k, v in inc.items():
                summed[k] = summed.get(k, 0.0) + v
        times = [round(t, 3) for t, _, _ in steps]
        if tier == "origin":
            rps = [
                round(inc.get("requests", 0.0) / dt, 2) if dt > 0 else None for _, dt, inc in steps
            ]
            series["origin_rps"] = {"t": times, "value": rps}
            peak = max((r for r in rps if r is not None), default=None)
            totals[tier] = {"requests": round(summed.get("requests", 0.0)), "peak_rps": peak}
        else:
            series[f"{tier}_hit_ratio"] = {
                "t": times,
                "value": [_hit_ratio(i) for _, _, i in steps],
            }
            totals[tier] = {"outcomes": {k: round(v) for k, v in sorted(summed.items())},
                            "hit_ratio": _hit_ratio(summed)}  # fmt: skip
        totals[tier]["unanswered_samples"] = sum(f.get(tier) is None for _, f in samples)
    return series, totals


# -- the viewers ----------------------------------------------------------------------------


def client_series(logs: Sequence[ViewerLog], seconds: float, step: float) -> dict[str, Any]:
    """Per ``step`` seconds of the run (``t``: each step's start): media requests, errors,
    TTFB p50/p99 (HdrHistogram), mean viewers playing, rebuffer ratio (stalled / in-playback
    viewer-seconds), share of video requests per rung."""
    n = max(1, math.ceil(seconds / step))
    hists = [_histogram(2) for _ in range(n)]
    requests, errors = [0] * n, [0] * n
    rungs: dict[int, list[int]] = {}
    for log in logs:
        for r in log.requests:
            b = min(n - 1, max(0, int(r.at / step)))
            errors[b] += bool(r.error)
            if r.kind not in ("video", "audio"):
                continue
            requests[b] += 1
            if r.ttfb is not None and not r.error:
                _record(hists[b], r.ttfb)
            if r.kind == "video":
                rungs.setdefault(r.rank, [0] * n)[b] += 1
    active, stalled = [0.0] * n, [0.0] * n
    for log in logs:
        if log.playing is None or log.drained is None:
            continue
        for b in range(n):
            lo, hi = b * step, (b + 1) * step
            active[b] += _overlap(log.playing, log.drained, lo, hi)
            stalled[b] += sum(_overlap(s, e, lo, hi) for s, e in log.stalls)
    videos = [sum(c[b] for c in rungs.values()) for b in range(n)]
    stats = [percentiles(h) for h in hists]
    return {
        "step": step,
        "t": [round(b * step, 3) for b in range(n)],
        "media_requests": requests,
        "errors": errors,
        "ttfb_p50_ms": [s["p50"] for s in stats],
        "ttfb_p99_ms": [s["p99"] for s in stats],
        "viewers_playing": [round(a / step, 2) for a in active],
        "rebuffer_ratio": [
            round(s / a, 4) if a > 0 else None for s, a in zip(stalled, active, strict=True)
        ],
        "rung_share": {
            str(rank): [round(c[b] / videos[b], 4) if videos[b] else None for b in range(n)]
            for rank, c in sorted(rungs.items())
        },
    }


def around_events(
    logs: Sequence[ViewerLog], events: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """For each chaos event, errors and stalls in the same-length windows before it,
    during it (from the stop until ``SETTLE_SECONDS`` after the tier answered again) and
    after it."""
    out = []
    for ev in events:
        end = ev.get("ready_at", ev["stop_at"]) + SETTLE_SECONDS
        length = end - ev["stop_at"]
        stop = ev["stop_at"]
        windows = {"before": (stop - length, stop), "during": (stop, end)}
        windows["after"] = (end, end + length)
        row: dict[str, Any] = {"tier": ev["tier"], "signal": ev["signal"]}
        row["window_s"] = round(length, 2)
        for name, (lo, hi) in windows.items():
            reqs = [r for log in logs for r in log.requests if lo <= r.at < hi]
            stalled = [sum(_overlap(a, b, lo, hi) for a, b in log.stalls) for log in logs]
            left = [log.ended for log in logs if log.error and log.ended is not None]
            row[name] = {
                "requests": len(reqs),
                "errors": sum(bool(r.error) for r in reqs),
                "stalled_s": round(sum(stalled), 3),
                "viewers_stalled": sum(s > 0 for s in stalled),
                "viewers_left": sum(lo <= t < hi for t in left),
            }
        out.append(row)
    return out


def summarise(logs: Sequence[ViewerLog], ladder: dict[int, str]) -> dict[str, Any]:
    """The viewers' figures over the whole run."""
    ttfb, total, startup = _histogram(), _histogram(), _histogram()
    requests = [r for log in logs for r in log.requests]
    media = [r for r in requests if r.kind in ("video", "audio")]
    for r in media:
        if not r.error and r.ttfb is not None and r.total is not None:
            _record(ttfb, r.ttfb)
            _record(total, r.total)
    for log in logs:
        if log.playing is not None and log.started is not None:
            _record(startup, log.playing - log.started)
    errors = [r.error for r in requests if r.error]
    stall = sum(b - a for log in logs for a, b in log.stalls)
    session = sum(  # from playback's start to its buffer's end, stalls included
        log.drained - log.playing
        for log in logs
        if log.playing is not None and log.drained is not None
    )
    played = max(0.0, session - stall)
    video = [r.rank for r in media if r.kind == "video" and not r.error]
    titles: dict[str, int] = {}
    for log in logs:
        titles[log.manifest] = titles.get(log.manifest, 0) + 1
    return {
        "viewers": {
            "planned": len(logs),
            "started": sum(log.started is not None for log in logs),
            "played": sum(log.playing is not None for log in logs),
            "finished": sum(log.done for log in logs),
            "left_on_errors": sum(bool(log.error) for log in logs),
            "cut_by_duration": sum(
                log.started is not None and not log.done and not log.error for log in logs
            ),
        },  # fmt: skip
        "titles": dict(sorted(titles.items(), key=lambda kv: -kv[1])),
        "requests": {
            "total": len(requests),
            "media": len(media),
            "errors": len(errors),
            "error_examples": sorted(set(errors))[:5],
        },  # fmt: skip
        "segment_ttfb_ms": percentiles(ttfb),
        "segment_download_ms": percentiles(total),
        "startup_ms": percentiles(startup),
        "rebuffer": {
            "ratio": round(stall / (stall + played), 4) if stall + played > 0 else None,
            "stalled_s": round(stall, 3),
            "stalls": sum(len(log.stalls) for log in logs),
            "viewers_stalled": sum(bool(log.stalls) for log in logs),
            "played_s": round(played, 3),
        },
        "abr": {
            "switches_up": sum(log.ups for log in logs),
            "switches_down": sum(log.downs for log in logs),
            "rungs": {str(k): v for k, v in sorted(ladder.items())},
            "mix": {str(k): round(video.count(k) / len(video), 4) for k in sorted(set(video))},
        },
    }


def by_protocol(logs: Sequence[ViewerLog], ladders: dict[str, dict[int, str]]) -> dict[str, Any]:
    """``summarise`` of each protocol's viewers apart, with its own ladder."""
    protocols = sorted({log.protocol for log in logs})
    return {
        p: summarise([log for log in logs if log.protocol == p], ladders.get(p, {}))
        for p in protocols
    }


def origin_objects(logs: Sequence[ViewerLog], counts: Counts) -> dict[str, Any]:
    """Origin requests (``counts``, from its access log) for the segment objects the
    viewers asked for: those only DASH viewers asked for, only HLS ones, both, and all;
    and the origin's requests for manifests (MPDs, playlists)."""
    askers: dict[str, set[str]] = {}
    for log in logs:
        for r in log.requests:
            if r.kind in SEGMENT_KINDS:
                askers.setdefault(r.path, set()).add(log.protocol)
    groups = {
        "dash_only": [o for o, a in askers.items() if a == {"dash"}],
        "hls_only": [o for o, a in askers.items() if a == {"hls"}],
        "both": [o for o, a in askers.items() if len(a) > 1],
        "all": list(askers),
    }
    out: dict[str, Any] = {k: object_requests(counts, v) for k, v in groups.items()}
    out["manifests"] = {
        kind: sum(sum(c.values()) for path, c in counts.items() if path.endswith(suffix))
        for kind, suffix in MANIFEST_SUFFIXES.items()
    }
    return out


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    """The viewers' targets: no error, and one origin request per segment object (not
    judged in chaos, whose restarts empty the caches, nor without the origin's log)."""
    errors = s["requests"]["errors"]
    goals = [{"target": "errors", "goal": "0", "seen": errors, "pass": errors == 0}]
    found = s.get("origin_objects")
    if found is not None:
        worst = {k: v["max_per_object"] for k, v in found.items() if k != "manifests"}
        judged = s["scenario"] != "chaos"
        once = found["all"]["max_per_object"] == 1 and not found["all"]["objects_missing"]
        goals.append({"target": "origin: 1 request per segment object", "goal": "max 1",
                      "seen": worst, "pass": once if judged else None})  # fmt: skip
    return goals


_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("viewers", ("viewers", "planned")),
    ("  played", ("viewers", "played")),
    ("  finished", ("viewers", "finished")),
    ("  left on errors", ("viewers", "left_on_errors")),
    ("requests", ("requests", "total")),
    ("  media segments", ("requests", "media")),
    ("  errors", ("requests", "errors")),
    ("startup p50 ms", ("startup_ms", "p50")),
    ("startup p99 ms", ("startup_ms", "p99")),
    ("segment TTFB p50 ms", ("segment_ttfb_ms", "p50")),
    ("segment TTFB p99 ms", ("segment_ttfb_ms", "p99")),
    ("segment download p99 ms", ("segment_download_ms", "p99")),
    ("stalls", ("rebuffer", "stalls")),
    ("viewers stalled", ("rebuffer", "viewers_stalled")),
    ("rebuffer ratio %", ("rebuffer", "percent")),
    ("rung switches up", ("abr", "switches_up")),
    ("rung switches down", ("abr", "switches_down")),
)
_ORIGIN_ROWS: tuple[tuple[str, str], ...] = (
    ("segment objects", "objects"),
    ("origin requests", "requests"),
    ("max per object", "max_per_object"),
    ("objects over one", "objects_over_one"),
    ("objects never fetched", "objects_missing"),
)


def _with_percent(s: dict[str, Any]) -> dict[str, Any]:
    ratio = s["rebuffer"]["ratio"]
    rebuffer = {**s["rebuffer"], "percent": None if ratio is None else 100.0 * ratio}
    return {**s, "rebuffer": rebuffer}


def print_table(s: dict[str, Any]) -> None:
    """The protocols side by side (and the whole run), then the origin's requests per
    segment object by who asked for it, then the targets."""
    columns = {**s.get("protocols", {}), "all": s}
    columns = {k: _with_percent(v) for k, v in columns.items()}
    width, label = 10, max(len(r[0]) for r in _ROWS) + 2
    print(f"\n{'':<{label}}" + "".join(f"{n:>{width}}" for n in columns))
    for title, path in _ROWS:
        print(f"{title:<{label}}" + "".join(cell(dig(c, path), width) for c in columns.values()))
    for name, c in columns.items():
        names, mix = c["abr"]["rungs"], c["abr"]["mix"]
        rungs = ", ".join(f"{names.get(k, k)} {100 * v:.0f}%" for k, v in mix.items())
        print(f"{name} bitrate mix: {rungs or '-'}")
    found = s.get("origin_objects")
    if found is None:
        print("\norigin: no access log, no requests per object")
    else:
        groups = ("dash_only", "hls_only", "both", "all")
        print(f"\n{'asked for by':<{label}}" + "".join(f"{g:>{width}}" for g in groups))
        for title, key in _ORIGIN_ROWS:
            print(f"{title:<{label}}" + "".join(cell(found[g][key], width) for g in groups))
        m = found["manifests"]
        print(f"origin manifest requests: {m['mpd']} MPD, {m['playlists']} HLS playlists")
    goals = targets(s)
    print_targets(goals, max(len(g["target"]) for g in goals), 8)


def print_summary(s: dict[str, Any]) -> None:
    """The summary's headline, each tier's totals, each event's windows, the table and
    the plots."""
    v, r, t = s["viewers"], s["rebuffer"], s["segment_ttfb_ms"]
    print(
        f"{s['scenario']}: {v['played']}/{v['planned']} viewers played, {v['finished']} finished,"
        f" {v['left_on_errors']} left on errors, {v['cut_by_duration']} cut;"
        f" TTFB p50 {t['p50']} p99 {t['p99']} ms; rebuffer {r['ratio']} ({r['stalled_s']} s);"
        f" errors {s['requests']['errors']}/{s['requests']['total']}"
    )
    for name, tier in s["tiers"].items():
        print(f"  {name}: {tier}")
    for row in s["around_events"]:
        print(
            f"  {row['tier']} {row['signal']}: before {row['before']},"
            f" during {row['during']}, after {row['after']}"
        )
    print_table(s)
    for path in s.get("plots", []):
        print(f"  plot: {path}")
