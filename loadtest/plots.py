"""PNG plots of a viewers run (``loadtest.viewers``) over time, for a person to read at a glance.

One PNG per figure (hit ratio per tier, origin requests/s, TTFB p99, rebuffer
ratio, bitrate mix) and one overview stacking them on a shared time axis.
Chaos events are shaded from the stop until the tier answered again, and named.

matplotlib is imported when plotting, never at import time, and only its
object API is used (``Figure`` on the Agg canvas): no pyplot state, no display.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PANELS", "plot_run"]

_Loc = Literal["best", "upper right", "lower left"]
_TIME = "time since the run started (s)"
_RUNG_COLOURS = ("#9ecae1", "#4292c6", "#2171b5", "#08519c", "#08306b", "#041c3f")


def _line(ax: Axes, series: dict[str, Any] | None, label: str, **kw: Any) -> bool:
    if not series or not series["t"]:
        return False
    ax.plot(
        series["t"], [float("nan") if v is None else v for v in series["value"]], label=label, **kw
    )
    return True


def _scaled(series: dict[str, Any] | None, factor: float) -> dict[str, Any] | None:
    if series is None:
        return None
    return {"t": series["t"], "value": [None if v is None else v * factor for v in series["value"]]}


def hit_ratio(ax: Axes, s: dict[str, Any]) -> None:
    tiers = s["timeline"]["tiers"]
    drawn = _line(
        ax, _scaled(tiers.get("edge_hit_ratio"), 100), "edge", marker=".", color="#1b9e77"
    )
    drawn |= _line(
        ax, _scaled(tiers.get("regional_hit_ratio"), 100), "regional", marker=".", color="#d95f02"
    )
    ax.set(title="Cache hit ratio per tier (hits / requests, each sample interval)",
           ylabel="hit ratio (%)", ylim=(-2, 102))  # fmt: skip
    _legend(ax, drawn)


def origin_rps(ax: Axes, s: dict[str, Any]) -> None:
    drawn = _line(
        ax, s["timeline"]["tiers"].get("origin_rps"), "origin", marker=".", color="#7570b3"
    )
    ax.set(title="Requests reaching the origin", ylabel="requests / s")
    ax.set_ylim(bottom=0)
    _legend(ax, drawn)


def _mid(c: dict[str, Any]) -> list[float]:
    return [t + c["step"] / 2 for t in c["t"]]


def _per(c: dict[str, Any]) -> str:
    return "per second" if c["step"] == 1 else f"per {c['step']:g} s"


def ttfb(ax: Axes, s: dict[str, Any]) -> None:
    c = s["timeline"]["client"]
    _line(ax, {"t": _mid(c), "value": c["ttfb_p99_ms"]}, "p99", marker=".", color="#e7298a")
    _line(ax, {"t": _mid(c), "value": c["ttfb_p50_ms"]}, "p50", linestyle="--", color="#666666")
    ax.set(title=f"Media segment time to first byte at the viewers ({_per(c)})", ylabel="TTFB (ms)")
    ax.set_ylim(bottom=0)
    _legend(ax, True)


def rebuffer(ax: Axes, s: dict[str, Any]) -> None:
    c = s["timeline"]["client"]
    ratio = [None if v is None else 100 * v for v in c["rebuffer_ratio"]]
    bars = [0 if v is None else v for v in ratio]
    ax.bar(_mid(c), bars, width=0.9 * c["step"], color="#d62728", label="stalled")
    top = max(5.0, *(v or 0 for v in ratio)) * 1.1
    ax.set(title=f"Rebuffer ratio (stalled share of viewer-seconds in playback, {_per(c)})",
           ylabel="rebuffering (%)", ylim=(0, top))  # fmt: skip
    twin = ax.twinx()
    twin.plot(_mid(c), c["viewers_playing"], color="#444444", linewidth=1, label="viewers playing")
    twin.set_ylabel("viewers playing")
    twin.set_ylim(bottom=0)
    lines = [*ax.get_legend_handles_labels()[0], *twin.get_legend_handles_labels()[0]]
    ax.legend(lines, [str(h.get_label()) for h in lines], loc="upper right", fontsize="small")


def bitrate_mix(ax: Axes, s: dict[str, Any]) -> None:
    c = s["timeline"]["client"]
    names = s["abr"]["rungs"]
    shares = c["rung_share"]
    rungs = sorted(shares, key=int)
    if rungs:
        edges = [*c["t"], c["t"][-1] + c["step"]]  # each step drawn over its own interval
        ax.stackplot(
            edges,
            *[[100 * (v or 0) for v in [*shares[r], shares[r][-1]]] for r in rungs],
            labels=[f"rung {r}: {names.get(r, '?')}" for r in rungs],
            colors=[_RUNG_COLOURS[min(int(r), len(_RUNG_COLOURS) - 1)] for r in rungs],
            step="post",
        )
    ax.set(title=f"Bitrate mix: share of video segment requests per rung ({_per(c)})",
           ylabel="share of requests (%)", ylim=(0, 100))  # fmt: skip
    _legend(ax, bool(rungs), loc="lower left")


PANELS: dict[str, Callable[[Axes, dict[str, Any]], None]] = {
    "hit-ratio": hit_ratio,
    "origin-rps": origin_rps,
    "ttfb-p99": ttfb,
    "rebuffer": rebuffer,
    "bitrate-mix": bitrate_mix,
}


def _legend(ax: Axes, drawn: bool, loc: _Loc = "best") -> None:
    if drawn:
        ax.legend(loc=loc, fontsize="small")
    else:
        ax.text(0.5, 0.5, "no data (tier not sampled)", transform=ax.transAxes, ha="center")


def _events(ax: Axes, events: Sequence[dict[str, Any]], label: bool) -> None:
    for ev in events:
        start, end = ev["stop_at"], ev.get("ready_at", ev["stop_at"])
        ax.axvspan(start, max(end, start + 0.2), color="#ff7f00", alpha=0.18, linewidth=0)
        ax.axvline(start, color="#ff7f00", linewidth=1)
        if label:
            ax.text(start, 1.0, f" {ev['tier']} {ev['signal']}", transform=ax.get_xaxis_transform(),
                    va="top", ha="left", fontsize="small", color="#b35806")  # fmt: skip


def _frame(ax: Axes, s: dict[str, Any], panel: str, xlabel: bool = True) -> None:
    PANELS[panel](ax, s)
    _events(ax, s["events"], label=True)
    ax.set_xlim(0, max(1.0, s["seconds"]))
    ax.tick_params(labelbottom=True)
    if xlabel:
        ax.set_xlabel(_TIME)
    ax.grid(True, alpha=0.3)


def plot_run(s: dict[str, Any], json_path: Path) -> list[Path]:
    """Write ``<stem>-<panel>.png`` for each panel and ``<stem>.png`` with all of them
    beside ``json_path``; returns the paths."""
    from matplotlib.figure import Figure

    v = s["viewers"]
    head = f"tiercdn viewers, {s['scenario']}: {v['planned']} viewers,"
    head += f" playback x{s['config']['speedup']:g}"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for panel in PANELS:
        fig = Figure(figsize=(9, 4), layout="constrained")
        _frame(fig.add_subplot(), s, panel)
        fig.suptitle(head, fontsize="medium")
        path = json_path.with_name(f"{json_path.stem}-{panel}.png")
        fig.savefig(path, dpi=100)
        paths.append(path)
    fig = Figure(figsize=(10, 3 * len(PANELS)), layout="constrained")
    axes = fig.subplots(len(PANELS), 1, sharex=True)
    for i, (ax, panel) in enumerate(zip(axes, PANELS, strict=True)):
        _frame(ax, s, panel, xlabel=i == len(PANELS) - 1)
    fig.suptitle(head)
    path = json_path.with_name(f"{json_path.stem}.png")
    fig.savefig(path, dpi=90)
    return [path, *paths]
