"""Virtual viewers: N players with a buffer and an ABR watch a Zipf catalogue of titles.

``python -m loadtest.viewers SCENARIO`` (or ``tiercdn loadtest SCENARIO``) starts
origin -> regional -> edge as processes (``Topology.start``), or uses a running
CDN (``--edge URL`` and the admin URLs), and lets ``--viewers`` viewers watch.
Each viewer (``loadtest.player``) picks a title (Zipf, alpha ``--alpha``,
seeded), GETs its manifest from the edge (``--protocol``: the MPD in DASH; the
multivariant and media playlists in HLS; ``mix``: half the viewers each, seeded),
the init segments, then the media segments in order (the same files whichever
protocol names them), video and audio of a slot together, playing back
``--speedup`` times faster than real time so that a run is short, through its
own access link (``--link``), with a buffer and an ABR; a failed request is
retried for at most ``--give-up`` seconds, after which the viewer leaves.

Scenarios:

- ``steady``: viewers arrive spread over the run (uniform start offsets).
- ``flash-crowd``: every viewer starts within ``--ramp`` (2 s) on the same new
  title (the catalogue's last, which nobody else watches).
- ``live``: viewers join one live channel at kick-off and stay at its live edge,
  through tiercdn and an nginx chain; its own options (``loadtest.live``).
- ``chaos``: steady load while the regional is stopped with SIGTERM, and later
  the origin with SIGKILL; each is launched again (the same command on the
  same ports) ``--outage`` seconds later; then the origin answers 503 to
  everything for ``--outage`` seconds, then cuts 5 % of its bodies with a reset
  for as long (``loadtest.chaos``). Errors and stalls are reported around each
  event, and the events are marked on the plots. Needs its own topology.

Measured (``loadtest.viewerreport``): per request TTFB and time to the last
byte, startup, stalls, rung switches; each tier's ``/metrics`` every
``--sample-interval`` (hit ratios of edge and regional, the origin's
requests/s); the same per protocol; the origin's requests per segment object,
from its access log (``--origin-access-log`` with ``--edge``), for the objects
DASH viewers, HLS viewers and both asked for: the target is one. JSON summary
(``reports/viewers-<scenario>.json``), a table, and PNG plots beside it
(``loadtest.plots``).

Invariants:

- Seeded: titles, start offsets, access links and protocols come from ``--seed``
  (a DASH run's plans are the same whatever the other protocols' flags).
- Bounded: ``--viewers`` viewers, each watching one title; the whole run is
  cancelled after ``--duration`` seconds (viewers still playing count as cut);
  per request ``--timeout``; retries per slot bounded in time and count; the
  samplers and the chaos thread stop with the run, every wait has a timeout.
- Only loopback, only ports from the OS (``Topology.start``). Exit 0 unless
  something crashed (2).
- ``hdrhistogram`` and ``matplotlib`` are imported only when a run needs them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from loadtest.accesslog import count_requests
from loadtest.chaos import ChaosMonkey, chaos_steps
from loadtest.eventloop import run_loop
from loadtest.player import PROTOCOLS, Run, ViewerLog, ViewerPlan, plan_viewers, viewer
from loadtest.report import config_of, host_facts, write_summary
from loadtest.sampler import Sampler
from loadtest.titles import (
    Title,
    find_catalogue,
    find_titles,
    grouped_titles,
    listed_titles,
    make_titles,
)
from loadtest.topology import Topology, TopologyError, request_counts
from loadtest.viewerreport import (
    around_events,
    by_protocol,
    client_series,
    origin_objects,
    print_summary,
    summarise,
    tier_series,
)

__all__ = ["SCENARIOS", "main", "run_scenario", "run_viewers"]

SEED = 20240615
SCENARIOS = ("steady", "flash-crowd", "chaos")
LOG_SETTLE_SECONDS = 0.5  # for the origin's last access lines after the viewers end


# -- the viewers ----------------------------------------------------------------------------


def _progress_line(run: Run, logs: Sequence[ViewerLog], duration: float) -> str:
    elapsed = time.perf_counter() - run.t0
    width = 24
    filled = min(width, int(width * max(0.0, elapsed) / duration))
    started = sum(log.started is not None for log in logs)
    active = sum(log.started is not None and log.ended is None for log in logs)
    media = errors = 0
    for log in logs:
        for r in log.requests:
            media += r.kind in ("video", "audio")
            errors += bool(r.error)
    stalled = sum(b - a for log in logs for a, b in log.stalls)
    return (
        f"[{'#' * filled}{'.' * (width - filled)}] {max(0.0, elapsed):5.1f}/{duration:g}s"
        f"  viewers {started}/{len(logs)} ({active} active)  segments {media}"
        f"  errors {errors}  stalled {stalled:.1f}s"
    )


async def _progress(
    run: Run, logs: Sequence[ViewerLog], duration: float, stop: asyncio.Event
) -> None:
    """A text progress bar on stderr: in place on a terminal, a line every 5 s otherwise."""
    tty = sys.stderr.isatty()
    last = 0.0
    while not stop.is_set():
        now = time.perf_counter()
        if tty:
            print("\r" + _progress_line(run, logs, duration), end="", file=sys.stderr, flush=True)
        elif now - last >= 5.0:
            print(_progress_line(run, logs, duration), file=sys.stderr, flush=True)
            last = now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    print(("\r" if tty else "") + _progress_line(run, logs, duration), file=sys.stderr, flush=True)


async def run_viewers(
    run: Run, plans: Sequence[ViewerPlan], *, duration: float, request_seconds: float
) -> list[ViewerLog]:
    """Every viewer of ``plans``; whoever still plays after ``duration`` seconds is cut."""
    logs = [ViewerLog(p.manifest, p.protocol) for p in plans]
    stop = asyncio.Event()

    async def viewers() -> None:
        try:
            async with asyncio.timeout(max(0.0, run.t0 + duration - time.perf_counter())):
                await asyncio.gather(
                    *(
                        viewer(run, p, log, request_seconds)
                        for p, log in zip(plans, logs, strict=True)
                    )
                )
        except TimeoutError:
            pass
        finally:
            stop.set()

    await asyncio.gather(viewers(), _progress(run, logs, duration, stop))
    return logs


# -- the library ----------------------------------------------------------------------------


@contextlib.contextmanager
def _library(ns: argparse.Namespace) -> Iterator[tuple[Path | None, list[Title], float | None]]:
    """(library or None for a running CDN, titles, seconds spent making titles)."""
    if ns.manifest:
        yield ns.library, grouped_titles(ns.manifest), None
        return
    if ns.library is None and ns.edge:
        with urllib.request.urlopen(ns.edge.rstrip("/") + "/", timeout=ns.timeout) as resp:
            yield None, listed_titles(json.load(resp))[: ns.titles], None
        return
    with contextlib.ExitStack() as stack:
        library = ns.library or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="tiercdn-viewers-"))
        )
        library.mkdir(parents=True, exist_ok=True)
        made = None
        if not find_titles(library):
            print(
                f"making {ns.titles} title(s) of {ns.title_seconds:g} s in {library} ...",
                flush=True,
            )
            made = make_titles(library, ns.titles, ns.title_seconds, timeout=300)
        yield library, find_catalogue(library)[: ns.titles], made


# -- the scenario ---------------------------------------------------------------------------


def run_scenario(
    ns: argparse.Namespace,
    edge: str,
    admins: dict[str, str],
    titles: list[Title],
    top: Topology | None,
    origin_log: Path | None = None,
) -> dict[str, Any]:
    """Viewers against ``edge`` while the tiers are sampled (and, in chaos, stopped); the
    origin's requests per segment object from ``origin_log``, if given."""
    play = ns.title_seconds / ns.speedup
    ramp = (
        ns.ramp
        if ns.ramp is not None
        else 2.0
        if ns.scenario == "flash-crowd"
        else max(0.0, ns.duration - 2 * play - 2)
    )
    step = ns.step or (0.25 if ns.scenario == "flash-crowd" else 1.0)
    plans = plan_viewers(
        ns.scenario, ns.viewers, titles, ramp=ramp, alpha=ns.alpha, links=ns.link, seed=ns.seed,
        protocol=ns.protocol,
    )  # fmt: skip
    interval = ns.sample_interval or step
    steps = chaos_steps(ns.duration, ns.outage) if ns.scenario == "chaos" else []
    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(
            Sampler(
                lambda: request_counts(admins, timeout=min(2.0, interval)),
                interval,
                name="tier-sampler",
            )
        )
        t0 = time.perf_counter() + 0.3  # every viewer is scheduled before the first starts
        run = Run(edge.rstrip("/"), t0, ns.speedup, ns.give_up, {})
        monkey = stack.enter_context(ChaosMonkey(top, steps, t0)) if top and steps else None
        logs = run_loop(run_viewers(run, plans, duration=ns.duration, request_seconds=ns.timeout))
        seconds = time.perf_counter() - t0
    if monkey is not None and monkey.error:
        raise RuntimeError(f"chaos: {monkey.error}")
    events = monkey.events if monkey else []
    series, tiers = tier_series([(t - t0, found) for t, found in sampler.samples])
    objects = None
    if origin_log is not None:
        time.sleep(LOG_SETTLE_SECONDS)
        objects = origin_objects(logs, count_requests(origin_log))
    ladder = {**run.ladders.get("hls", {}), **run.ladders.get("dash", {})}
    return {
        "ramp_s": round(ramp, 2),
        "seconds": round(seconds, 2),
        **summarise(logs, ladder),
        "protocols": by_protocol(logs, run.ladders),
        "origin_objects": objects,
        "tiers": tiers,
        "events": events,
        "around_events": around_events(logs, events),
        "timeline": {"client": client_series(logs, seconds, step), "tiers": series},
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.viewers",
        description="Virtual viewers (buffer, ABR) watch a Zipf catalogue through the edge.",
    )
    a = p.add_argument
    a("scenario", choices=SCENARIOS, help="steady, flash-crowd or chaos")
    a("--viewers", type=int, default=100, help="viewers (default 100)")
    a(
        "--protocol",
        choices=(*PROTOCOLS, "mix"),
        default="dash",
        help="what the viewers speak: dash (the MPD), hls (the playlists), or mix (half each)",
    )
    a("--titles", type=int, default=5, help="titles in the catalogue (default 5)")
    a("--title-seconds", type=float, default=30.0, help="length of each title made (30)")
    a("--library", type=Path, help="titles here (made here if it has none)")
    a(
        "--manifest",
        action="append",
        help="URL path of a title's MPD or HLS multivariant playlist (repeatable, one title"
        " per folder; with --edge)",
    )
    a("--alpha", type=float, default=1.0, help="Zipf exponent of title popularity (1)")
    a(
        "--link",
        type=_link,
        default=_link("0.6:8"),
        help="viewers' access links, log-uniform"
        " between MIN:MAX Mb/s of real-time playback (paced x speedup); 'off': unpaced (0.6:8)",
    )
    a("--speedup", type=float, default=10.0, help="playback speed factor (default 10)")
    a("--duration", type=float, default=60.0, help="seconds the run may last at most (60)")
    a(
        "--ramp",
        type=float,
        help="seconds over which viewers start (default: the run; 2 in a flash crowd)",
    )
    a("--outage", type=float, default=5.0, help="chaos: seconds a stopped tier stays down (5)")
    a("--give-up", type=float, default=15.0, help="seconds a viewer retries a segment (15)")
    a("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    a("--step", type=float, help="seconds per point of the plots (1; 0.25 in a flash crowd)")
    a("--sample-interval", type=float, help="seconds between /metrics samples (the step)")
    a(
        "--seed",
        type=int,
        default=SEED,
        help="seed of titles, start offsets, links and mix protocols",
    )
    a("--edge", help="use this running edge (URL) instead of starting a topology")
    for tier in ("edge", "regional", "origin"):
        a(f"--{tier}-admin", help=f"admin URL of the running {tier} (with --edge)")
    a(
        "--origin-access-log",
        type=Path,
        help="the running origin's access log file (with --edge): requests per segment object",
    )
    a("--json", type=Path, help="summary (default reports/viewers-SCENARIO.json); PNGs beside it")
    a("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def _link(text: str) -> tuple[float, float] | None:
    if text == "off":
        return None
    low, _, high = text.partition(":")
    try:
        bounds = (float(low) * 1e6, float(high or low) * 1e6)
    except ValueError:
        raise argparse.ArgumentTypeError("--link: MIN:MAX in Mb/s, or off") from None
    if not 0 < bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError("--link: 0 < MIN <= MAX")
    return bounds


@contextlib.contextmanager
def _topology(library: Path, scenario: str) -> Iterator[tuple[Topology, Path]]:
    """Origin -> regional -> edge on ``library``, the origin writing its access log."""
    with tempfile.TemporaryDirectory(prefix="tiercdn-viewers-logs-") as logs:
        origin_log = Path(logs) / "origin-access.log"
        origin: tuple[str, ...] = ("--access-log-file", str(origin_log))
        if scenario == "chaos":
            origin = (*origin, "--fault-control")
        with Topology.start(library, tier_args={"origin": origin}) as top:
            yield top, origin_log


def _endpoints(top: Topology) -> tuple[str, dict[str, str]]:
    return top.edge.url, {name: tier.admin_url for name, tier in top.tiers.items()}


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "live":  # a scenario of its own: a live channel (loadtest.live)
        from loadtest.live import main as live

        return live(argv[1:])
    ns = _parser().parse_args(argv)
    counts = (ns.viewers, ns.titles, ns.speedup, ns.duration, ns.title_seconds, ns.timeout)
    if min(counts) <= 0 or min(ns.step or 1, ns.sample_interval or 1, ns.give_up) <= 0:
        raise SystemExit("error: counts and times must be > 0")
    if ns.scenario == "chaos" and ns.edge:
        raise SystemExit("error: chaos stops and restarts tiers: it needs a topology of its own")
    ns.json = ns.json or Path(f"reports/viewers-{ns.scenario}.json")
    load_before = os.getloadavg()
    try:
        with _library(ns) as (library, titles, made):
            if not titles:
                raise RuntimeError("no titles")
            print(
                f"viewers {ns.scenario}: {ns.viewers} viewers ({ns.protocol}), {len(titles)}"
                f" titles, x{ns.speedup:g}, at most {ns.duration:g} s",
                flush=True,
            )
            if ns.edge:
                admins = {
                    t: getattr(ns, f"{t}_admin")
                    for t in ("edge", "regional", "origin")
                    if getattr(ns, f"{t}_admin")
                }
                result = run_scenario(ns, ns.edge, admins, titles, None, ns.origin_access_log)
            else:
                assert library is not None
                with _topology(library, ns.scenario) as (top, origin_log):
                    result = run_scenario(ns, *_endpoints(top), titles, top, origin_log)
                    top.check_alive()
    except (TopologyError, RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {
        "scenario": ns.scenario,
        "config": config_of(ns),
        "titles_made_s": None if made is None else round(made, 1),
        **result,
    }
    if not ns.no_plots:
        from loadtest.plots import plot_run

        summary["plots"] = [str(p) for p in plot_run(summary, ns.json)]
    summary["host"] = host_facts(load_before)
    write_summary(ns.json, summary)
    print_summary(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
