"""The admission benchmark's verdicts, table and plot (``loadtest.zipf``).

A trace's result is the JSON summary's own dict: ``offline`` (tiercdn's
policies in-process, and the oracles), ``libcachesim`` (its policies on the
same trace and budget), ``http`` (tiercdn's policies through a real edge, on
the trace's first requests) and ``http_offline`` (in-process on that same
prefix, to compare with). Every figure is printed, the misses as well.

Targets (issue 15), judged on the in-process figures of the whole trace:

- static traces: tinylfu beats lru and, at α 0.8, closes half of the
  lru → Belady gap (the original targets); adaptive is no worse than tinylfu
  (today's default) and at least every libCacheSim online policy, by object
  and by byte hit ratio;
- shift traces: adaptive at least the best libCacheSim online policy, by
  object and by byte hit ratio (the best of each, which may be two policies).

matplotlib is imported when plotting, never at import time, and only its
object API is used (``Figure``): no pyplot state, no display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["judge", "plot", "print_trace"]

OURS = ("lru", "tinylfu", "adaptive")
_ORACLES = ("static_top_k", "belady")
_OBJ, _BYTE = "object_hit_ratio", "byte_hit_ratio"


def _best(rows: dict[str, dict[str, Any]], metric: str) -> tuple[str, float] | None:
    if not rows:
        return None
    name = max(rows, key=lambda n: rows[n][metric])
    return name, rows[name][metric]


def judge(result: dict[str, Any], online: Sequence[str]) -> dict[str, Any]:
    """The targets of one trace's result (see the module notes); ``met`` sums them up,
    ``adaptive_met`` the adaptive ones (None where libCacheSim did not run)."""
    off = result["offline"]
    lcs = {n: r for n, r in result["libcachesim"].items() if n in online}
    out: dict[str, Any] = {}
    if result["kind"] == "static":
        lru, tiny, best = (off[p][_OBJ] for p in ("lru", "tinylfu", "belady"))
        gap = (tiny - lru) / (best - lru) if best > lru else None
        out |= {"beats_lru": tiny > lru, "gap_closed": gap and round(gap, 3)}
        if math.isclose(result["alpha"], 0.8):
            out["closes_half_gap"] = gap is not None and gap >= 0.5
        out["tinylfu_met"] = out["beats_lru"] and out.get("closes_half_gap", True)
        out["adaptive_vs_tinylfu"] = {
            m: round(off["adaptive"][m] - off["tinylfu"][m], 4) for m in (_OBJ, _BYTE)
        }
    margins = {}
    for metric in (_OBJ, _BYTE):
        best_online = _best(lcs, metric)
        if best_online is not None:
            name, value = best_online
            margins[metric] = {"best": name, "margin": round(off["adaptive"][metric] - value, 4)}
    out["adaptive_vs_best_online"] = margins or None
    checks = [m["margin"] >= 0 for m in margins.values()] if margins else []
    if "adaptive_vs_tinylfu" in out:
        checks += [d >= 0 for d in out["adaptive_vs_tinylfu"].values()]
    out["adaptive_met"] = all(checks) if margins else None
    out["met"] = out.get("tinylfu_met", True) and out["adaptive_met"] is not False
    return out


def print_trace(result: dict[str, Any]) -> None:
    """One trace's table: every policy by object and byte hit ratio, then its verdicts."""
    head = f"\n{result['name']}: {result['requests']} requests"
    head += f" of {result['objects_requested']} objects"
    print(head + f", cache {result['cache_bytes'] / 1e6:.2f} MB")
    print(f"{'policy':<36} {'object hit':>10} {'byte hit':>9}  notes")
    rows = [(f"tiercdn {p}", result["offline"][p]) for p in OURS]
    rows += [(f"libCacheSim {n}", r) for n, r in result["libcachesim"].items()]
    rows += [(f"oracle {n}", result["offline"][n]) for n in _ORACLES]
    http: dict[str, dict[str, Any]] = result["http"]
    prefix = next((r["requests"] for r in http.values()), None)
    for p, r in http.items():
        rows.append((f"tiercdn {p} http (first {prefix})", r))
        rows.append((f"tiercdn {p} in-process (same)", result["http_offline"][p]))
    shown = ("requests_per_second", "admitted", "rejected", "evictions", "objects_cached")
    for name, r in rows:
        extra = r | r.get("edge_stats", {})
        notes = " ".join(f"{k}={extra[k]}" for k in shown if k in extra)
        for flag in ("errors", "truncated"):
            if r.get(flag):
                notes += f" {flag.upper()}={r[flag]}"
        print(f"{name:<36} {r[_OBJ]:>10.3f} {r[_BYTE]:>9.3f}  {notes}")
    _print_goals(result["targets"])


def _print_goals(goal: dict[str, Any]) -> None:
    yes = {True: "yes", False: "NO", None: "-"}
    if "beats_lru" in goal:
        line = f"  tinylfu > lru: {yes[goal['beats_lru']]}; gap lru->belady closed: "
        line += f"{goal['gap_closed'] if goal['gap_closed'] is not None else '-'}"
        if "closes_half_gap" in goal:
            line += f" (>= 0.5: {yes[goal['closes_half_gap']]})"
        print(line)
        d = goal["adaptive_vs_tinylfu"]
        print(f"  adaptive - tinylfu: object {d[_OBJ]:+.4f}, byte {d[_BYTE]:+.4f}")
    for metric, m in (goal["adaptive_vs_best_online"] or {}).items():
        what = "object" if metric == _OBJ else "byte"
        print(f"  adaptive - best online ({m['best']}) by {what}: {m['margin']:+.4f}")
    print(f"  adaptive targets met: {yes[goal['adaptive_met']]}", flush=True)


def plot(results: Sequence[dict[str, Any]], path: Path) -> Path:
    """Grouped bars, object hit ratio above byte hit ratio, a group per trace; the axes
    start near the lowest bar so differences of 0.01 show."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    names = [f"tiercdn {p}" for p in OURS]
    names += [f"libCacheSim {n}" for n in results[0]["libcachesim"]]
    names += ["oracle belady"]

    def value(r: dict[str, Any], name: str, metric: str) -> float:
        kind, _, policy = name.partition(" ")
        rows = r["libcachesim"] if kind == "libCacheSim" else r["offline"]
        return float(rows[policy][metric]) if policy in rows else math.nan

    fig = Figure(figsize=(max(8.0, 2.4 * len(results)), 9), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    width = 0.85 / len(names)
    colours = [colormaps["tab20"](i / 20) for i in range(20)]
    for ax, metric, label in zip(axes, (_OBJ, _BYTE), ("object", "byte"), strict=True):
        low = 1.0
        for i, name in enumerate(names):
            xs = [j + (i - len(names) / 2 + 0.5) * width for j in range(len(results))]
            ys = [value(r, name, metric) for r in results]
            low = min([low, *(y for y in ys if not math.isnan(y))])
            hatch = "//" if name.startswith("tiercdn") else None
            ax.bar(xs, ys, width, label=name, hatch=hatch, color=colours[i % len(colours)])
        ax.set_ylim(bottom=max(0.0, low - 0.05))
        ax.set_ylabel(f"{label} hit ratio")
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(range(len(results)))
    axes[1].set_xticklabels([r["name"].replace(": ", "\n") for r in results], fontsize="small")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=6)
    fig.suptitle("Edge cache admission: same traces, same byte budget")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
