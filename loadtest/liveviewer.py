"""Live viewers: each joins a live channel at its live edge and stays there, asking for
every new segment (video and audio) the moment it becomes available and reading its
chunks as they stream.

A viewer (``live_viewer``) starts at its offset within the kick-off ramp, GETs the
MPD (retrying a 503 while the channel starts) and ``/time`` once (its clock skew:
server time minus the local midpoint), then refreshes the MPD as its ``max-age``
says in a task of its own. From the live edge on, for each segment ``n`` it sleeps
until ``n``'s availability (``Channel.availability``, on the local clock), GETs
video (the ABR's rung; its init the first time a rung is used) and audio together,
records each body's first and last byte, feeds ``Playhead`` (stalls, latency) and
``Throughput``, and picks the next rung (``next_rung``). A failed GET (a 404 of a
segment a moment early, a 5xx, a reset) is retried every ``RETRY`` seconds until
``give_up`` seconds after the segment's availability; every attempt is logged.

Invariants:

- One ``aiohttp.ClientSession`` for all viewers (``live_session``): one pool of
  keep-alive connections, no per-viewer setup; bodies are read with ``readany``,
  as they arrive, never buffered whole.
- Bounded: a viewer asks for no segment available after ``LiveRun.stop`` (local
  clock), and the caller cancels whatever still runs a grace period later.
- A ``ViewerLog`` is written by its viewer's tasks only (single event loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time

import aiohttp

from loadtest.livechannel import Channel, Playhead, Throughput, next_rung, parse_channel
from loadtest.livechannel import parse_max_age as _max_age

__all__ = [
    "BURST_GAP",
    "RETRY",
    "Fetch",
    "LiveRun",
    "ViewerLog",
    "fetch",
    "live_session",
    "live_viewer",
]

RETRY = 0.05  # seconds between attempts at a segment
BURST_GAP = 0.05  # a pause between reads longer than this is the encoder, not the link
_MEMO = 8  # parsed MPDs kept (by body): 1000 viewers parse each new MPD once


@dataclasses.dataclass(slots=True)
class Fetch:
    """One GET; times are ``time.time()`` (wall clock, comparable across processes)."""

    kind: str  # video, audio, init, mpd, time
    path: str
    n: int  # segment number (0 if none)
    rung: int  # video rung (0 for the rest)
    sent: float
    first: float | None  # first body byte
    last: float | None  # last body byte
    status: int  # 0: no response
    size: int
    busy: float  # seconds spent receiving (gaps under BURST_GAP)
    error: str  # "" for a whole 200
    scheduled: bool = False  # sent at the segment's availability (waited for it)
    availability: float = 0.0  # the segment's availability, local clock


async def fetch(
    session: aiohttp.ClientSession, url: str, kind: str, path: str, *, keep: bool = False
) -> tuple[Fetch, bytes, str]:
    """GET ``url``: the ``Fetch`` (n, rung and schedule left for the caller), the body
    if ``keep``, and the response's Cache-Control. Never raises for a network error."""
    sent = time.time()
    first = last = None
    status = size = 0
    busy, error, cache_control = 0.0, "", ""
    kept = bytearray()
    try:
        async with session.get(url) as resp:
            status, cache_control = resp.status, resp.headers.get("Cache-Control", "")
            previous = time.time()
            while data := await resp.content.readany():
                now = time.time()
                if first is None:
                    first = now
                elif now - previous < BURST_GAP:
                    busy += now - previous
                previous = now
                size += len(data)
                if keep:
                    kept += data
            last = time.time()
            if status != 200:
                error = f"status {status}"
            elif resp.content_length is not None and size != resp.content_length:
                error = f"short body {size}/{resp.content_length}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:120]
    return (
        Fetch(kind, path, 0, 0, sent, first, last, status, size, busy, error),
        bytes(kept),
        cache_control,
    )


def live_session(
    request_seconds: float, local_addr: tuple[str, int] | None = None
) -> aiohttp.ClientSession:
    """The one session of a load generator: an unbounded pool of keep-alive
    connections, ``request_seconds`` between reads, no decompression, no cookies."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=0, keepalive_timeout=30, local_addr=local_addr, use_dns_cache=True
        ),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=request_seconds),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


@dataclasses.dataclass
class ViewerLog:
    """What one viewer did and saw."""

    index: int
    fetches: list[Fetch] = dataclasses.field(default_factory=list)
    joined: float | None = None  # wall clock
    first_segment: int | None = None
    skew: float = 0.0  # server clock minus local clock
    playhead: Playhead | None = None
    rejoins: int = 0  # the channel's run changed under it
    lost: int = 0  # segments given up
    error: str = ""  # why it could not join


@dataclasses.dataclass
class LiveRun:
    """What every viewer of one run shares."""

    base: str  # the edge's URL
    mpd_path: str
    session: aiohttp.ClientSession
    stop: float  # local wall clock: no segment available after this is asked for
    give_up: float  # seconds after a segment's availability to stop retrying it
    channels: dict[bytes, Channel] = dataclasses.field(default_factory=dict)

    def channel(self, body: bytes) -> Channel:
        """The channel an MPD body describes, parsed once per distinct body."""
        found = self.channels.get(body)
        if found is None:
            if len(self.channels) >= _MEMO:
                self.channels.clear()
            found = self.channels[body] = parse_channel(body, self.mpd_path)
        return found

    async def get(self, kind: str, path: str, log: ViewerLog, keep: bool = False) -> Fetch:
        record, _, _ = await fetch(self.session, self.base + path, kind, path, keep=keep)
        log.fetches.append(record)
        return record

    async def manifest(self, log: ViewerLog) -> tuple[Channel, float] | None:
        """The channel and its max-age, retried (a starting channel answers 503) until
        ``stop``; None if it never came."""
        while time.time() < self.stop:
            record, body, cache_control = await fetch(
                self.session, self.base + self.mpd_path, "mpd", self.mpd_path, keep=True
            )
            log.fetches.append(record)
            if not record.error:
                try:
                    return self.channel(body), _max_age(cache_control)
                except ValueError as exc:
                    record.error = f"bad MPD: {exc}"[:120]
            await asyncio.sleep(0.5)
        return None

    async def skew(self, log: ViewerLog) -> float:
        """Server time minus local time, from ``/time`` (0 if it does not answer)."""
        record, body, _ = await fetch(self.session, self.base + "/time", "time", "/time", keep=True)
        log.fetches.append(record)
        if record.error or record.last is None:
            return 0.0
        try:
            server = datetime.datetime.fromisoformat(body.decode().strip().replace("Z", "+00:00"))
        except ValueError:
            return 0.0
        return server.timestamp() - (record.sent + record.last) / 2


class _Viewer:
    """One viewer's state between its segment loop and its MPD refresher."""

    def __init__(self, run: LiveRun, log: ViewerLog, channel: Channel, max_age: float) -> None:
        self.run, self.log = run, log
        self.channel, self.max_age = channel, max_age  # guarded by: single event loop

    async def refresh(self) -> None:
        """Refresh the MPD whenever its max-age ends, until the run's stop."""
        while time.time() + self.max_age < self.run.stop:
            await asyncio.sleep(self.max_age)
            found = await self.run.manifest(self.log)
            if found is not None:
                self.channel, self.max_age = found[0], max(0.5, found[1])

    async def segment(
        self, kind: str, path: str, n: int, rung: int, avail: float, scheduled: bool
    ) -> Fetch:
        """GET a media segment, retried until ``give_up`` after its availability."""
        while True:
            record = await self.run.get(kind, path, self.log)
            record.n, record.rung, record.availability = n, rung, avail
            record.scheduled, scheduled = scheduled, False  # a retry is no longer on time
            if not record.error or time.time() + RETRY > avail + self.run.give_up:
                return record
            await asyncio.sleep(RETRY)

    async def watch(self) -> None:
        log, run = self.log, self.run
        channel = self.channel
        n = channel.live_edge(time.time() + log.skew)
        log.first_segment = n
        playhead = log.playhead = Playhead(
            n, channel.media_start(n) - log.skew, channel.latency, channel.segment
        )
        rung, inits, meter = 0, set[str](), Throughput()
        while True:
            if self.channel.base != channel.base:  # a new run of the encoder: join it anew
                channel, log.rejoins = self.channel, log.rejoins + 1
                n = channel.live_edge(time.time() + log.skew)
                playhead = Playhead(
                    n, channel.media_start(n) - log.skew, channel.latency, channel.segment
                )
                rung, inits = min(rung, len(channel.video) - 1), set()
            channel = self.channel
            avail = channel.availability(n) - log.skew
            if avail >= run.stop:
                return
            scheduled = (wait := avail - time.time()) > 0  # else: late, or joining
            if scheduled:
                await asyncio.sleep(wait)
            video = channel.video[rung]
            jobs = [self.segment("video", channel.path(video, n), n, rung, avail, scheduled)]
            if channel.audio is not None:
                path = channel.path(channel.audio, n)
                jobs.append(self.segment("audio", path, n, 0, avail, scheduled))
            for stream in (video, channel.audio):
                init = None if stream is None else stream.initialization
                if init is not None and init not in inits:
                    inits.add(init)
                    jobs.append(self._init(init))
            got = await asyncio.gather(*jobs)
            media = [f for f in got[:2] if f.kind in ("video", "audio")]
            complete = None if any(f.error for f in media) else max(f.last or 0 for f in media)
            due = playhead.due(n)
            if complete is None:
                log.lost += 1
                late = True
                if due is None:  # nothing played yet: start from the next one
                    playhead = log.playhead = Playhead(
                        n + 1, channel.media_start(n + 1) - log.skew, channel.latency,
                        channel.segment,
                    )  # fmt: skip
                else:
                    playhead.arrived(n, due + channel.segment)
            else:
                late = playhead.arrived(n, complete) > 0
                meter.add(got[0].size, got[0].busy)
            rung = next_rung(rung, channel.bandwidths, meter.bps, late)
            n += 1

    async def _init(self, path: str) -> Fetch:
        return await self.run.get("init", path, self.log)


async def live_viewer(run: LiveRun, log: ViewerLog, start: float) -> None:
    """One viewer: join at ``start`` (local wall clock), then stay at the live edge."""
    if (wait := start - time.time()) > 0:
        await asyncio.sleep(wait)
    log.joined = time.time()
    found = await run.manifest(log)
    if found is None:
        log.error = "no MPD"
        return
    log.skew = await run.skew(log)
    viewer = _Viewer(run, log, *found)
    async with asyncio.TaskGroup() as group:
        refresher = group.create_task(viewer.refresh(), name=f"mpd refresh {log.index}")
        await viewer.watch()
        refresher.cancel()
