"""HLS next to DASH over the same CMAF segments: the playlists of a packaged title
and of a live channel.

ffmpeg's dash muxer writes, with ``-hls_playlist 1``, a multivariant playlist
(``master.m3u8``) and one media playlist per representation (``media_<id>.m3u8``)
over the very segment files the MPD names, with exact ``EXTINF`` durations.
``finish_vod`` rewrites them into what players and validators expect of a VOD
title: version 7, ``EXT-X-INDEPENDENT-SEGMENTS``, ``EXT-X-PLAYLIST-TYPE:VOD``, no
wall-clock dates, and per variant ``BANDWIDTH`` (the peak segment bitrate, video
plus its audio) and ``AVERAGE-BANDWIDTH`` measured from the segment files,
``FRAME-RATE`` from the MPD. A segment is one file, hence one cache object,
whichever protocol names it.

A live channel's encoder writes the same two kinds of playlist (``-hls_playlist 1``
with ``-streaming 1``): a sliding window of complete segments with
``EXT-X-PROGRAM-DATE-TIME``, rewritten in place each segment. ``live_master`` and
``live_media`` turn what is on disk into what the origin serves (version 7, the
run's folder in the URIs, RFC 3339 dates), or ``None`` while a file is not whole.
"""

from __future__ import annotations

import dataclasses
import math
import re
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

from shared.hls import (
    MediaPlaylist,
    Multivariant,
    parse_playlist,
    render_media,
    render_multivariant,
)

__all__ = ["HLS_MASTER", "live_master", "live_media", "finish_vod"]

HLS_MASTER = "master.m3u8"  # ffmpeg's hls_master_name default
_MEDIA_PREFIX = "media_"  # ffmpeg names a representation's playlist media_<id>.m3u8


@dataclasses.dataclass(frozen=True, slots=True)
class _Rates:
    peak: int  # bits per second of the busiest segment
    average: int  # bits per second over the playlist


def finish_vod(title: Path, mpd: Path) -> None:
    """Rewrite the playlists ffmpeg wrote in ``title`` (beside ``mpd``) for VOD.
    ``ValueError`` if a playlist is missing or unreadable (a packaging bug)."""
    master_path = title / HLS_MASTER
    master = parse_playlist(master_path.read_bytes(), "/" + HLS_MASTER)
    if not isinstance(master, Multivariant):
        raise ValueError(f"{master_path} is not a multivariant playlist")
    frame_rates = _frame_rates(mpd)
    rates: dict[str, _Rates] = {}
    for file in sorted(title.glob(f"{_MEDIA_PREFIX}*.m3u8")):
        media = parse_playlist(file.read_bytes(), "/" + file.name)
        if not isinstance(media, MediaPlaylist):
            raise ValueError(f"{file} is not a media playlist")
        rates[media.path] = _measure(title, media)
        target = max([1, *(round(s.duration) for s in media.segments)])
        segments = tuple(dataclasses.replace(s, program_date_time=None) for s in media.segments)
        vod = dataclasses.replace(
            media,
            target_duration=max(target, media.target_duration),
            segments=segments,
            endlist=True,
            playlist_type="VOD",
            independent_segments=True,
        )
        file.write_text(render_media(vod))
    audio = {r.group_id: rates[r.uri] for r in master.renditions if r.uri in rates}
    variants = []
    for v in master.variants:
        own = rates.get(v.uri)
        if own is None:
            raise ValueError(f"{master_path} names {v.uri}, which ffmpeg did not write")
        extra = audio.get(v.audio or "", _Rates(0, 0))
        rid = v.uri.removeprefix("/" + _MEDIA_PREFIX).removesuffix(".m3u8")
        variants.append(
            dataclasses.replace(
                v,
                bandwidth=own.peak + extra.peak,
                average_bandwidth=own.average + extra.average,
                frame_rate=frame_rates.get(rid, v.frame_rate),
            )
        )
    master = dataclasses.replace(master, variants=tuple(variants), independent_segments=True)
    master_path.write_text(render_multivariant(master))


def _measure(title: Path, media: MediaPlaylist) -> _Rates:
    """Peak and average bitrate of a media playlist's segments, from their files."""
    peak, total_bytes, total_seconds = 0.0, 0, 0.0
    for s in media.segments:
        size = (title / s.uri.lstrip("/")).stat().st_size
        total_bytes += size
        total_seconds += s.duration
        if s.duration >= 0.5:  # a sliver at the end is no peak (audio's last 5 ms)
            peak = max(peak, size * 8 / s.duration)
    average = total_bytes * 8 / total_seconds if total_seconds else 0.0
    return _Rates(math.ceil(max(peak, average)), math.ceil(average))


def _frame_rates(mpd: Path) -> dict[str, float]:
    """Representation id -> frames per second, from the MPD's ``frameRate``."""
    found: dict[str, float] = {}
    root = ET.fromstring(mpd.read_bytes())
    for aset in root.iter():
        if not aset.tag.endswith("AdaptationSet"):
            continue
        for rep in aset:
            if rep.tag.endswith("Representation"):
                text = rep.get("frameRate") or aset.get("frameRate")
                try:
                    found[rep.get("id", "")] = float(Fraction(text)) if text else 0.0
                except (ValueError, ZeroDivisionError):
                    continue
    return {k: v for k, v in found.items() if v > 0}


_ZONE = re.compile(r"([+-]\d\d)(\d\d)$")  # ffmpeg's +0000; RFC 8216 wants RFC 3339's +00:00


def live_master(text: str | None, run: str, path: str) -> str | None:
    """A live run's multivariant playlist served at ``path`` (``/live/NAME/master.m3u8``)
    with its media playlists in the run's folder ``run``; ``None`` if not whole."""
    folder = path[: path.rfind("/") + 1]
    try:
        master = parse_playlist(text or "", f"{folder}{run}/{HLS_MASTER}")
    except ValueError:
        return None
    if not isinstance(master, Multivariant) or not master.variants:
        return None
    return render_multivariant(dataclasses.replace(master, path=path, independent_segments=True))


def live_media(text: str | None, path: str) -> str | None:
    """A live media playlist served at ``path`` (in its run's folder); ``None`` if not
    whole (no segment yet, or read while ffmpeg rewrote it)."""
    try:
        media = parse_playlist(text or "", path)
    except ValueError:
        return None
    if not isinstance(media, MediaPlaylist) or not media.segments or not media.target_duration:
        return None
    segments = tuple(
        dataclasses.replace(s, program_date_time=_ZONE.sub(r"\1:\2", s.program_date_time))
        if s.program_date_time
        else s
        for s in media.segments
    )
    return render_media(dataclasses.replace(media, segments=segments, independent_segments=True))
