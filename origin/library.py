"""The origin's library: a directory of DASH titles, one folder per title.

Invariants:

- ``resolve`` maps a request's raw (still percent-encoded) path to a regular
  file whose real path lies inside the library root, or raises ``BadPath``
  (a path no honest client sends: ``..``, encoded separators, NUL, control
  characters) or ``NotFound`` (missing, a directory, a hidden dot-file, or a
  symlink that leads out of the library). No byte from outside the library is
  ever named by it.
- Hidden entries (names starting with ``.``) are invisible: never served,
  never listed. The packager builds titles in hidden temp folders, so a title
  appears only once it is complete.
- Parsed manifests and sniffed init-segment types are cached by
  ``(path, mtime_ns)``; a rewritten file is parsed again. The caches are
  guarded by one lock because these methods run in executor threads.

No aiohttp here: ``app.py`` is the adapter that turns the exceptions into
``400`` / ``404``.
"""

from __future__ import annotations

import enum
import logging
import mimetypes
import os
import re
import struct
import threading
import xml.etree.ElementTree as ET
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import unquote

from cachetools import LRUCache

from origin.hls import HLS_MASTER

__all__ = [
    "BadPath",
    "Kind",
    "Library",
    "NotFound",
    "mp4_handler",
    "parse_iso_duration",
    "parse_manifest",
]

log = logging.getLogger(__name__)

MPD_NS = "{urn:mpeg:dash:schema:mpd:2011}"
SNIFF_BYTES = 64 * 1024
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_CONTAINERS = {b"moov", b"trak", b"mdia"}  # the boxes on the way to moov/trak/mdia/hdlr


class BadPath(ValueError):
    """The request path is malformed or tries to leave the library (→ 400)."""


class NotFound(LookupError):
    """No servable file at that path (→ 404)."""


class Kind(enum.Enum):
    """What a served file is; drives Cache-Control and metric labels."""

    MANIFEST = "manifest"
    INIT = "init"
    MEDIA = "media"
    OTHER = "other"


class Library:
    """Titles under ``root``: path resolution, listing and content types."""

    def __init__(self, root: Path, *, cache_entries: int = 4096) -> None:
        self.root = Path(root)
        self._real_root = self.root.resolve()
        self._lock = threading.Lock()
        # guarded by: self._lock (methods run in executor threads)
        self._types: LRUCache[tuple[Path, int], str] = LRUCache(cache_entries)
        self._manifests: LRUCache[tuple[Path, int], dict[str, Any]] = LRUCache(cache_entries)

    def __repr__(self) -> str:
        return (
            f"<Library root={str(self.root)!r} types_cached={len(self._types)} "
            f"manifests_cached={len(self._manifests)}>"
        )

    def resolve(self, raw_path: str) -> Path:
        """The real path of the file ``raw_path`` names, checked to lie inside the library."""
        segments = _decode_segments(raw_path)
        if any(s.startswith(".") for s in segments):
            raise NotFound("hidden path")
        try:
            real = self.root.joinpath(*segments).resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # missing, too long, symlink loop
            raise NotFound(str(exc)) from None
        if not real.is_relative_to(self._real_root):
            log.warning("refused %r: leads outside the library to %s", raw_path, real)
            raise NotFound("outside the library")
        if any(p.startswith(".") for p in real.relative_to(self._real_root).parts):
            raise NotFound("hidden path")
        if not real.is_file():
            raise NotFound("not a regular file")
        return real

    @staticmethod
    def kind(path: PurePath) -> Kind:
        """The kind of file, from its name (``.mpd``/``.m3u8``, ``.mp4`` init, ``.m4s`` media)."""
        suffix = path.suffix.lower()
        if suffix in (".mpd", ".m3u8"):
            return Kind.MANIFEST
        if suffix == ".mp4":
            return Kind.INIT
        if suffix == ".m4s":
            return Kind.MEDIA
        return Kind.OTHER

    def content_type(self, path: Path) -> str:
        """The media type of ``path``; init segments are sniffed for their track handler."""
        kind = self.kind(path)
        if kind is Kind.MANIFEST:
            if path.suffix.lower() == ".m3u8":
                return "application/vnd.apple.mpegurl"  # RFC 8216 §4
            return "application/dash+xml"
        if kind is Kind.MEDIA:
            return "video/iso.segment"
        if kind is Kind.INIT:
            key = (path, path.stat().st_mtime_ns)
            with self._lock:
                cached = self._types.get(key)
            if cached is None:
                with path.open("rb") as f:
                    head = f.read(SNIFF_BYTES)
                cached = "audio/mp4" if mp4_handler(head) == "soun" else "video/mp4"
                with self._lock:
                    self._types[key] = cached
            return cached
        return mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    def titles(self) -> list[dict[str, Any]]:
        """One entry per (non-hidden) folder that holds an ``.mpd``, sorted by name."""
        found: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return found
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            mpds = sorted(f for f in files if f.endswith(".mpd") and not f.startswith("."))
            if not mpds:
                continue
            name = "manifest.mpd" if "manifest.mpd" in mpds else mpds[0]
            mpd = Path(folder) / name
            try:
                info = self._manifest_info(mpd)
            except (OSError, ET.ParseError, ValueError) as exc:
                log.warning("skipping unreadable manifest %s: %s", mpd, exc)
                continue
            rel = mpd.relative_to(self.root).as_posix()
            entry = {"name": Path(rel).parent.as_posix(), "manifest": "/" + rel}
            if HLS_MASTER in files:  # the same segments as HLS (origin.hls)
                entry["hls"] = "/" + (Path(rel).parent / HLS_MASTER).as_posix()
            found.append({**entry, **info})
        return sorted(found, key=lambda t: str(t["name"]))

    def _manifest_info(self, mpd: Path) -> dict[str, Any]:
        key = (mpd, mpd.stat().st_mtime_ns)
        with self._lock:
            cached = self._manifests.get(key)
        if cached is None:
            cached = parse_manifest(mpd.read_bytes())
            with self._lock:
                self._manifests[key] = cached
        return cached


def _decode_segments(raw_path: str) -> list[str]:
    """Split and percent-decode a raw path, refusing anything that could escape."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        raise BadPath("not an origin-form path")
    if path.startswith("//"):
        raise BadPath("absolute path")
    if "\\" in path or _BAD_ESCAPE.search(path):
        raise BadPath("backslash or malformed escape")
    raw_segments = path[1:].split("/")
    if raw_segments[-1] == "":
        raise NotFound("a directory")  # "/title/" names a folder, never a file
    segments = []
    for raw in raw_segments:
        try:
            seg = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            raise BadPath("escape is not UTF-8") from None
        if seg in ("", ".", "..") or any(c in seg for c in "/\\") or not seg.isprintable():
            raise BadPath("dot segment, separator or control character")
        segments.append(seg)
    return segments


def mp4_handler(data: bytes) -> str | None:
    """The handler type (``vide``, ``soun``) of the first track in an MP4 header."""
    return _find_handler(data, 0, len(data))


def _find_handler(data: bytes, start: int, end: int) -> str | None:
    pos = start
    while pos + 8 <= end:
        size, box = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header:
            return None
        box_end = min(pos + size, end)
        if box == b"hdlr" and pos + header + 12 <= box_end:
            # full box: version+flags (4), pre_defined (4), handler_type (4)
            return bytes(data[pos + header + 8 : pos + header + 12]).decode("latin-1")
        if box in _CONTAINERS:
            found = _find_handler(data, pos + header, box_end)
            if found is not None:
                return found
        pos += size
    return None


def parse_manifest(xml: bytes) -> dict[str, Any]:
    """Duration and representations of one MPD (namespace ``urn:mpeg:dash:schema:mpd:2011``)."""
    root = ET.fromstring(xml)
    if root.tag != MPD_NS + "MPD":
        raise ValueError(f"not a DASH MPD (root element {root.tag})")
    duration = root.get("mediaPresentationDuration")
    reps: list[dict[str, Any]] = []
    for aset in root.iter(MPD_NS + "AdaptationSet"):
        for rep in aset.iter(MPD_NS + "Representation"):
            # Representation attributes inherit from the AdaptationSet (ISO 23009-1 §5.3.7)
            attrs = {**aset.attrib, **rep.attrib}
            reps.append(
                {
                    "id": rep.get("id"),
                    "mime_type": attrs.get("mimeType"),
                    "codecs": attrs.get("codecs"),
                    "bandwidth": _int_or_none(rep.get("bandwidth")),
                    "width": _int_or_none(attrs.get("width")),
                    "height": _int_or_none(attrs.get("height")),
                }
            )
    return {
        "duration": parse_iso_duration(duration) if duration else None,
        "representations": reps,
    }


def parse_iso_duration(text: str) -> float:
    """Seconds from an xs:duration such as ``PT1M0.0S`` or ``P0DT0H0M6.016S``."""
    match = _ISO_DURATION.match(text.strip())
    if match is None or text.strip() in ("P", "PT"):
        raise ValueError(f"not an ISO 8601 duration: {text!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
