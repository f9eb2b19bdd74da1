"""Package video into an MPEG-DASH title with ffmpeg (from ``imageio_ffmpeg``).

A title folder holds one ``manifest.mpd`` (static, SegmentTemplate with
``$Number$``), one ``init-<rep>.mp4`` per representation and fragmented-MP4
media segments ``chunk-<rep>-<nnnnn>.m4s``. Representation ids are ffmpeg's
stream indexes: video rungs ``0..n-1`` from lowest to highest, audio ``n``. Beside
the MPD, HLS over the very same files: ``master.m3u8`` (multivariant: a variant per
video rung with the audio group) and ``media_<rep>.m3u8`` per representation
(``origin.hls``), so a segment is one cache object whichever protocol asks.

Invariants:

- Keyframes sit on every segment boundary (forced, no scene-cut keyframes),
  so every rung has the same segment timeline and players can switch.
- A title appears whole or not at all: ffmpeg writes into a hidden temp
  folder beside ``out_dir``, renamed into place on success, removed on
  failure. An existing ``out_dir`` is replaced only if it is a title folder.
- Every failure is a ``PackagingError`` with a one-line message (ffmpeg's
  first and last error lines included), never a raw traceback for the CLI.

AAC frames (1024 samples) do not divide 2 s, so the audio representation
may end with one extra, very short segment past the MPD duration; players
never ask for it.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

from origin.hls import finish_vod
from shared.service.units import parse_size

__all__ = [
    "AUDIO_BITRATE",
    "DEFAULT_LADDER",
    "MANIFEST_NAME",
    "PackagingError",
    "Probe",
    "Rendition",
    "make_sample",
    "package",
    "parse_ladder",
    "probe",
]

log = logging.getLogger(__name__)

Progress = Callable[[float], None]

MANIFEST_NAME = "manifest.mpd"
INIT_NAME = "init-$RepresentationID$.mp4"
MEDIA_NAME = "chunk-$RepresentationID$-$Number%05d$.m4s"
AUDIO_BITRATE = 128_000
SAMPLE_FPS = 30
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (?!.*attached pic).*?\b(\d{2,5})x(\d{2,5})\b")
_AUDIO = re.compile(r"Stream #\d+:\d+.*?: Audio: ")


class PackagingError(Exception):
    """Packaging failed; the message is one line, fit for ``error: <message>``."""


@dataclasses.dataclass(frozen=True)
class Rendition:
    """One H.264 rung: output height (width follows the source aspect) and bitrate."""

    height: int
    bitrate: int  # bits per second

    @property
    def name(self) -> str:
        return f"{self.height}p"


DEFAULT_LADDER: tuple[Rendition, ...] = (
    Rendition(240, 400_000),
    Rendition(360, 800_000),
    Rendition(480, 1_400_000),
    Rendition(720, 2_800_000),
)


@dataclasses.dataclass(frozen=True)
class Probe:
    """What ffmpeg says about an input file."""

    duration: float | None
    width: int
    height: int
    has_audio: bool


def parse_ladder(text: str) -> tuple[Rendition, ...]:
    """``"180:200k,360:800k"`` → renditions (height:bitrate, human units for bitrate)."""
    rungs = []
    for part in text.replace(" ", "").split(","):
        height, sep, rate = part.partition(":")
        if not sep or not height.isdigit():
            raise ValueError(f"not HEIGHT:BITRATE: {part!r} (try 360:800k)")
        rungs.append(Rendition(int(height), parse_size(rate)))
    try:
        return _checked(rungs)
    except PackagingError as exc:
        raise ValueError(str(exc)) from None


def make_sample(
    out_dir: Path,
    *,
    duration: float = 60,
    renditions: Sequence[Rendition] = DEFAULT_LADDER,
    segment_seconds: float = 2,
    progress: Progress | None = None,
) -> Path:
    """Make a synthetic title (testsrc2 video, sine AAC audio) in ``out_dir``; the MPD path."""
    if not duration > 0 or not segment_seconds > 0:
        raise PackagingError(f"duration and segment length must be positive, got {duration}")
    ladder = _checked(renditions)
    top = max(r.height for r in ladder)
    gop = round(SAMPLE_FPS * segment_seconds)
    video = f"testsrc2=size={_even(top * 16 / 9)}x{top}:rate={SAMPLE_FPS}:duration={duration}"
    audio = f"sine=frequency=440:beep_factor=4:sample_rate=48000:duration={duration}"
    inputs = ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio]
    args = [
        *inputs,
        *_video_args("0:v:0", ladder, segment_seconds, preset="ultrafast"),
        *("-g", str(gop), "-keyint_min", str(gop)),
        *_audio_args("1:a:0"),
        *_dash_args(segment_seconds, audio=True),
    ]
    return _publish(Path(out_dir), _build(args, duration, progress))


def package(
    input: Path,
    out_dir: Path,
    *,
    renditions: Sequence[Rendition] = DEFAULT_LADDER,
    segment_seconds: float = 2,
    progress: Progress | None = None,
) -> Path:
    """Package the user's video ``input`` into the title folder ``out_dir``; the MPD path.

    Rungs taller than the source are dropped (the lowest is always kept); a
    source without audio gives a video-only title.
    """
    input = Path(input).absolute()  # a name starting with "-" must not read as an option
    if not segment_seconds > 0:
        raise PackagingError(f"segment length must be positive, got {segment_seconds}")
    info = probe(input)
    ladder = _checked(renditions)
    kept = [r for r in ladder if r.height <= info.height] or [min(ladder, key=lambda r: r.height)]
    args = [
        *("-i", str(input)),
        *_video_args("0:v:0", kept, segment_seconds),
        *(_audio_args("0:a:0") if info.has_audio else []),
        *_dash_args(segment_seconds, audio=info.has_audio),
    ]
    return _publish(Path(out_dir), _build(args, info.duration, progress))


def probe(input: Path) -> Probe:
    """Duration, size and audio presence of ``input``, or ``PackagingError``."""
    if not input.is_file():
        raise PackagingError(f"input not found: {input}")
    proc = subprocess.run(
        [_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(input)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    text = proc.stderr
    if "Input #0" not in text:
        raise PackagingError(f"cannot read {input}: {_last_line(text.splitlines())}")
    video = _VIDEO.search(text)
    if video is None:
        raise PackagingError(f"no video stream in {input}")
    duration = _DURATION.search(text)
    seconds = None
    if duration is not None:
        h, m, s = duration.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
    return Probe(seconds, int(video.group(1)), int(video.group(2)), bool(_AUDIO.search(text)))


def _video_args(
    source: str, ladder: Sequence[Rendition], segment_seconds: float, preset: str = "veryfast"
) -> list[str]:
    """x264 for every rung. The synthetic sample takes ``ultrafast`` (half the time of
    ``veryfast`` at the same capped bitrates: a test pattern loses nothing to see)."""
    ladder = sorted(ladder, key=lambda r: r.height)
    labels = [f"[s{i}]" for i in range(len(ladder))]
    graph = [f"[{source}]split={len(ladder)}{''.join(labels)}"]
    args: list[str] = []
    for i, rung in enumerate(ladder):
        graph.append(f"[s{i}]scale=-2:{rung.height},format=yuv420p[v{i}]")
        args += ["-map", f"[v{i}]", f"-b:v:{i}", str(rung.bitrate)]
        args += [f"-maxrate:v:{i}", str(rung.bitrate * 11 // 10), f"-bufsize:v:{i}"]
        args += [str(rung.bitrate * 2)]
    return [
        *("-filter_complex", ";".join(graph)),
        *args,
        *("-c:v", "libx264", "-preset", preset, "-sc_threshold", "0"),
        *("-force_key_frames", f"expr:gte(t,n_forced*{segment_seconds})"),
    ]


def _audio_args(source: str) -> list[str]:
    return ["-map", source, "-c:a", "aac", "-b:a", str(AUDIO_BITRATE), "-ac", "2"]


def _dash_args(segment_seconds: float, *, audio: bool) -> list[str]:
    sets = "id=0,streams=v id=1,streams=a" if audio else "id=0,streams=v"
    return [
        *("-f", "dash", "-seg_duration", str(segment_seconds)),
        *("-use_template", "1", "-use_timeline", "0"),
        *("-init_seg_name", INIT_NAME, "-media_seg_name", MEDIA_NAME),
        *("-adaptation_sets", sets),
        *("-hls_playlist", "1"),  # master.m3u8 + media_<id>.m3u8 over the same segments
    ]


def _build(
    args: list[str], duration: float | None, progress: Progress | None
) -> Callable[[Path], None]:
    """The title's build in ``tmp``: ffmpeg's MPD and playlists, the playlists finished
    for VOD (``origin.hls.finish_vod``)."""

    def build(tmp: Path) -> None:
        _ffmpeg(args, tmp, duration, progress)
        try:
            finish_vod(tmp, tmp / MANIFEST_NAME)
        except (OSError, ValueError) as exc:
            raise PackagingError(f"cannot finish the HLS playlists: {exc}") from None

    return build


def _ffmpeg(
    args: list[str], out_dir: Path, duration: float | None, progress: Progress | None
) -> None:
    """Run ffmpeg writing ``out_dir/manifest.mpd``, reporting the fraction done."""
    cmd = [
        *(_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"),
        *args,
        *("-progress", "pipe:1", "-nostats"),
        str(out_dir / MANIFEST_NAME),
    ]
    log.debug("running %s", subprocess.list2cmdline(cmd))
    stderr_tail: collections.deque[str] = collections.deque(maxlen=50)
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        drain = threading.Thread(
            target=stderr_tail.extend, args=(_lines(proc.stderr),), daemon=True
        )
        drain.start()
        try:
            for key, _, value in (line.strip().partition("=") for line in proc.stdout):
                if key == "out_time_us" and value.isdigit() and duration and progress:
                    progress(min(1.0, int(value) / 1e6 / duration))
            returncode = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted (Ctrl-C, or the callback raised)
                proc.kill()
                proc.wait()
            drain.join(timeout=5)
    if returncode != 0:
        raise PackagingError(f"ffmpeg failed (exit {returncode}): {_summary(stderr_tail)}")
    if not (out_dir / MANIFEST_NAME).is_file():
        raise PackagingError("ffmpeg wrote no manifest")
    if progress:
        progress(1.0)


def _publish(out_dir: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp)`` in a hidden temp folder beside ``out_dir``, then rename it into place."""
    out_dir = out_dir.absolute()
    replaceable = (out_dir / MANIFEST_NAME).is_file() or (
        out_dir.is_dir() and not any(out_dir.iterdir())
    )
    if out_dir.exists() and not replaceable:
        raise PackagingError(f"{out_dir} exists and is not a title folder; not replacing it")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
        )
        tmp.chmod(0o755)  # mkdtemp makes 0700; the origin may run as another user
    except OSError as exc:
        raise PackagingError(f"cannot write to {out_dir.parent}: {exc.strerror or exc}") from None
    try:
        build(tmp)
        if out_dir.exists():
            old = tmp.with_name(tmp.name + ".old")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PackagingError(f"cannot write {out_dir}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("packaged %s", out_dir)
    return out_dir / MANIFEST_NAME


def _ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        raise PackagingError(f"ffmpeg not available: {exc}") from None


def _checked(renditions: Sequence[Rendition]) -> tuple[Rendition, ...]:
    if not renditions:
        raise PackagingError("the ladder needs at least one rendition")
    for r in renditions:
        if r.height < 16 or r.height % 2 or r.bitrate <= 0:
            raise PackagingError(f"bad rendition {r.height}:{r.bitrate} (even height >= 16)")
    return tuple(renditions)


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def _lines(stream: IO[str]) -> Iterator[str]:
    for line in stream:
        if line.strip():
            yield line.strip()


def _summary(lines: Iterable[str]) -> str:
    """ffmpeg's first error line (usually the cause) and its last (the outcome)."""
    lines = [line.strip() for line in lines if line.strip()]
    if len(lines) > 1 and lines[0] != lines[-1]:
        return f"{lines[0]} ... {lines[-1]}"
    return lines[-1] if lines else "no error message"


def _last_line(lines: Iterable[str]) -> str:
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1] if lines else "no error message"
