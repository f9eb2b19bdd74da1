"""Live channels: a synthetic source encoded in real time into low-latency DASH,
and HLS over the same segments.

The bundled ffmpeg encodes a test pattern with a burnt-in wall
clock and frame counter, and a tone, over the sample's ladder, into a dynamic
presentation: ``type="dynamic"``, ``availabilityStartTime``, a
``timeShiftBufferDepth`` of ``window`` segments, ``SegmentTemplate`` with
``$Number$``, ``availabilityTimeOffset`` with ``availabilityTimeComplete="false"``
(LL-DASH: CMAF chunks of ``chunk_seconds``), a ``ServiceDescription`` latency
target and ``UTCTiming`` at ``utc_timing_url``; beside it a multivariant playlist and
sliding-window media playlists of the complete segments (``origin.hls``).

Invariants (ffmpeg's dash muxer with ``-streaming 1 -ldash 1``, checked by
``tests/functional/test_live_encoder.py``):

- A segment being encoded is ``<name>.tmp``, growing a chunk at a time; it is
  renamed to ``<name>`` when complete. ``segment_state`` reads that off the file
  system, so the origin knows a complete segment (immutable) from a growing one
  (sent chunked as it grows) from one not there yet (404).
- Every run of the encoder writes into a folder of its own (``run_dir``): a
  restarted encoder numbers its segments from 1 again under a new
  ``availabilityStartTime``, and a URL a cache stored as immutable must never
  name other bytes.
- ``LiveEncoder`` restarts a dead ffmpeg (backoff ``RESTART_BACKOFF``, doubling,
  logged and counted) and stops it on ``stop`` (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import enum
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from origin.hls import HLS_MASTER, live_master, live_media
from origin.packager import (
    DEFAULT_LADDER,
    INIT_NAME,
    MANIFEST_NAME,
    MEDIA_NAME,
    SAMPLE_FPS,
    Rendition,
    _audio_args,
    _ffmpeg_exe,
    _video_args,
)

__all__ = [
    "OWN_CACHE_CONTROL",
    "Channels",
    "LiveEncoder",
    "LiveSpec",
    "SegmentState",
    "encoder_args",
    "segment_state",
    "utc_now_iso",
]

log = logging.getLogger(__name__)

RESTART_BACKOFF = (1.0, 30.0)  # first delay, cap
_STOP_SECONDS = 5.0  # SIGTERM to SIGKILL
_FONTS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


class SegmentState(enum.Enum):
    COMPLETE = "complete"  # renamed into place: immutable
    GROWING = "growing"  # ``.tmp``: being encoded, chunks arrive
    ABSENT = "absent"  # not yet (or no longer) there


@dataclasses.dataclass(frozen=True)
class LiveSpec:
    """One channel: what ffmpeg encodes and how the presentation is timed."""

    name: str
    utc_timing_url: str  # the origin's time endpoint (ISO 8601, http-xsdate)
    ladder: Sequence[Rendition] = DEFAULT_LADDER
    segment_seconds: float = 2.0
    chunk_seconds: float = 0.5  # CMAF chunk: what a growing segment gains at a time
    window: int = 15  # segments in the manifest (timeShiftBufferDepth)
    latency: float = 3.0  # ServiceDescription latency target, seconds
    clock: bool = True  # burn in wall clock and frame counter (needs a font)


def encoder_args(spec: LiveSpec, run_dir: Path, ffmpeg: str | None = None) -> list[str]:
    """The ffmpeg command that encodes ``spec`` in real time into ``run_dir``."""
    height = max(r.height for r in spec.ladder)
    width = (height * 16 // 9) // 2 * 2
    source = f"testsrc2=size={width}x{height}:rate={SAMPLE_FPS}"
    if spec.clock and _has_font():
        text = "%{localtime\\:%T} frame %{n}"
        source += (
            f",drawtext=text='{text}':fontsize={max(height // 18, 12)}:x=16:y=16"
            ":fontcolor=white:box=1:boxcolor=black@0.6"
        )
    return [
        *(ffmpeg or _ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
        *("-re", "-f", "lavfi", "-i", source),
        *("-re", "-f", "lavfi", "-i", "sine=frequency=440:beep_factor=4:sample_rate=48000"),
        *_video_args("0:v:0", spec.ladder, spec.segment_seconds, preset="ultrafast"),
        *("-tune", "zerolatency"),
        *_audio_args("1:a:0"),
        *("-f", "dash", "-seg_duration", str(spec.segment_seconds)),
        *("-frag_type", "duration", "-frag_duration", str(spec.chunk_seconds)),
        *("-ldash", "1", "-streaming", "1", "-target_latency", str(spec.latency)),
        *("-window_size", str(spec.window), "-extra_window_size", "2"),
        *("-use_template", "1", "-use_timeline", "0"),
        *("-utc_timing_url", spec.utc_timing_url),
        *("-init_seg_name", INIT_NAME, "-media_seg_name", MEDIA_NAME),
        *("-adaptation_sets", "id=0,streams=v id=1,streams=a"),
        *("-hls_playlist", "1"),  # master.m3u8, media_<id>.m3u8: the same segments as HLS
        str(run_dir / MANIFEST_NAME),
    ]


def segment_state(path: Path) -> SegmentState:
    """Complete, growing or absent: what ffmpeg's file names say of ``path``."""
    if path.is_file():
        return SegmentState.COMPLETE
    if path.with_name(path.name + ".tmp").is_file():
        return SegmentState.GROWING
    return SegmentState.ABSENT


class LiveEncoder:
    """Runs one channel's ffmpeg into a new folder under ``channel_dir`` per run."""

    def __init__(self, spec: LiveSpec, channel_dir: Path) -> None:
        self.spec, self.channel_dir = spec, channel_dir
        self.run_dir: Path | None = None  # the current run's folder
        self.restarts = 0  # guarded by: single event loop
        self.last_error = ""  # the last lines a dead ffmpeg printed
        self.restart_at = 0.0  # monotonic time of the next start, while it is down
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._start: tuple[Path, float] | None = None  # (run, its availability start)

    def availability_start(self) -> float | None:
        """The current run MPD's ``availabilityStartTime`` (epoch seconds), once written:
        fixed for the run, so read once per run."""
        run = self.run_dir
        if run is None:
            return None
        if self._start is None or self._start[0] != run:
            text = _read_text(run / MANIFEST_NAME)
            found = None if text is None else _AST.search(text)
            if found is None:
                return None
            iso = found.group(1).replace("Z", "+00:00")
            self._start = (run, datetime.datetime.fromisoformat(iso).timestamp())
        return self._start[1]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._end()

    async def _spawn(self) -> None:
        run = f"{int(time.time() * 1000):x}"  # a new name per run, ordered by start
        self.run_dir = self.channel_dir / run
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            *encoder_args(self.spec, self.run_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        log.info("live channel %s: encoding into %s", self.spec.name, self.run_dir)

    async def _supervise(self) -> None:
        delay = RESTART_BACKOFF[0]
        while True:
            proc = self._proc
            assert proc is not None and proc.stderr is not None
            tail: collections.deque[bytes] = collections.deque(maxlen=5)
            async for line in proc.stderr:
                tail.append(line)
            code = await proc.wait()
            self.last_error = b" | ".join(t.strip() for t in tail).decode(errors="replace")
            self.restarts += 1
            log.warning(
                "live channel %s: encoder exited (%s)%s; restarting in %.0fs",
                self.spec.name,
                code,
                f": {self.last_error}" if self.last_error else "",
                delay,
            )
            self.restart_at = time.monotonic() + delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_BACKOFF[1])
            await self._spawn()

    async def _end(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), _STOP_SECONDS)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LiveEncoder {self.spec.name} {state} restarts={self.restarts}>"


def _has_font() -> bool:
    """drawtext needs a font fontconfig can find: any TrueType/OpenType file will do."""
    return any(root.is_dir() and any(root.rglob("*.[to]tf")) for root in _FONTS)


class Channels:
    """The origin's live channels under ``root`` (``<library>/.live``): their encoders,
    and the answers for ``/live/<name>/...`` and ``/time``.

    - ``/live/<name>/manifest.mpd`` is the current run's MPD with a ``BaseURL`` of
      ``<run>/``: every run's segments have URLs of their own. ``max-age`` is half a
      segment (at least 1 s): one upstream revalidation per tier per half segment.
    - ``/live/<name>/master.m3u8`` and ``/live/<name>/<run>/media_<id>.m3u8``: the run's
      HLS playlists (``origin.hls.live_master``, ``live_media``), as fresh as the MPD,
      naming the same segment URLs; 503 until ffmpeg has written them whole.
    - ``/live/<name>/<run>/<file>``: a complete file is immutable; a growing segment is
      sent chunked as ffmpeg writes it and ends when it is renamed into place (a
      segment that stops growing or vanishes aborts the connection: a cache never
      stores a short one); anything else is 404.
    - ``/time``: the UTC time as ISO 8601 (``UTCTiming`` http-xsdate), never cached."""

    def __init__(self, root: Path, specs: Sequence[LiveSpec]) -> None:
        self.encoders = {spec.name: LiveEncoder(spec, root / spec.name) for spec in specs}

    async def start(self) -> None:
        for encoder in self.encoders.values():
            await encoder.start()

    async def stop(self) -> None:
        for encoder in self.encoders.values():
            await encoder.stop()

    def listing(self) -> list[dict[str, object]]:
        """``GET /``'s entries for the channels."""
        return [
            {
                "name": name,
                "live": True,
                "manifest": f"/live/{name}/{MANIFEST_NAME}",
                "hls": f"/live/{name}/{HLS_MASTER}",
                "running": encoder.running,
                "restarts": encoder.restarts,
            }
            for name, encoder in self.encoders.items()
        ]

    async def respond(self, request: web.Request, raw: str) -> web.StreamResponse:
        parts = raw.split("/")  # "", "live", name, ...
        encoder = self.encoders.get(parts[2]) if len(parts) > 3 else None
        if encoder is None or any(p in ("", ".", "..") or "\\" in p for p in parts[3:]):
            return _text(404, "no such channel or file")
        down = not encoder.running
        if len(parts) == 4 and parts[3] == MANIFEST_NAME:
            return _down(encoder) if down else await self._manifest(encoder)
        if len(parts) == 4 and parts[3] == HLS_MASTER:
            return _down(encoder) if down else await self._playlist(encoder, raw, None)
        run = encoder.run_dir
        playlist = len(parts) == 5 and _MEDIA_PLAYLIST.fullmatch(parts[4]) is not None
        if (
            len(parts) != 5
            or run is None
            or not (playlist or parts[4].endswith(_SEGMENT_SUFFIXES))  # not the run's MPD
        ):
            return _text(404, "no such segment in the current run")
        if parts[3] != run.name:  # an earlier run's (or no run's): it never comes back
            request[OWN_CACHE_CONTROL] = True
            return _text(404, "not in the current run", {"Cache-Control": _GONE})
        if playlist:
            return _down(encoder) if down else await self._playlist(encoder, raw, parts[4])
        path = run / parts[4]
        state = segment_state(path)
        headers = {
            "Content-Type": "video/iso.segment",
            "Cache-Control": "public, max-age=31536000, immutable",
        }
        if state is SegmentState.COMPLETE:
            response = web.FileResponse(path, headers=headers)
            response.content_type = headers["Content-Type"]
            return response
        if down:  # nothing more comes from this run: say so, and when to ask again
            return _down(encoder)
        if state is SegmentState.ABSENT:
            return self._not_available(request, encoder, run, parts[4])
        return await self._growing(request, path, headers, encoder.spec.segment_seconds)

    def _not_available(
        self, request: web.Request, encoder: LiveEncoder, run: Path, name: str
    ) -> web.Response:
        """404 for a segment not there: cacheable until just before it can be there (a
        wave of early requests costs one origin request per tier), never longer; a
        segment already gone from the window stays gone (a minute)."""
        found = _MEDIA.fullmatch(name)
        start = encoder.availability_start()
        if found is None or start is None:
            return _text(404, "not available")
        seg, number = encoder.spec.segment_seconds, int(found.group(1))
        # LL: segment n (from 1) can be asked for once its first chunk exists, about
        # one chunk after it starts: start + (n - 1) * seg + chunk
        opens = start + (number - 1) * seg + encoder.spec.chunk_seconds
        wait = opens - time.time()
        if number < 1 or wait <= -(encoder.spec.window + 3) * seg:
            cache_control = _GONE  # before the first, or slid out of the window
        elif wait >= 1:
            cache_control = f"public, max-age={int(wait)}"
        else:
            cache_control = "no-store"
        request[OWN_CACHE_CONTROL] = True
        return _text(
            404,
            "not available yet" if wait > 0 else "not available",
            {"Cache-Control": cache_control},
        )

    async def _manifest(self, encoder: LiveEncoder) -> web.StreamResponse:
        run = encoder.run_dir
        mpd = None if run is None else run / MANIFEST_NAME
        loop = asyncio.get_running_loop()
        text = await loop.run_in_executor(None, _read_text, mpd)
        if text is None or run is None or "</MPD>" not in text:
            return _text(503, "channel starting", {"Retry-After": "1"})
        max_age = max(1, int(encoder.spec.segment_seconds / 2))
        return web.Response(
            text=_with_delay(_with_base_url(text, f"{run.name}/"), encoder.spec.latency),
            content_type="application/dash+xml",
            headers={"Cache-Control": f"public, max-age={max_age}"},
        )

    async def _playlist(
        self, encoder: LiveEncoder, raw: str, media: str | None
    ) -> web.StreamResponse:
        """The run's multivariant playlist (``media`` None) or one of its media
        playlists: fresh for half a segment, as the MPD; 503 until ffmpeg wrote it."""
        run = encoder.run_dir
        loop = asyncio.get_running_loop()
        name = HLS_MASTER if media is None else media
        text = await loop.run_in_executor(None, _read_text, None if run is None else run / name)
        if run is None:
            body = None
        elif media is None:
            body = live_master(text, run.name, raw)
            # only once every media playlist it names can be read whole: a player
            # that gets the master and then a 503 for its rendition gives up
            names = _MEDIA_PLAYLIST.findall(text or "")
            texts = await loop.run_in_executor(None, lambda: [_read_text(run / n) for n in names])
            if not names or any(live_media(t, "/m.m3u8") is None for t in texts):
                body = None
        else:
            body = live_media(text, raw)
        if body is None:
            return _text(503, "channel starting", {"Retry-After": "1"})
        max_age = max(1, int(encoder.spec.segment_seconds / 2))
        return web.Response(
            body=body.encode(),  # UTF-8 by definition (RFC 8216 §4.1): no charset
            headers={
                "Content-Type": "application/vnd.apple.mpegurl",
                "Cache-Control": f"public, max-age={max_age}",
            },
        )

    async def _growing(
        self, request: web.Request, path: Path, headers: dict[str, str], segment: float
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        tmp = path.with_name(path.name + ".tmp")
        try:
            fobj = await loop.run_in_executor(None, open, tmp, "rb")
        except FileNotFoundError:  # renamed meanwhile: complete now
            return web.FileResponse(path, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        try:
            inode = os.fstat(fobj.fileno()).st_ino
            await response.prepare(request)
            idle_since = loop.time()
            while True:
                data = await loop.run_in_executor(None, fobj.read, _READ)
                if data:
                    await response.write(data)
                    idle_since = loop.time()
                    continue
                if _renamed(path, inode):  # complete: what is left, then the end
                    while data := await loop.run_in_executor(None, fobj.read, _READ):
                        await response.write(data)
                    break
                if loop.time() - idle_since > 2 * segment or _gone(tmp, path):
                    log.warning("live %s stopped growing: connection aborted", path)
                    if request.transport is not None:
                        request.transport.abort()  # never a short body that looks whole
                    return response
                await asyncio.sleep(_POLL)
        finally:
            fobj.close()
        await response.write_eof()
        return response


_READ = 64 * 1024
_GONE = "public, max-age=60"  # a 404 for a segment that can never be there again
_SEGMENT_SUFFIXES = (".m4s", ".mp4")  # MEDIA_NAME, INIT_NAME: immutable once complete
_MEDIA = re.compile(r"chunk-\d+-(\d+)\.m4s")  # MEDIA_NAME: chunk-$RepresentationID$-$Number$
_MEDIA_PLAYLIST = re.compile(r"media_\d+\.m3u8")  # ffmpeg's HLS name of a representation
# a live answer that set its own Cache-Control, kept by the origin's error handling
OWN_CACHE_CONTROL = web.RequestKey("live_own_cache_control", bool)


_AST = re.compile(r'availabilityStartTime="([^"]+)"')
_POLL = 0.02  # seconds between looks at a growing segment


def _renamed(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except FileNotFoundError:
        return False


def _gone(*paths: Path) -> bool:
    return not any(p.exists() for p in paths)


def _read_text(path: Path | None) -> str | None:
    try:
        return None if path is None else path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return None


def _with_base_url(mpd: str, base: str) -> str:
    """``mpd`` with an MPD-level ``BaseURL`` (after ProgramInformation, as the schema
    orders it), so its relative segment URLs resolve into one run's folder."""
    element = f"<BaseURL>{base}</BaseURL>"
    end = mpd.find("</ProgramInformation>")
    if end >= 0:
        end += len("</ProgramInformation>")
    else:
        start = mpd.find("<MPD")
        end = mpd.find(">", start) + 1
    return f"{mpd[:end]}\n\t{element}{mpd[end:]}"


def _with_delay(mpd: str, latency: float) -> str:
    """``mpd`` with ``suggestedPresentationDelay`` at its latency target, unless it has
    one. Players that read the ServiceDescription (dash.js) aim at the same target;
    those that do not (ffmpeg's DASH client) would otherwise start at the segment the
    clock says is being encoded, computed in whole seconds: up to a segment early, a
    404, and ffmpeg gives up after 100 such in a row."""
    start = mpd.find("<MPD")
    if start < 0 or "suggestedPresentationDelay=" in mpd[start : mpd.find(">", start)]:
        return mpd
    at = start + len("<MPD")
    return f'{mpd[:at]} suggestedPresentationDelay="PT{latency:g}S"{mpd[at:]}'


def _down(encoder: LiveEncoder) -> web.Response:
    """503 while a channel's encoder is down, ``Retry-After`` its restart (no-store)."""
    wait = max(1, math.ceil(encoder.restart_at - time.monotonic()))
    return _text(503, "live encoder down: restarting", {"Retry-After": str(wait)})


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=f"{status}: {text}", headers=headers)


def utc_now_iso() -> str:
    """The time ``/time`` answers: ISO 8601 UTC with milliseconds (http-xsdate)."""
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
