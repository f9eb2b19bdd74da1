"""PNG plots of a live run (``loadtest.live``): each CDN's line on a shared axis of
seconds since its kick-off.

Panels: the viewers' first byte after the origin's first chunk (p50, p99, per
second of sending), media requests and errors per second, the edge's and the
generator's CPU, the edge's RSS, and the origin's and regional's requests per
segment number. One PNG per panel and an overview stacking them.

matplotlib is imported when plotting, never at import time, and only its object API
is used (``Figure`` on the Agg canvas): no pyplot state, no display.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PANELS", "plot_live"]

_COLOURS = {"tiercdn": "#1b9e77", "nginx": "#d95f02"}
_TIME = "seconds since kick-off"


def _nan(values: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def _each(s: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    return [(name, c, _COLOURS.get(name, "#7570b3")) for name, c in s["cdns"].items()]


def first_byte(ax: Axes, s: dict[str, Any]) -> None:
    for name, c, colour in _each(s):
        t = c["timeline"]
        ax.plot(t["t"], _nan(t["first_byte_p99_ms"]), color=colour, marker=".", label=f"{name} p99")
        ax.plot(t["t"], _nan(t["first_byte_p50_ms"]), color=colour, linestyle="--",
                label=f"{name} p50")  # fmt: skip
    ax.axhline(100, color="#999999", linewidth=1, linestyle=":", label="target 100 ms")
    ax.set(title="Viewers' first byte after the origin's first chunk (by second sent)",
           ylabel="ms (log)", xlabel=_TIME)  # fmt: skip
    ax.set_yscale("symlog", linthresh=10)
    ax.legend(fontsize="small")


def requests(ax: Axes, s: dict[str, Any]) -> None:
    for name, c, colour in _each(s):
        t = c["timeline"]
        ax.plot(t["t"], t["media_requests"], color=colour, label=f"{name} media requests")
        ax.plot(t["t"], t["errors"], color=colour, linestyle=":", label=f"{name} errors")
    ax.set(title="Media requests and errors per second (viewers)", ylabel="per second",
           xlabel=_TIME)  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")


def cpu(ax: Axes, s: dict[str, Any]) -> None:
    for name, c, colour in _each(s):
        u = c["timeline"]["usage"]
        if "edge_cpu_pct" in u:
            ax.plot(u["t"], _nan(u["edge_cpu_pct"]), color=colour, label=f"{name} edge")
        if "generator_cpu_pct" in u:
            ax.plot(u["t"], _nan(u["generator_cpu_pct"]), color=colour, linestyle="--",
                    label=f"{name} phase: load generator")  # fmt: skip
    ax.set(title="CPU (% of one core)", ylabel="CPU %", xlabel=_TIME)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")


def rss(ax: Axes, s: dict[str, Any]) -> None:
    for name, c, colour in _each(s):
        u = c["timeline"]["usage"]
        if "edge_rss_mib" in u:
            ax.plot(u["t"], _nan(u["edge_rss_mib"]), color=colour, label=f"{name} edge")
    ax.set(title="Edge resident memory", ylabel="MiB", xlabel=_TIME)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")


def per_segment(ax: Axes, s: dict[str, Any]) -> None:
    for name, c, colour in _each(s):
        rows = c["per_segment"]
        first = rows[0]["n"] if rows else 0
        xs = [r["n"] - first for r in rows]
        for tier, style in (("regional", "-"), ("origin", ":")):
            ys = [r.get(tier, 0) / max(1, r["objects"]) for r in rows]
            if any(tier in r for r in rows):
                ax.plot(xs, ys, color=colour, linestyle=style, marker=".", label=f"{name} {tier}")
    ax.axhline(1, color="#999999", linewidth=1, linestyle=":")
    ax.set(title="Requests per segment object reaching each tier (target 1)",
           ylabel="requests / object", xlabel="segment (from the first watched)")  # fmt: skip
    ax.set_ylim(bottom=0)
    ax.legend(fontsize="small")


PANELS: dict[str, Callable[[Axes, dict[str, Any]], None]] = {
    "first-byte": first_byte,
    "requests": requests,
    "cpu": cpu,
    "rss": rss,
    "per-segment": per_segment,
}


def plot_live(s: dict[str, Any], json_path: Path) -> list[Path]:
    """``<stem>-<panel>.png`` per panel and ``<stem>.png`` with all of them beside
    ``json_path``; returns the paths."""
    from matplotlib.figure import Figure

    head = f"tiercdn live: {s['config']['viewers']} viewers per CDN, {s['channel']['ladder']}"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for panel, draw in PANELS.items():
        fig = Figure(figsize=(9, 4), layout="constrained")
        ax = fig.add_subplot()
        draw(ax, s)
        ax.grid(True, alpha=0.3)
        fig.suptitle(head, fontsize="medium")
        path = json_path.with_name(f"{json_path.stem}-{panel}.png")
        fig.savefig(path, dpi=100)
        paths.append(path)
    fig = Figure(figsize=(10, 3.2 * len(PANELS)), layout="constrained")
    for ax, draw in zip(fig.subplots(len(PANELS), 1), PANELS.values(), strict=True):
        draw(ax, s)
        ax.grid(True, alpha=0.3)
    fig.suptitle(head)
    path = json_path.with_name(f"{json_path.stem}.png")
    fig.savefig(path, dpi=90)
    return [path, *paths]
