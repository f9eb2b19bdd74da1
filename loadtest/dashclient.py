"""A small DASH client for the load tests: timed GETs, and the segments of a parsed MPD.

``timed_get`` is one request as a player makes it: the time to the response
head (TTFB) and to the last body byte, the body kept only when asked (an
MPD), read in chunks that an access link may pace, and a verdict: ``""``
for a 200 with the announced length, else why not. It never raises for a
network failure; the caller decides whether to retry.

The MPD is parsed by ``shared.dash.parse_mpd``; this module walks what it
found: the first period's video ladder and audio (``ladder``), the URL path
of media segment ``i`` (``media_path``, expanding ``$Number$``/``$Time$``),
and the media clock (``media_clock``) a player paces its requests by;
``dash_tracks`` gives the viewer all of it as ``loadtest.track.Track`` values,
the form an HLS title takes too (``loadtest.hlsclient``).
Every viewer has its own session of a few keep-alive connections
(``player_session``), as a browser player does: a pool shared by all
viewers would open connections in bursts whenever load peaks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable

import aiohttp

from loadtest.track import Track
from shared.dash import ContentKind, Presentation, Stream

__all__ = [
    "Exchange",
    "dash_tracks",
    "ladder",
    "media_clock",
    "media_path",
    "player_session",
    "rung_label",
    "segment_count",
    "timed_get",
    "title_paths",
]

_TOKEN = re.compile(r"\$([^$]*)\$")

Pace = Callable[[float, int], float]  # (now, bytes just received) -> seconds to wait


@dataclasses.dataclass(frozen=True)
class Exchange:
    """One timed GET; ``ttfb`` and ``total`` in seconds from ``sent``."""

    sent: float  # ``time.perf_counter()`` when it was sent
    ttfb: float | None  # response head received; None if none came
    total: float | None  # last body byte received
    status: int  # 0 if no response
    size: int  # body bytes received
    error: str  # "" when a 200 with the announced length
    cache_status: str  # the response's Cache-Status header ("" if none)
    body: bytes  # only when kept


async def timed_get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    chunk: int,
    keep: bool = False,
    pace: Pace | None = None,
) -> Exchange:
    """GET ``url``, timing its head and its last byte; read ``chunk`` bytes at a time,
    waiting after each as long as ``pace`` says; keep the body only if ``keep``."""
    started = time.perf_counter()
    ttfb = total = None
    status, size, error, cache_status, kept = 0, 0, "", "", bytearray()
    try:
        async with session.get(url) as resp:
            ttfb = time.perf_counter() - started
            status, cache_status = resp.status, resp.headers.get("Cache-Status", "")
            async for data in resp.content.iter_chunked(chunk):
                size += len(data)
                if pace is not None and (wait := pace(time.perf_counter(), len(data))) > 0:
                    await asyncio.sleep(wait)
                if keep:
                    kept += data
            total = time.perf_counter() - started
            if status != 200:
                error = f"status {status}"
            elif resp.content_length is not None and size != resp.content_length:
                error = f"short body {size}/{resp.content_length}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:120]
    return Exchange(started, ttfb, total, status, size, error, cache_status, bytes(kept))


def player_session(connections: int, request_seconds: float) -> aiohttp.ClientSession:
    """One viewer's session: at most ``connections`` keep-alive connections of its own,
    ``request_seconds`` per request, bodies as sent (no decompression), no cookies."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=request_seconds),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def ladder(presentation: Presentation) -> tuple[list[Stream], Stream | None]:
    """The first period's video streams by rank (0 = lowest), and its lowest-bitrate
    audio stream (None if it has no audio)."""
    first = [s for s in presentation.streams if s.representation.period == 0]
    video = sorted(
        (s for s in first if s.representation.kind is ContentKind.VIDEO),
        key=lambda s: s.representation.rank,
    )
    audio = [s for s in first if s.representation.kind is ContentKind.AUDIO]
    return video, min(audio, key=lambda s: s.representation.rank, default=None)


def media_path(stream: Stream, index: int) -> str:
    """The URL path of media segment ``index`` (0 = the first) of ``stream``."""
    if stream.media is None:
        raise ValueError(f"representation {stream.representation.id} has no media template")
    number, start = stream.start_number + index, stream.timeline.time_at(index)

    def value(token: re.Match[str]) -> str:
        if not token[1]:
            return "$"
        name, _, fmt = token[1].partition("%")
        found = number if name == "Number" else start if name == "Time" else None
        if found is None:
            raise ValueError(f"cannot expand ${token[1]}$ for segment {index}")
        return format(found, fmt.rstrip("d") + "d" if fmt else "d")

    return _TOKEN.sub(value, stream.media)


def segment_count(stream: Stream) -> int:
    """Media segments of ``stream``; ``ValueError`` if the presentation has no end."""
    if stream.timeline.length is None:
        raise ValueError(f"representation {stream.representation.id} has no last segment")
    return stream.timeline.length


def media_clock(stream: Stream, count: int) -> list[float]:
    """Seconds of media time at which each of the first ``count`` segments of ``stream``
    starts, from the first one, and where the last one ends (``count + 1`` values)."""
    starts = [stream.timeline.time_at(i) for i in range(count)]
    if not starts or None in starts or not stream.timeline.runs:
        raise ValueError(f"representation {stream.representation.id}: no segment times")
    ticks = [t for t in starts if t is not None]
    ticks.append(ticks[-1] + stream.timeline.runs[-1].d)  # no S@t after the last segment
    return [(t - ticks[0]) / stream.timescale for t in ticks]


def title_paths(presentation: Presentation) -> list[str]:
    """Every init and media segment of every representation (the fallback pre-warm)."""
    inits = [s.initialization for s in presentation.streams if s.initialization]
    media = [
        media_path(s, i) for s in presentation.streams if s.media for i in range(segment_count(s))
    ]
    return inits + media


def rung_label(stream: Stream) -> str:
    """``"720p 2400 kb/s"``: a video rung as the report names it."""
    rep = stream.representation
    size = f"{rep.height}p " if rep.height else ""
    return f"{size}{rep.bandwidth / 1000:.0f} kb/s"


def _track(stream: Stream, count: int) -> Track:
    rep = stream.representation
    paths = tuple(media_path(stream, i) for i in range(count))
    return Track(rung_label(stream), rep.bandwidth, stream.initialization, paths)


def dash_tracks(presentation: Presentation) -> tuple[list[Track], Track | None, list[float]]:
    """The video rungs by rank (0 = lowest), the audio (None if none) and the media clock
    (``media_clock``) of the segments every one of them has; ``ValueError`` if the
    presentation has no video or no end."""
    video, audio = ladder(presentation)
    if not video:
        raise ValueError("no video representation")
    streams = [*video, *([audio] if audio else [])]
    count = min(segment_count(s) for s in streams)
    clock = media_clock(video[0], count)
    return [_track(s, count) for s in video], None if audio is None else _track(audio, count), clock
