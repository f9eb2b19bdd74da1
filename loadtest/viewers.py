"""Virtual viewers: N players with a buffer and an ABR watch a Zipf catalogue of titles.

``python -m loadtest.viewers SCENARIO`` (or ``tiercdn loadtest SCENARIO``) starts
origin -> regional -> edge as processes (``Topology.start``), or uses a running
CDN (``--edge URL`` and the admin URLs), and lets ``--viewers`` viewers watch.
Each viewer picks a title (Zipf, alpha ``--alpha``, seeded), GETs its MPD from
the edge (``shared.dash.parse_mpd``), the init segments, then the media
segments in order, video and audio of a slot together, playing back
``--speedup`` times faster than real time so that a run is short.

Scenarios:

- ``steady``: viewers arrive spread over the run (uniform start offsets).
- ``flash-crowd``: every viewer starts within ``--ramp`` (2 s) on the same new
  title (the catalogue's last, which nobody else watches).
- ``chaos``: steady load while the regional is stopped with SIGTERM, and later
  the origin with SIGKILL; each is launched again (the same command on the
  same ports) ``--outage`` seconds later. Errors and stalls are reported around
  each event, and the events are marked on the plots. Needs its own topology.

The player: playback starts when the first media segment has arrived; its
buffer (media seconds loaded minus played) drains at ``speedup`` media seconds
per second; an empty buffer is a stall (rebuffer) until the next segment
arrives. It fetches the next segment when the buffer has room for one more
(``MAX_BUFFER_SEGMENTS``). ABR (``next_rank``): down a rung when a slot took
longer than its (sped-up) duration; up when more than ``UP_BUFFER_SEGMENTS``
segments are buffered and the last video segment came at least ``UP_HEADROOM``
times faster than the next rung needs. A viewer starts at the lowest rung. Its
access link (``Link``, ``--link``: log-uniform between MIN and MAX Mb/s of
real-time playback, times ``speedup`` on the wall clock) paces the bytes it
receives, so viewers settle on different rungs, as on real networks. A
failed request is retried (backoff ``RETRY_BASE`` doubling to ``RETRY_CAP``)
for at most ``--give-up`` seconds, after which the viewer leaves.

Measured: per request TTFB and time to the last byte (HdrHistogram), startup,
stalls, rung switches; each tier's ``/metrics`` every ``--sample-interval``
(hit ratio of edge and regional from ``tiercdn_requests_total`` by outcome,
hits = ``hit`` + ``stale``; the origin's requests/s from
``tiercdn_origin_requests_total``; a counter that goes down means the tier was
restarted, and counts from zero). JSON summary (``reports/viewers-<scenario>.json``)
and PNG plots beside it (``loadtest.plots``).

Invariants:

- Seeded: titles, start offsets and access links come from ``--seed``.
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
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aiohttp

from loadtest.flashcrowd import media_clock, media_path, run_loop, segment_count
from loadtest.report import config_of, host_facts, write_summary
from loadtest.topology import Tier, Topology, TopologyError, metrics
from shared.dash import ContentKind, Stream, parse_mpd
from shared.ops.topology import answers

if TYPE_CHECKING:
    from hdrh.histogram import HdrHistogram

__all__ = [
    "SCENARIOS",
    "Playback",
    "Request",
    "ViewerLog",
    "ViewerPlan",
    "main",
    "next_rank",
    "plan_viewers",
    "restart_tier",
    "zipf_weights",
]

SEED = 20240615
SCENARIOS = ("steady", "flash-crowd", "chaos")
TIER_REQUESTS = "tiercdn_requests_total"
ORIGIN_REQUESTS = "tiercdn_origin_requests_total"
HIT_OUTCOMES = ("hit", "stale")
MAX_BUFFER_SEGMENTS = 5  # fetch the next segment when the buffer has room for one more
UP_BUFFER_SEGMENTS = 3  # up a rung only with more than this many segments buffered
UP_HEADROOM = 1.5  # ... and a throughput this many times the next rung's (sped-up) rate
RETRY_BASE, RETRY_CAP, MAX_TRIES = 0.1, 1.0, 50
SETTLE_SECONDS = 2.0  # an event's window runs until this long after the tier is back
_CHUNK = 64 * 1024  # read size; a paced link waits after each
_US_MAX = 120_000_000  # histograms hold 1 µs .. 120 s


# -- the plan -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ViewerPlan:
    """One viewer: when it starts and what it watches."""

    index: int
    offset: float  # seconds after the run's start
    manifest: str  # URL path of the title's MPD
    link_bps: float | None  # its access link in bits/s of real-time playback; None: unpaced


def zipf_weights(n: int, alpha: float) -> list[float]:
    """Zipf weights of ranks 1..n: ``1 / k**alpha`` (not normalised)."""
    return [1.0 / (k**alpha) for k in range(1, n + 1)]


def plan_viewers(
    scenario: str,
    viewers: int,
    manifests: Sequence[str],
    *,
    ramp: float,
    alpha: float,
    links: tuple[float, float] | None,
    seed: int,
) -> list[ViewerPlan]:
    """Start offsets uniform in ``[0, ramp)``; titles by Zipf, or all the last (new) title
    in a flash crowd; access links log-uniform in ``links`` (bits/s), if given."""
    rng = random.Random(seed)
    weights = zipf_weights(len(manifests), alpha)
    plans = []
    for i in range(viewers):
        offset = rng.uniform(0.0, ramp)
        title = manifests[-1] if scenario == "flash-crowd" else rng.choices(manifests, weights)[0]
        link = None if links is None else math.exp(rng.uniform(*map(math.log, links)))
        plans.append(ViewerPlan(i, offset, title, link))
    return plans


# -- the player: buffer and ABR (pure: ``now`` is a parameter) ----------------------------


class Playback:
    """A player's buffer on the wall clock; media plays ``speedup`` times real time.

    Playback starts with the first segment loaded; stalls are ``(start, end)`` wall
    times during which the buffer was empty before the end of the title."""

    def __init__(self, speedup: float) -> None:
        self.speedup = speedup
        # guarded by: its viewer's task only
        self.loaded = 0.0  # media seconds loaded
        self.position = 0.0  # media seconds played
        self.clock: float | None = None  # wall time of the last advance; None: not started
        self.stalled_since: float | None = None
        self.stalls: list[tuple[float, float]] = []

    def __repr__(self) -> str:
        state = "stalled" if self.stalled_since is not None else "playing" if self.clock else "idle"
        return f"<Playback {state} {self.position:.1f}/{self.loaded:.1f}s, {len(self.stalls)}>"

    def advance(self, now: float) -> None:
        if self.clock is None:
            return
        self.position += (now - self.clock) * self.speedup
        self.clock = now
        if self.position > self.loaded:
            if self.stalled_since is None:  # it ran dry when the position passed the end
                self.stalled_since = now - (self.position - self.loaded) / self.speedup
            self.position = self.loaded

    def add(self, now: float, media_seconds: float) -> None:
        """A segment of ``media_seconds`` arrived at ``now``."""
        self.advance(now)
        self.loaded += media_seconds
        if self.clock is None:
            self.clock = now
        if self.stalled_since is not None:
            self.stalls.append((self.stalled_since, now))
            self.stalled_since = None

    def buffered(self, now: float) -> float:
        """Media seconds in the buffer at ``now``."""
        self.advance(now)
        return self.loaded - self.position

    def close(self, now: float) -> None:
        """The viewer stops (left or cut) at ``now``: end a stall in progress."""
        self.advance(now)
        if self.stalled_since is not None:
            self.stalls.append((self.stalled_since, now))
            self.stalled_since = None


class Link:
    """A viewer's access link: received bytes count as delivered only at its rate, one
    after another, whichever of the viewer's requests they belong to."""

    def __init__(self, bits_per_second: float | None) -> None:
        self.rate = bits_per_second
        self.free_at = 0.0  # guarded by: its viewer's task only

    def __repr__(self) -> str:
        return f"<Link {self.rate or 0:.0f} b/s, free at {self.free_at:.3f}>"

    def delay(self, now: float, nbytes: int) -> float:
        """Seconds to wait, at ``now``, until ``nbytes`` just received have crossed it."""
        if not self.rate:
            return 0.0
        self.free_at = max(now, self.free_at) + 8 * nbytes / self.rate
        return self.free_at - now


def next_rank(
    rank: int, top: int, *, took: float, slot: float, buffered: int, throughput: float,
    up_rate: float,
) -> int:  # fmt: skip
    """The next video rung: down when a slot took longer than its ``slot`` seconds, up
    when the buffer holds more than ``UP_BUFFER_SEGMENTS`` and ``throughput`` (bits/s)
    beats the next rung's ``up_rate`` (bits/s, sped up) by ``UP_HEADROOM``."""
    if took > slot and rank > 0:
        return rank - 1
    if rank < top and buffered > UP_BUFFER_SEGMENTS and throughput >= UP_HEADROOM * up_rate:
        return rank + 1
    return rank


# -- the viewers ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
    """One request of a viewer; ``at`` is seconds from the run's start."""

    at: float
    kind: str  # "mpd", "init", "video" or "audio"
    rank: int  # video rung; -1 for anything else
    ttfb: float | None
    total: float | None
    size: int
    error: str  # "" when a 200 with the announced length


@dataclasses.dataclass
class ViewerLog:
    """What one viewer did (written by its own task only)."""

    manifest: str
    requests: list[Request] = dataclasses.field(default_factory=list)
    started: float | None = None  # seconds from the run's start
    playing: float | None = None  # first media segment in (playback starts)
    ended: float | None = None  # left, finished or cut; playback drained at ``drained``
    drained: float | None = None
    stalls: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    watched: float = 0.0  # media seconds loaded
    ups: int = 0
    downs: int = 0
    error: str = ""  # why it left early
    done: bool = False


@dataclasses.dataclass(frozen=True)
class Run:
    """What every viewer of a run shares."""

    base: str  # the edge's URL
    t0: float  # the run's start, ``time.perf_counter()``
    speedup: float
    give_up: float
    ladder: dict[int, str]  # video rank -> label, filled by the first viewers


async def _get(
    session: aiohttp.ClientSession,
    run: Run,
    link: Link,
    path: str,
    kind: str,
    rank: int,
    keep: bool,
) -> tuple[Request, bytes]:
    """GET ``path`` from the edge through ``link``, timing its head and its last byte."""
    started = time.perf_counter()
    ttfb = total = None
    size, error, kept = 0, "", bytearray()
    try:
        async with session.get(run.base + path) as resp:
            ttfb = time.perf_counter() - started
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if (wait := link.delay(time.perf_counter(), len(chunk))) > 0:
                    await asyncio.sleep(wait)
                if keep:
                    kept += chunk
            total = time.perf_counter() - started
            if resp.status != 200:
                error = f"status {resp.status}"
            elif resp.content_length is not None and size != resp.content_length:
                error = f"short body {size}/{resp.content_length}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:120]
    return Request(started - run.t0, kind, rank, ttfb, total, size, error), bytes(kept)


async def _get_all(
    session: aiohttp.ClientSession,
    run: Run,
    log: ViewerLog,
    link: Link,
    wanted: Sequence[tuple[str, str, int]],
    keep: bool = False,
) -> list[tuple[Request, bytes]] | None:
    """GET every ``(path, kind, rank)`` at once, retrying the failed ones for at most
    ``run.give_up`` seconds; None if some never came."""
    began = time.perf_counter()
    got: dict[int, tuple[Request, bytes]] = {}
    for attempt in range(MAX_TRIES):
        todo = [i for i in range(len(wanted)) if i not in got]
        results = await asyncio.gather(*(_get(session, run, link, *wanted[i], keep) for i in todo))
        for i, (req, body) in zip(todo, results, strict=True):
            log.requests.append(req)
            if not req.error:
                got[i] = (req, body)
        if len(got) == len(wanted):
            return [got[i] for i in range(len(wanted))]
        pause = min(RETRY_CAP, RETRY_BASE * 2**attempt)
        if time.perf_counter() + pause - began > run.give_up:
            break
        await asyncio.sleep(pause)
    log.error = next(r.error for r in reversed(log.requests) if r.error)
    return None


def _ladder(streams: Sequence[Stream]) -> tuple[list[Stream], Stream | None]:
    """The first period's video streams by rank, and its lowest-bitrate audio stream."""
    first = [s for s in streams if s.representation.period == 0]
    video = sorted(
        (s for s in first if s.representation.kind is ContentKind.VIDEO),
        key=lambda s: s.representation.rank,
    )
    audio = [s for s in first if s.representation.kind is ContentKind.AUDIO]
    return video, min(audio, key=lambda s: s.representation.rank, default=None)


def rung_label(stream: Stream) -> str:
    rep = stream.representation
    size = f"{rep.height}p " if rep.height else ""
    return f"{size}{rep.bandwidth / 1000:.0f} kb/s"


async def _watch(
    session: aiohttp.ClientSession, run: Run, plan: ViewerPlan, log: ViewerLog
) -> None:
    """One viewer: MPD, init segments, then every media segment with the buffer and ABR."""
    await asyncio.sleep(max(0.0, run.t0 + plan.offset - time.perf_counter()))
    log.started = time.perf_counter() - run.t0
    link = Link(None if plan.link_bps is None else plan.link_bps * run.speedup)
    got = await _get_all(session, run, log, link, [(plan.manifest, "mpd", -1)], keep=True)
    if got is None:
        return
    try:
        video, audio = _ladder(parse_mpd(got[0][1], plan.manifest).streams)
        if not video:
            raise ValueError("no video representation")
        count = min(segment_count(s) for s in [*video, *([audio] if audio else [])])
        clock = media_clock(video[0], count)
    except ValueError as exc:
        log.error = f"manifest: {exc}"[:120]
        return
    for stream in video:
        run.ladder.setdefault(stream.representation.rank, rung_label(stream))
    player = Playback(run.speedup)
    try:
        await _play(session, run, log, link, player, video, audio, clock)
    finally:
        now = time.perf_counter()
        player.close(now)
        log.stalls = [(a - run.t0, b - run.t0) for a, b in player.stalls]
        log.ended = now - run.t0
        log.drained = log.ended + (player.loaded - player.position) / run.speedup
        log.watched = player.loaded


async def _play(
    session: aiohttp.ClientSession,
    run: Run,
    log: ViewerLog,
    link: Link,
    player: Playback,
    video: list[Stream],
    audio: Stream | None,
    clock: list[float],
) -> None:
    rank, inited = 0, set[str]()
    top = len(video) - 1
    for i in range(len(clock) - 1):
        seconds = clock[i + 1] - clock[i]
        room = player.buffered(time.perf_counter()) - (MAX_BUFFER_SEGMENTS - 1) * seconds
        if room > 0:
            await asyncio.sleep(room / run.speedup)
        stream = video[rank]
        wanted = [(media_path(stream, i), "video", rank)]
        if audio is not None:
            wanted.append((media_path(audio, i), "audio", -1))
        for s in (stream, audio):
            if s is not None and s.initialization and s.initialization not in inited:
                wanted.append((s.initialization, "init", -1))
        began = time.perf_counter()
        got = await _get_all(session, run, log, link, wanted)
        if got is None:
            return
        inited.update(s.initialization for s in (stream, audio) if s and s.initialization)
        now = time.perf_counter()
        player.add(now, seconds)
        if log.playing is None:
            log.playing = now - run.t0
        first = got[0][0]
        throughput = 8 * first.size / max(first.total or 0.0, 1e-6)
        up = video[min(rank + 1, top)].representation.bandwidth * run.speedup
        new = next_rank(
            rank, top, took=now - began, slot=seconds / run.speedup,
            buffered=int(player.buffered(now) / seconds), throughput=throughput, up_rate=up,
        )  # fmt: skip
        log.ups, log.downs = log.ups + (new > rank), log.downs + (new < rank)
        rank = new
    log.done = True


async def _viewer(run: Run, plan: ViewerPlan, log: ViewerLog, request_seconds: float) -> None:
    """One viewer with its own two keep-alive connections, as a browser player has."""
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=2),
        timeout=aiohttp.ClientTimeout(total=request_seconds),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        await _watch(session, run, plan, log)


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
    logs = [ViewerLog(p.manifest) for p in plans]
    stop = asyncio.Event()

    async def viewers() -> None:
        try:
            async with asyncio.timeout(max(0.0, run.t0 + duration - time.perf_counter())):
                await asyncio.gather(
                    *(
                        _viewer(run, p, log, request_seconds)
                        for p, log in zip(plans, logs, strict=True)
                    )
                )
        except TimeoutError:
            pass
        finally:
            stop.set()

    await asyncio.gather(viewers(), _progress(run, logs, duration, stop))
    return logs


# -- the tiers: metrics sampler and chaos ---------------------------------------------------


def _by_label(samples: dict[str, float], name: str) -> dict[str, float]:
    """``{label value: sample}`` of a one-label family, from ``loadtest.topology.metrics``."""
    return {k.split('"')[1]: v for k, v in samples.items() if k.startswith(name + "{")}


class TierSampler:
    """Samples each tier's request counters from a thread every ``interval`` seconds:
    ``(seconds from t0, {tier: {outcome: count} or None when it did not answer})``."""

    def __init__(self, admins: dict[str, str], t0: float, interval: float) -> None:
        self.admins, self.t0, self.interval = admins, t0, interval
        # guarded by: appended by the sampler thread only; read after __exit__ joined it
        self.samples: list[tuple[float, dict[str, dict[str, float] | None]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tier-sampler", daemon=True)

    def __repr__(self) -> str:
        return f"<TierSampler {sorted(self.admins)} every {self.interval}s, {len(self.samples)}>"

    def __enter__(self) -> TierSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _sample(self) -> None:
        found: dict[str, dict[str, float] | None] = {}
        for tier, url in self.admins.items():
            try:
                got = metrics(url, timeout=min(2.0, self.interval))
            except (OSError, ValueError):
                found[tier] = None
                continue
            name = ORIGIN_REQUESTS if tier == "origin" else TIER_REQUESTS
            if tier == "origin":
                found[tier] = {"requests": sum(v for k, v in got.items() if k.startswith(name))}
            else:
                found[tier] = _by_label(got, name)
        self.samples.append((time.perf_counter() - self.t0, found))

    def _run(self) -> None:
        self._sample()
        while not self._stop.wait(self.interval):
            self._sample()
        self._sample()


def stop_tier(tier: Tier, signum: int, wait_seconds: float = 10.0) -> int | None:
    """Send ``signum`` to a tier, wait for it to exit (kill it after ``wait_seconds``)."""
    if tier.proc.poll() is None:
        tier.proc.send_signal(signum)
    try:
        tier.proc.wait(wait_seconds)
    except subprocess.TimeoutExpired:
        tier.proc.kill()
        tier.proc.wait(wait_seconds)
    return tier.proc.returncode


def restart_tier(top: Topology, name: str, ready_seconds: float = 30.0) -> None:
    """Launch a stopped tier again: the same command, the same ports, its log appended
    to; wait until its ``/healthz`` answers, or raise ``TopologyError``."""
    old = top.tiers[name]
    if old.proc.poll() is None:
        raise TopologyError(f"{name} is still running")
    argv = [str(a) for a in cast(list[str], old.proc.args)]
    with contextlib.ExitStack() as stack:  # the child keeps its own copy of the descriptor
        out = stack.enter_context(old.log_path.open("ab")) if old.log_path else None
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT if out else None
        )
    top.tiers[name] = tier = dataclasses.replace(old, proc=proc)
    deadline = time.monotonic() + ready_seconds
    while not answers(tier.admin_url + "/healthz"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise TopologyError(f"{name} did not come back; log tail:\n{tier.log_tail()}")
        time.sleep(0.05)


@dataclasses.dataclass(frozen=True)
class ChaosStep:
    """Stop ``tier`` with ``signum`` at ``at`` seconds; launch it again ``outage`` s later."""

    tier: str
    signum: int
    at: float
    outage: float


class ChaosMonkey:
    """Runs ``steps`` from a thread, in order; each event's times go to ``events``.
    When the run ends early, a tier that is down is launched again at once."""

    def __init__(self, top: Topology, steps: Sequence[ChaosStep], t0: float) -> None:
        self.top, self.steps, self.t0 = top, steps, t0
        # guarded by: written by the chaos thread only; read after __exit__ joined it
        self.events: list[dict[str, Any]] = []
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-monkey", daemon=True)

    def __repr__(self) -> str:
        return f"<ChaosMonkey {len(self.events)}/{len(self.steps)} events>"

    def __enter__(self) -> ChaosMonkey:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _now(self) -> float:
        return time.perf_counter() - self.t0

    def _run(self) -> None:
        try:
            for step in self.steps:
                if self._stop.wait(max(0.0, step.at - self._now())):
                    return
                event: dict[str, Any] = {
                    "tier": step.tier,
                    "signal": signal.Signals(step.signum).name,
                }
                event["stop_at"] = round(self._now(), 3)
                event["exit_code"] = stop_tier(self.top.tiers[step.tier], step.signum)
                event["stopped_at"] = round(self._now(), 3)
                self.events.append(event)
                self._stop.wait(max(0.0, step.at + step.outage - self._now()))
                event["restart_at"] = round(self._now(), 3)
                restart_tier(self.top, step.tier)
                event["ready_at"] = round(self._now(), 3)
        except (TopologyError, OSError, subprocess.SubprocessError) as exc:
            self.error = str(exc)[:2000]


# -- figures --------------------------------------------------------------------------------


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


def _deltas(
    samples: Sequence[tuple[float, dict[str, dict[str, float] | None]]], tier: str
) -> list[tuple[float, float, dict[str, float]]]:
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


def tier_series(
    samples: Sequence[tuple[float, dict[str, dict[str, float] | None]]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(per-interval series for the plots, totals per tier for the summary)."""
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


# -- the library ----------------------------------------------------------------------------


def find_titles(library: Path) -> list[str]:
    """``/<title>/<name>.mpd`` of every title folder in ``library``, sorted by name."""
    found = []
    for folder in sorted(p for p in library.iterdir() if p.is_dir() and not p.name.startswith(".")):
        mpds = sorted(folder.glob("*.mpd"))
        if mpds:
            found.append(f"/{folder.name}/{mpds[0].name}")
    return found


def make_titles(library: Path, titles: int, seconds: float, timeout: float) -> float:
    """``python -m origin sample`` into ``library/title-0``, copied to ``title-1`` ..:
    the caches see distinct URLs, which is all the catalogue needs. The seconds it took."""
    began = time.perf_counter()
    first = library / "title-0"
    cmd = [
        sys.executable,
        "-m",
        "origin",
        "sample",
        "--out",
        str(first),
        "--duration",
        f"{seconds:g}",
    ]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(f"origin sample failed:\n{done.stderr[-2000:]}")
    for i in range(1, titles):
        shutil.copytree(first, library / f"title-{i}")
    return time.perf_counter() - began


@contextlib.contextmanager
def _library(ns: argparse.Namespace) -> Iterator[tuple[Path | None, list[str], float | None]]:
    """(library or None for a running CDN, MPD paths, seconds spent making titles)."""
    if ns.manifest:
        yield ns.library, list(ns.manifest), None
        return
    if ns.library is None and ns.edge:
        with urllib.request.urlopen(ns.edge.rstrip("/") + "/", timeout=ns.timeout) as resp:
            yield None, [t["manifest"] for t in json.load(resp)][: ns.titles], None
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
        yield library, find_titles(library)[: ns.titles], made


# -- the scenario ---------------------------------------------------------------------------


def chaos_steps(duration: float, outage: float) -> list[ChaosStep]:
    """The regional stopped politely at a quarter of the run, the origin killed past half."""
    return [
        ChaosStep("regional", signal.SIGTERM, 0.25 * duration, outage),
        ChaosStep("origin", signal.SIGKILL, 0.55 * duration, outage),
    ]


def run_scenario(
    ns: argparse.Namespace,
    edge: str,
    admins: dict[str, str],
    manifests: list[str],
    top: Topology | None,
) -> dict[str, Any]:
    """Viewers against ``edge`` while the tiers are sampled (and, in chaos, stopped)."""
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
        ns.scenario, ns.viewers, manifests, ramp=ramp, alpha=ns.alpha, links=ns.link, seed=ns.seed
    )
    t0 = time.perf_counter() + 0.3  # every viewer is scheduled before the first starts
    run = Run(edge.rstrip("/"), t0, ns.speedup, ns.give_up, {})
    steps = chaos_steps(ns.duration, ns.outage) if ns.scenario == "chaos" else []
    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(TierSampler(admins, t0, ns.sample_interval or step))
        monkey = stack.enter_context(ChaosMonkey(top, steps, t0)) if top and steps else None
        logs = run_loop(
            lambda: run_viewers(run, plans, duration=ns.duration, request_seconds=ns.timeout)
        )
        seconds = time.perf_counter() - t0
    if monkey is not None and monkey.error:
        raise RuntimeError(f"chaos: {monkey.error}")
    events = monkey.events if monkey else []
    series, tiers = tier_series(sampler.samples)
    return {
        "ramp_s": round(ramp, 2),
        "seconds": round(seconds, 2),
        **summarise(logs, run.ladder),
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
    a("--titles", type=int, default=5, help="titles in the catalogue (default 5)")
    a("--title-seconds", type=float, default=30.0, help="length of each title made (30)")
    a("--library", type=Path, help="titles here (made here if it has none)")
    a("--manifest", action="append", help="MPD URL path of a title (repeatable; with --edge)")
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
    a("--seed", type=int, default=SEED, help="seed of titles and start offsets")
    a("--edge", help="use this running edge (URL) instead of starting a topology")
    for tier in ("edge", "regional", "origin"):
        a(f"--{tier}-admin", help=f"admin URL of the running {tier} (with --edge)")
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


def _endpoints(top: Topology) -> tuple[str, dict[str, str]]:
    return top.edge.url, {name: tier.admin_url for name, tier in top.tiers.items()}


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    counts = (ns.viewers, ns.titles, ns.speedup, ns.duration, ns.title_seconds, ns.timeout)
    if min(counts) <= 0 or min(ns.step or 1, ns.sample_interval or 1, ns.give_up) <= 0:
        raise SystemExit("error: counts and times must be > 0")
    if ns.scenario == "chaos" and ns.edge:
        raise SystemExit("error: chaos stops and restarts tiers: it needs a topology of its own")
    ns.json = ns.json or Path(f"reports/viewers-{ns.scenario}.json")
    load_before = os.getloadavg()
    try:
        with _library(ns) as (library, manifests, made):
            if not manifests:
                raise RuntimeError("no titles")
            print(
                f"viewers {ns.scenario}: {ns.viewers} viewers, {len(manifests)} titles,"
                f" x{ns.speedup:g}, at most {ns.duration:g} s",
                flush=True,
            )
            if ns.edge:
                admins = {
                    t: getattr(ns, f"{t}_admin")
                    for t in ("edge", "regional", "origin")
                    if getattr(ns, f"{t}_admin")
                }
                result = run_scenario(ns, ns.edge, admins, manifests, None)
            else:
                assert library is not None
                with Topology.start(library) as top:
                    result = run_scenario(ns, *_endpoints(top), manifests, top)
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
    _print_summary(summary)
    return 0


def _print_summary(s: dict[str, Any]) -> None:
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
    for path in s.get("plots", []):
        print(f"  plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
