"""The virtual player: a viewer's buffer, access link and ABR, and its session.

A viewer (``ViewerPlan``) starts at its offset and speaks DASH or HLS
(``--protocol``): a DASH viewer GETs its title's MPD from the edge
(``shared.dash.parse_mpd``); an HLS viewer its multivariant playlist, then the
media playlists of its lowest variant and of the audio rendition together
(``shared.hls.parse_playlist``), and another variant's media playlist the first
time the ABR picks it, as hls.js does. Either way the title becomes
``loadtest.track.Track`` values (the same files: CMAF segments), and the viewer
GETs the media segments in order, video and audio of a slot together (with the
init segments, ``EXT-X-MAP`` in HLS, the first time a rung is used), playing
back ``speedup`` times faster than real time so that a run is short.

The model (pure: ``now`` is a parameter): playback starts when the first
media segment has arrived; the buffer (``Playback``: media seconds loaded
minus played) drains at ``speedup`` media seconds per second; an empty
buffer is a stall (rebuffer) until the next segment arrives. The player
fetches the next segment when the buffer has room for one more
(``MAX_BUFFER_SEGMENTS``). ABR (``next_rank``): down a rung when a slot took
longer than its (sped-up) duration; up when more than ``UP_BUFFER_SEGMENTS``
segments are buffered and the last video segment came at least
``UP_HEADROOM`` times faster than the next rung needs (its ``@bandwidth`` in
DASH, its ``BANDWIDTH`` in HLS). A viewer starts at the lowest rung. Its
access link (``Link``: log-uniform between MIN and MAX Mb/s of real-time
playback, times ``speedup`` on the wall clock) paces the bytes it receives,
so viewers settle on different rungs, as on real networks. A failed request
is retried (backoff ``RETRY_BASE`` doubling to ``RETRY_CAP``, at most
``MAX_TRIES``) for at most ``give_up`` seconds, after which the viewer leaves.

Each viewer's ``ViewerLog`` is written by its own task only; titles, start
offsets, access links and (``mix``: half and half) protocols come from a seed
(``plan_viewers``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
from collections.abc import Sequence

import aiohttp

from loadtest.dashclient import dash_tracks, player_session, rung_label, timed_get
from loadtest.hlsclient import hls_track, segment_clock, variant_label, variant_ladder
from loadtest.titles import Title
from loadtest.track import Track
from shared.dash import parse_mpd
from shared.hls import MediaPlaylist, Multivariant, parse_playlist

__all__ = [
    "MAX_BUFFER_SEGMENTS",
    "PROTOCOLS",
    "UP_BUFFER_SEGMENTS",
    "UP_HEADROOM",
    "Link",
    "Playback",
    "Request",
    "Run",
    "ViewerLog",
    "ViewerPlan",
    "next_rank",
    "plan_protocols",
    "plan_viewers",
    "rung_label",
    "viewer",
    "zipf_weights",
]

MAX_BUFFER_SEGMENTS = 5  # fetch the next segment when the buffer has room for one more
UP_BUFFER_SEGMENTS = 3  # up a rung only with more than this many segments buffered
UP_HEADROOM = 1.5  # ... and a throughput this many times the next rung's (sped-up) rate
RETRY_BASE, RETRY_CAP, MAX_TRIES = 0.1, 1.0, 50
PROTOCOLS = ("dash", "hls")  # what a viewer speaks; ``mix`` plans half of each
_CHUNK = 64 * 1024  # read size; a paced link waits after each


# -- the plan -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ViewerPlan:
    """One viewer: when it starts and what it watches."""

    index: int
    offset: float  # seconds after the run's start
    manifest: str  # URL path of the title's MPD, or of its multivariant playlist (HLS)
    link_bps: float | None  # its access link in bits/s of real-time playback; None: unpaced
    protocol: str = "dash"  # "dash" or "hls"


def zipf_weights(n: int, alpha: float) -> list[float]:
    """Zipf weights of ranks 1..n: ``1 / k**alpha`` (not normalised)."""
    return [1.0 / (k**alpha) for k in range(1, n + 1)]


def plan_protocols(protocol: str, viewers: int, seed: int) -> list[str]:
    """Each viewer's protocol: all ``protocol``, or for ``mix`` half DASH and half HLS
    (DASH has the odd one) in an order drawn from ``seed``."""
    if protocol != "mix":
        return [protocol] * viewers
    mixed = ["dash"] * (viewers - viewers // 2) + ["hls"] * (viewers // 2)
    random.Random(seed + 1).shuffle(mixed)  # its own stream: DASH plans stay as they were
    return mixed


def plan_viewers(
    scenario: str,
    viewers: int,
    titles: Sequence[Title],
    *,
    ramp: float,
    alpha: float,
    links: tuple[float, float] | None,
    seed: int,
    protocol: str = "dash",
) -> list[ViewerPlan]:
    """Start offsets uniform in ``[0, ramp)``; titles by Zipf, or all the last (new) title
    in a flash crowd; access links log-uniform in ``links`` (bits/s), if given; protocols
    by ``plan_protocols``. ``ValueError`` if a viewer's title lacks its protocol."""
    rng = random.Random(seed)
    weights = zipf_weights(len(titles), alpha)
    plans = []
    for i, speaks in enumerate(plan_protocols(protocol, viewers, seed)):
        offset = rng.uniform(0.0, ramp)
        title = titles[-1] if scenario == "flash-crowd" else rng.choices(titles, weights)[0]
        link = None if links is None else math.exp(rng.uniform(*map(math.log, links)))
        manifest = title.dash if speaks == "dash" else title.hls
        if manifest is None:
            raise ValueError(f"title {title.dash or title.hls} has no {speaks} manifest")
        plans.append(ViewerPlan(i, offset, manifest, link, speaks))
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


# -- a viewer's session -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
    """One request of a viewer; ``at`` is seconds from the run's start."""

    at: float
    kind: str  # "mpd", "playlist" (HLS), "init", "video" or "audio"
    rank: int  # video rung; -1 for anything else
    ttfb: float | None
    total: float | None
    size: int
    error: str  # "" when a 200 with the announced length
    path: str  # the URL path asked for


@dataclasses.dataclass
class ViewerLog:
    """What one viewer did (written by its own task only)."""

    manifest: str
    protocol: str = "dash"
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
    ladders: dict[str, dict[int, str]]  # protocol -> video rank -> label, by the first viewers


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
    got = await timed_get(session, run.base + path, chunk=_CHUNK, keep=keep, pace=link.delay)
    request = Request(got.sent - run.t0, kind, rank, got.ttfb, got.total, got.size, got.error, path)
    return request, got.body


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


@dataclasses.dataclass
class Ladder:
    """What a viewer plays once its manifest is read (written by its own task only)."""

    labels: list[str]  # video rank -> label
    bandwidths: list[int]  # video rank -> bits/s the ABR reckons with
    audio: Track | None
    clock: list[float]  # media seconds at each segment's start, and the last one's end
    tracks: dict[int, Track]  # video rank -> its track, once known
    playlists: list[str] = dataclasses.field(default_factory=list)  # HLS: rank -> playlist


async def _open_dash(
    session: aiohttp.ClientSession, run: Run, log: ViewerLog, link: Link, mpd: str
) -> Ladder | None:
    """The MPD: every rung's track at once."""
    got = await _get_all(session, run, log, link, [(mpd, "mpd", -1)], keep=True)
    if got is None:
        return None
    video, audio, clock = dash_tracks(parse_mpd(got[0][1], mpd))
    labels = [t.label for t in video]
    return Ladder(labels, [t.bandwidth for t in video], audio, clock, dict(enumerate(video)))


def _parsed(body: bytes, path: str) -> MediaPlaylist:
    playlist = parse_playlist(body, path)
    if not isinstance(playlist, MediaPlaylist):
        raise ValueError(f"{path}: not a media playlist")
    return playlist


async def _open_hls(
    session: aiohttp.ClientSession, run: Run, log: ViewerLog, link: Link, master: str
) -> Ladder | None:
    """The multivariant playlist, then the lowest variant's and the audio's media
    playlists together; the other variants' when the ABR first picks them."""
    got = await _get_all(session, run, log, link, [(master, "playlist", -1)], keep=True)
    if got is None:
        return None
    multivariant = parse_playlist(got[0][1], master)
    if not isinstance(multivariant, Multivariant):
        raise ValueError(f"{master}: not a multivariant playlist")
    variants, rendition = variant_ladder(multivariant)
    wanted = [(variants[0].uri, "playlist", -1)]
    if rendition is not None and rendition.uri is not None:
        wanted.append((rendition.uri, "playlist", -1))
    got = await _get_all(session, run, log, link, wanted, keep=True)
    if got is None:
        return None
    lowest = _parsed(got[0][1], variants[0].uri)
    labels = [variant_label(v) for v in variants]
    bandwidths = [v.bandwidth for v in variants]
    tracks = {0: hls_track(lowest, labels[0], bandwidths[0])}
    audio = None
    count = len(lowest.segments)
    if len(got) > 1:
        sound = _parsed(got[1][1], wanted[1][0])
        audio = hls_track(sound, rendition.name if rendition else "audio", 0)
        count = min(count, len(sound.segments))
    clock = segment_clock(lowest, count)
    return Ladder(labels, bandwidths, audio, clock, tracks, [v.uri for v in variants])


async def _track(
    session: aiohttp.ClientSession,
    run: Run,
    log: ViewerLog,
    link: Link,
    ladder: Ladder,
    rank: int,
) -> Track | None:
    """Rung ``rank``'s track, its media playlist first read if need be (HLS)."""
    if rank not in ladder.tracks:
        path = ladder.playlists[rank]
        got = await _get_all(session, run, log, link, [(path, "playlist", rank)], keep=True)
        if got is None:
            return None
        try:
            playlist = _parsed(got[0][1], path)
            track = hls_track(playlist, ladder.labels[rank], ladder.bandwidths[rank])
        except ValueError as exc:
            log.error = f"playlist: {exc}"[:120]
            return None
        ladder.tracks[rank] = track
    return ladder.tracks[rank]


async def _watch(
    session: aiohttp.ClientSession, run: Run, plan: ViewerPlan, log: ViewerLog
) -> None:
    """One viewer: its manifest, then every media segment with the buffer and ABR."""
    await asyncio.sleep(max(0.0, run.t0 + plan.offset - time.perf_counter()))
    log.started = time.perf_counter() - run.t0
    link = Link(None if plan.link_bps is None else plan.link_bps * run.speedup)
    opened = _open_hls if plan.protocol == "hls" else _open_dash
    try:
        ladder = await opened(session, run, log, link, plan.manifest)
    except ValueError as exc:
        log.error = f"manifest: {exc}"[:120]
        return
    if ladder is None:
        return
    labels = run.ladders.setdefault(plan.protocol, {})
    for rank, label in enumerate(ladder.labels):
        labels.setdefault(rank, label)
    player = Playback(run.speedup)
    try:
        await _play(session, run, log, link, player, ladder)
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
    ladder: Ladder,
) -> None:
    rank, inited = 0, set[str]()
    top, clock, audio = len(ladder.bandwidths) - 1, ladder.clock, ladder.audio
    for i in range(len(clock) - 1):
        seconds = clock[i + 1] - clock[i]
        room = player.buffered(time.perf_counter()) - (MAX_BUFFER_SEGMENTS - 1) * seconds
        if room > 0:
            await asyncio.sleep(room / run.speedup)
        began = time.perf_counter()
        track = await _track(session, run, log, link, ladder, rank)
        if track is None:
            return
        if i >= len(track.segments):  # a rung shorter than the lowest: its end
            break
        wanted = [(track.segments[i], "video", rank)]
        if audio is not None:
            wanted.append((audio.segments[i], "audio", -1))
        for t in (track, audio):
            if t is not None and t.init and t.init not in inited:
                wanted.append((t.init, "init", -1))
        got = await _get_all(session, run, log, link, wanted)
        if got is None:
            return
        inited.update(t.init for t in (track, audio) if t and t.init)
        now = time.perf_counter()
        player.add(now, seconds)
        if log.playing is None:
            log.playing = now - run.t0
        first = got[0][0]
        throughput = 8 * first.size / max(first.total or 0.0, 1e-6)
        up = ladder.bandwidths[min(rank + 1, top)] * run.speedup
        new = next_rank(
            rank, top, took=now - began, slot=seconds / run.speedup,
            buffered=int(player.buffered(now) / seconds), throughput=throughput, up_rate=up,
        )  # fmt: skip
        log.ups, log.downs = log.ups + (new > rank), log.downs + (new < rank)
        rank = new
    log.done = True


async def viewer(run: Run, plan: ViewerPlan, log: ViewerLog, request_seconds: float) -> None:
    """One viewer with its own two keep-alive connections, as a browser player has."""
    async with player_session(2, request_seconds) as session:
        await _watch(session, run, plan, log)
