"""The Super Bowl load test: N viewers join one live channel at kick-off and stay at
its live edge, through tiercdn and (when ``nginx`` is on PATH) through an nginx chain.

``python -m loadtest.viewers live`` (or ``tiercdn loadtest live``) starts origin (with
the ``--live`` channel, a cheap ``--live-ladder``) -> regional -> edge as processes
(``Topology.start``; or uses a running CDN: ``--edge`` with ``--origin`` and the
regional's and origin's ``--*-access-log`` files), waits for the channel's first
segments, starts the reference probe (``loadtest.liveprobe``: a process asking the
origin directly for every segment at its availability; its first byte is the
origin's first chunk) and then runs one phase per CDN: ``--viewers`` viewers
(``loadtest.liveviewer``) join within ``--ramp`` seconds and watch for
``--duration`` seconds. The nginx phase (``loadtest.livenginx``: edge nginx ->
regional nginx -> the same origin, ``proxy_cache_lock on``) follows the tiercdn one
on the same channel, so each has the machine to itself.

Measured (``loadtest.livereport``): requests per segment object at the regional and
the origin from their access logs (the regional nginx and the probe reach the origin
from addresses of their own), first bytes against the origin's, latency, stalls,
errors, the edge's and the generator's CPU and RSS every ``--sample-interval``
(``/proc``), the generator's event loop lag. JSON summary (``reports/live.json``),
PNG plots beside it (``loadtest.liveplots``), a table side by side.

Invariants:

- Bounded: ``--viewers`` viewers per phase; no segment available after a phase's
  ``--duration`` is asked for and the phase is cancelled ``GRACE`` seconds later;
  the probe ends with the last phase (SIGTERM); every wait has a deadline.
- Only loopback: tiers, nginx and the probe on 127.0.0.0/8, ports from the OS.
- Seeded: the viewers' join times come from ``--seed``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from loadtest.eventloop import run_loop
from loadtest.livechannel import Channel, parse_channel
from loadtest.livenginx import NGINX_SOURCE, NginxChain, nginx_binary
from loadtest.liveprobe import PROBE_SOURCE
from loadtest.livereport import (
    count_requests,
    first_bytes,
    print_table,
    summarise_cdn,
    usage_figures,
    usage_series,
)
from loadtest.liveviewer import LiveRun, ViewerLog, live_session, live_viewer
from loadtest.report import config_of, host_facts, write_summary
from loadtest.sampler import Sampler
from loadtest.topology import HOST, Topology, TopologyError
from loadtest.usage import cpu_seconds, rss_bytes

__all__ = ["GRACE", "main", "run_phase"]

SEED = 20260207
GRACE = 6.0  # seconds a phase may run past its last segment's availability
_CHANNEL_SECONDS = 40.0  # for the channel's first segments
Pids = Callable[[], list[int]]


# -- one phase: the viewers against one edge ------------------------------------------------


async def _lag_ticker(lag: list[float], stop: asyncio.Event) -> None:
    """The event loop's lateness: how much later than asked a 10 ms sleep wakes up (the
    worst since the sampler last read ``lag[0]``)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked = loop.time() + 0.01
        await asyncio.sleep(0.01)
        lag[0] = max(lag[0], loop.time() - asked)


def _progress(logs: Sequence[ViewerLog], kickoff: float, seconds: float) -> str:
    media = errors = 0
    for log in logs:
        for f in log.fetches:
            media += f.kind in ("video", "audio")
            errors += bool(f.error)
    joined = sum(log.first_segment is not None for log in logs)
    stalls = sum(log.playhead.stalls for log in logs if log.playhead is not None)
    return (
        f"  {time.time() - kickoff:5.1f}/{seconds:g}s viewers {joined}/{len(logs)}"
        f"  segments {media}  errors {errors}  stalls {stalls}"
    )


async def _viewers(
    edge: str, mpd: str, starts: Sequence[float], stop: float, ns: argparse.Namespace,
    lag: list[float],
) -> list[ViewerLog]:  # fmt: skip
    logs = [ViewerLog(i) for i in range(len(starts))]
    done = asyncio.Event()

    async def progress() -> None:  # a line every 5 s
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 5.0)
            print(_progress(logs, starts[0], stop - starts[0]), file=sys.stderr, flush=True)

    async with live_session(ns.timeout) as session, asyncio.TaskGroup() as group:
        run = LiveRun(edge.rstrip("/"), mpd, session, stop, ns.give_up)
        group.create_task(_lag_ticker(lag, done), name="lag ticker")
        group.create_task(progress(), name="progress")
        try:
            async with asyncio.timeout(max(0.0, stop + GRACE - time.time())):
                await asyncio.gather(
                    *(live_viewer(run, log, s) for log, s in zip(logs, starts, strict=True))
                )
        except TimeoutError:
            pass
        finally:
            done.set()
    return logs


def _usage(procs: dict[str, Pids], lag: list[float]) -> dict[str, float | None]:
    """CPU seconds and RSS bytes of each named group of processes, and the loop lag."""
    out: dict[str, float | None] = {}
    for name, pids in procs.items():
        found = pids()
        cpu = [cpu_seconds(p) for p in found]
        rss = [rss_bytes(p) for p in found]
        out[f"{name}_cpu"] = None if not found or None in cpu else sum(c or 0 for c in cpu)
        out[f"{name}_rss"] = None if not found or None in rss else sum(r or 0 for r in rss)
    out["generator_lag"], lag[0] = lag[0], 0.0
    return out


def run_phase(
    ns: argparse.Namespace, edge: str, mpd: str, procs: dict[str, Pids]
) -> tuple[list[ViewerLog], list[tuple[float, dict[str, float | None]]], float, float]:
    """``ns.viewers`` viewers against ``edge`` for ``ns.duration`` seconds, while ``procs``
    are sampled: (logs, usage samples on the wall clock, kick-off, stop)."""
    kickoff = time.time() + 1.0  # every viewer is scheduled before the first joins
    rng = random.Random(ns.seed)
    starts = sorted(kickoff + rng.uniform(0.0, ns.ramp) for _ in range(ns.viewers))
    stop = kickoff + ns.duration
    lag = [0.0]
    procs = {**procs, "generator": lambda: [os.getpid()]}
    wall = time.time() - time.perf_counter()
    with Sampler(lambda: _usage(procs, lag), ns.sample_interval, name="live-usage") as sampler:
        logs = run_loop(_viewers(edge, mpd, starts, stop, ns, lag))
    samples = [(wall + t, found) for t, found in sampler.samples]
    return logs, samples, kickoff, stop


# -- the channel, the probe, the CDNs ------------------------------------------------------


def wait_for_channel(origin: str, mpd: str, seconds: float = _CHANNEL_SECONDS) -> Channel:
    """The channel once its MPD answers and its first segment is complete."""
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(origin + mpd, timeout=2) as resp:
                channel = parse_channel(resp.read(), mpd)
            if channel.live_edge(time.time()) > channel.start_number:
                return channel
            last = "no complete segment yet"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise RuntimeError(f"live channel {mpd} not ready in {seconds:g} s: {last}")


@contextlib.contextmanager
def _probe(origin: str, mpd: str, out: Path, until: float) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "loadtest.liveprobe", origin, mpd, "--out", str(out)]
    proc = subprocess.Popen([*argv, "--until", str(until)], stdin=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _read_probe(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def _phase_summary(
    ns: argparse.Namespace, result: tuple[list[ViewerLog], list[Any], float, float],
    probe: dict[str, float], tiers: dict[str, Any], mpd: str,
) -> dict[str, Any]:  # fmt: skip
    logs, samples, kickoff, stop = result
    seconds = stop - kickoff + GRACE
    summary = summarise_cdn(logs, probe, tiers, mpd, kickoff, seconds)
    usage = usage_series(samples, kickoff)
    summary["usage"] = usage_figures(usage)
    summary["timeline"]["usage"] = usage
    summary["kickoff"] = round(kickoff, 3)
    return summary


def _pids(tier: Any) -> Pids:
    return lambda: [tier.pid]


def _children(pid: int) -> list[int]:
    try:
        return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run(ns: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every phase; the summary without host facts and plots."""
    mpd = f"/live/{ns.channel}/manifest.mpd"
    phases = 1 + (not ns.no_nginx and nginx_binary() is not None)
    probe_file = work / "probe.jsonl"
    cdns: dict[str, dict[str, Any]] = {}
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if ns.edge:
            origin, edge = ns.origin.rstrip("/"), ns.edge
            logs = {"regional": ns.regional_access_log, "origin": ns.origin_access_log}
            procs: dict[str, Pids] = {}
            if ns.edge_pid:
                procs["edge"] = lambda: [ns.edge_pid]
        else:
            library = work / "library"
            library.mkdir()
            logs = {"regional": work / "regional-access.log", "origin": work / "origin-access.log"}
            live = ("--live", ns.channel, "--live-ladder", ns.live_ladder)
            tier_args = {
                "origin": (*live, "--access-log-file", str(logs["origin"])),
                "regional": ("--access-log-file", str(logs["regional"])),
            }
            top = stack.enter_context(Topology.start(library, tier_args=tier_args))
            origin, edge = top.origin.url, top.edge.url
            procs = {name: _pids(t) for name, t in top.tiers.items()}
            procs["ffmpeg"] = lambda: _children(top.origin.pid)
        print(f"live: waiting for the channel {mpd} at {origin} ...", flush=True)
        channel = wait_for_channel(origin, mpd)
        until = time.time() + phases * (ns.duration + GRACE + 15) + 10
        probe = stack.enter_context(_probe(origin, mpd, probe_file, until))
        procs["probe"] = lambda: [probe.pid]
        time.sleep(channel.segment)  # the probe is on the channel before the viewers
        print(f"live tiercdn: {ns.viewers} viewers join {edge} within {ns.ramp:g} s,"
              f" watch {ns.duration:g} s", flush=True)  # fmt: skip
        results["tiercdn"] = run_phase(ns, edge, mpd, procs)
        time.sleep(GRACE / 2)  # the access lines of the last segments
        tiers = {"regional": count_requests(Path(logs["regional"]))} if logs["regional"] else {}
        if logs["origin"]:
            tiers["origin"] = count_requests(Path(logs["origin"]), {HOST})
        results["tiercdn"] = (results["tiercdn"], tiers)
        binary = None if ns.no_nginx else nginx_binary()
        if binary is not None:
            host, port = origin.removeprefix("http://").rsplit(":", 1)
            with NginxChain(binary, f"{host}:{port}") as chain:
                assert chain.edge is not None and chain.regional is not None
                nginx_procs = {**procs, "edge": chain.edge.pids, "regional": chain.regional.pids}
                print(f"live nginx: {ns.viewers} viewers join {chain.edge.url}", flush=True)
                phase = run_phase(ns, chain.edge.url, mpd, nginx_procs)
                time.sleep(GRACE / 2)
                tiers = {"regional": count_requests(chain.regional.log)}
                if logs["origin"]:
                    tiers["origin"] = count_requests(Path(logs["origin"]), {NGINX_SOURCE})
                results["nginx"] = (phase, tiers)
        elif not ns.no_nginx:
            print("live: no nginx on PATH: the nginx comparison is skipped", flush=True)
    records = _read_probe(probe_file)
    firsts = first_bytes(records)
    for name, (phase, tiers) in results.items():
        cdns[name] = _phase_summary(ns, phase, firsts, tiers, mpd)
    return {
        "channel": {
            "mpd": mpd,
            "ladder": ns.live_ladder,
            "segment_s": channel.segment,
            "availability_time_offset_s": channel.offset,
            "latency_target_s": channel.latency,
            "rungs": channel.bandwidths,
        },
        "probe": {
            "requests": len(records),
            "errors": sum(bool(r["error"]) for r in records),
            "objects": len(firsts),
            "source": PROBE_SOURCE,
        },  # fmt: skip
        "cdns": cdns,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.viewers live",
        description="Viewers join one live channel at kick-off and stay at its live edge.",
    )
    a = p.add_argument
    a("--viewers", type=int, default=500, help="viewers per CDN (default 500)")
    a("--duration", type=float, default=60.0, help="seconds each CDN is watched (60)")
    a("--ramp", type=float, default=3.0, help="seconds over which viewers join: kick-off (3)")
    a("--channel", default="superbowl", help="the live channel's name (superbowl)")
    a("--live-ladder", default="144:150k,288:400k", help="video rungs HEIGHT:BITRATE,... (2)")
    a("--give-up", type=float, default=4.0, help="seconds after availability to retry (4)")
    a("--timeout", type=float, default=10.0, help="seconds between reads of a body (10)")
    a("--sample-interval", type=float, default=1.0, help="seconds between /proc samples (1)")
    a("--seed", type=int, default=SEED, help="seed of the join times")
    a("--no-nginx", action="store_true", help="skip the nginx comparison")
    a("--edge", help="use this running edge (URL) instead of starting a topology")
    a("--origin", help="the running origin's URL (with --edge; the probe asks it)")
    a("--edge-pid", type=int, help="the running edge's pid, for CPU and RSS (with --edge)")
    a("--regional-access-log", type=Path, help="the running regional's access log file")
    a("--origin-access-log", type=Path, help="the running origin's access log file")
    a("--json", type=Path, default=Path("reports/live.json"), help="summary; PNGs beside it")
    a("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if min(ns.viewers, ns.duration, ns.give_up, ns.timeout, ns.sample_interval) <= 0 or ns.ramp < 0:
        raise SystemExit("error: counts and times must be > 0")
    if ns.edge and not ns.origin:
        raise SystemExit("error: --edge needs --origin (the probe asks the origin directly)")
    load_before = os.getloadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="tiercdn-live-") as work:
            result = run(ns, Path(work))
    except (TopologyError, RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {"scenario": "live", "config": config_of(ns), **result}
    if not ns.no_plots and summary["cdns"]:
        from loadtest.liveplots import plot_live

        summary["plots"] = [str(p) for p in plot_live(summary, ns.json)]
    summary["host"] = host_facts(load_before)
    write_summary(ns.json, summary)
    print_table(summary["cdns"])
    for path in summary.get("plots", []):
        print(f"  plot: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
