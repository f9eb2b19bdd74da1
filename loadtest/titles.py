"""Sample titles for the load tests: made by the origin's packager, or of random bytes.

``make_title`` runs ``python -m origin sample`` (``tiercdn-origin sample``:
ffmpeg, a real DASH ladder) into one title folder, bounded by a timeout;
``make_titles`` copies the first title to ``title-1`` .. so that the caches
see distinct URLs, which is all a catalogue needs. ``find_titles`` lists the
MPD of each title folder of a library, as the origin serves them;
``find_catalogue`` each folder's ``Title``: its MPD and, when the packager wrote
one beside it, its HLS multivariant playlist (``master.m3u8``: the same segments);
``listed_titles`` the same from the origin's ``GET /`` listing, and
``grouped_titles`` from manifest paths given by hand (one title per folder).

``random_title`` writes media segments of seeded random bytes and no MPD:
enough for a test of single requests (hit path, miss storm), and the same
bytes for the same seed, so every response can be checked against them.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from origin.hls import HLS_MASTER

__all__ = [
    "Title",
    "find_catalogue",
    "find_titles",
    "grouped_titles",
    "listed_titles",
    "make_title",
    "make_titles",
    "random_title",
]


class Title(NamedTuple):
    """One title as each protocol names it: URL paths of its MPD and of its HLS
    multivariant playlist (None: not in that protocol)."""

    dash: str | None
    hls: str | None


def make_title(out: Path, seconds: float, timeout: float) -> float:
    """``python -m origin sample`` of ``seconds`` into the folder ``out``; the seconds it
    took. ``RuntimeError`` with the packager's last words if it failed."""
    began = time.perf_counter()
    cmd = [sys.executable, "-m", "origin", "sample", "--out", str(out)]
    cmd += ["--duration", str(seconds)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise RuntimeError(f"origin sample failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - began


def make_titles(library: Path, titles: int, seconds: float, timeout: float) -> float:
    """``make_title`` into ``library/title-0``, copied to ``title-1`` .. up to ``titles``
    titles. The seconds it took."""
    began = time.perf_counter()
    first = library / "title-0"
    make_title(first, seconds, timeout)
    for i in range(1, titles):
        shutil.copytree(first, library / f"title-{i}")
    return time.perf_counter() - began


def random_title(root: Path, title: str, sizes: Mapping[str, int], seed: int) -> dict[str, bytes]:
    """The folder ``root/title`` with a file of ``size`` random bytes per ``name: size`` of
    ``sizes``, drawn in that order from ``seed``; returns ``/title/name`` -> its bytes."""
    rng = random.Random(seed)
    folder = root / title
    folder.mkdir(parents=True)
    bodies = {}
    for name, size in sizes.items():
        body = rng.randbytes(size)
        (folder / name).write_bytes(body)
        bodies[f"/{title}/{name}"] = body
    return bodies


def find_titles(library: Path) -> list[str]:
    """``/<title>/<name>.mpd`` of every title folder in ``library``, sorted by name (the
    first MPD of each; hidden folders skipped); none if there is no such folder."""
    if not library.is_dir():
        return []
    found = []
    for folder in sorted(p for p in library.iterdir() if p.is_dir() and not p.name.startswith(".")):
        mpds = sorted(folder.glob("*.mpd"))
        if mpds:
            found.append(f"/{folder.name}/{mpds[0].name}")
    return found


def find_catalogue(library: Path) -> list[Title]:
    """Each title folder of ``library`` (``find_titles``) with its ``master.m3u8`` if any."""
    titles = []
    for mpd in find_titles(library):
        folder = mpd.rsplit("/", 1)[0]
        hls = f"{folder}/{HLS_MASTER}"
        titles.append(Title(mpd, hls if (library / hls.lstrip("/")).is_file() else None))
    return titles


def listed_titles(entries: Iterable[Mapping[str, Any]]) -> list[Title]:
    """The titles of an origin's ``GET /`` listing (``manifest``, and ``hls`` if any)."""
    return [Title(e["manifest"], e.get("hls")) for e in entries if e.get("manifest")]


def grouped_titles(paths: Iterable[str]) -> list[Title]:
    """Manifest URL paths as titles, one per folder in order of first mention: an
    ``.m3u8`` is the folder's HLS playlist, anything else its MPD (the first of each)."""
    found: dict[str, Title] = {}
    for path in paths:
        folder = path.rsplit("/", 1)[0]
        title = found.get(folder, Title(None, None))
        if path.endswith(".m3u8"):
            found[folder] = title if title.hls else title._replace(hls=path)
        else:
            found[folder] = title if title.dash else title._replace(dash=path)
    return list(found.values())
