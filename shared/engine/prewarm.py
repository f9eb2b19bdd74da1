"""Pre-warm: fill one cache node with a title before the crowd arrives.

``prewarm`` warms the manifest at the node, parses the stored copy, then warms
every path it names, each exactly as a client GET would (the node's
single-flight fill table, its own upstream: an edge pre-warm goes through its
regional). An MPD names its segments through ``dash.segment_paths``; an HLS
multivariant playlist names media playlists (``hls.media_playlists``), warmed
first, whose stored copies name their inits and segments (``hls.segment_paths``);
a media playlist names its own.

Invariants:

- Bounded: at most ``concurrency`` warms in flight (a fixed pool of workers
  over one iterator), and at most ``segment_paths``'s limit of paths.
- A path already fresh here is ``skipped`` (``warm`` returned HIT), not fetched.
- A failed path never stops the others; the report counts it and names the
  first few.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared import hls
from shared.dash import parse_mpd, segment_paths
from shared.engine.outcome import Outcome

if TYPE_CHECKING:
    from shared.engine.node import Node

__all__ = ["MAX_CONCURRENCY", "PrewarmReport", "prewarm", "prewarm_top"]

MAX_CONCURRENCY = 64
_NAMED_FAILURES = 10

Progress = Callable[[int, int], None]


@dataclasses.dataclass(frozen=True, slots=True)
class PrewarmReport:
    """What one pre-warm of one title did at one node."""

    node: str
    manifest: str
    total: int  # paths asked for, the MPD included
    fetched: int  # warmed from upstream (or joined a fill already in flight)
    skipped: int  # already fresh here
    failed: int
    seconds: float  # wall time
    failures: tuple[str, ...] = ()  # the first few paths that failed
    error: str | None = None  # why the title itself could not be warmed

    def to_json(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["failures"] = list(self.failures)
        return out


async def prewarm(
    node: Node,
    manifest_path: str,
    *,
    lowest: int | None = None,
    seconds: float | None = None,
    concurrency: int = 8,
    progress: Progress | None = None,
) -> PrewarmReport:
    """Warm ``manifest_path`` and the segments ``segment_paths`` names for it at ``node``.

    ``ValueError`` on bad arguments; a manifest that cannot be fetched or parsed
    gives a report with ``error`` set."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be 1..{MAX_CONCURRENCY}, got {concurrency}")
    if not manifest_path.startswith("/"):
        raise ValueError(f"manifest must be a path starting with '/': {manifest_path!r}")
    started = time.monotonic()
    tally = _Tally()

    def report(total: int, error: str | None = None) -> PrewarmReport:
        return PrewarmReport(
            node=node.name,
            manifest=manifest_path,
            total=total,
            fetched=tally.fetched,
            skipped=tally.skipped,
            failed=tally.failed,
            seconds=round(time.monotonic() - started, 3),
            failures=tuple(tally.failures),
            error=error,
        )

    tally.count(manifest_path, await node.warm(manifest_path))
    if tally.failed:
        return report(1, "manifest could not be fetched")
    body = await _stored_body(node, manifest_path)
    if body is None:
        return report(1, "manifest was fetched but not stored (uncacheable or too large)")
    total = 1
    try:
        if not hls.is_playlist(body):
            presentation = parse_mpd(body, manifest_path)
            paths = segment_paths(presentation, lowest=lowest, seconds=seconds)
        else:
            playlist = hls.parse_playlist(body, manifest_path)
            medias = [playlist] if isinstance(playlist, hls.MediaPlaylist) else []
            if isinstance(playlist, hls.Multivariant):
                named = hls.media_playlists(playlist, lowest=lowest)
                total += len(named)
                await _warm_all(node, named, tally, concurrency, progress, total)
                medias = await _media_playlists(node, named)
            paths = hls.segment_paths(medias, seconds=seconds)
    except ValueError as exc:
        return report(total, f"manifest: {exc}")
    total += len(paths)
    await _warm_all(node, paths, tally, concurrency, progress, total)
    return report(total)


async def _warm_all(
    node: Node,
    paths: list[str],
    tally: _Tally,
    concurrency: int,
    progress: Progress | None,
    total: int,
) -> None:
    """Warm ``paths`` with at most ``concurrency`` in flight; a failure stops none."""
    if progress is not None:
        progress(tally.done, total)
    todo = iter(paths)

    async def worker() -> None:
        for path in todo:  # one shared iterator: each path goes to exactly one worker
            tally.count(path, await node.warm(path))
            if progress is not None:
                progress(tally.done, total)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, len(paths))):
            group.create_task(worker())


async def _media_playlists(node: Node, paths: list[str]) -> list[hls.MediaPlaylist]:
    """The media playlists stored at ``paths`` (one not stored or unreadable: skipped;
    its warm already counted it)."""
    found = []
    for path in paths:
        body = await _stored_body(node, path)
        try:
            playlist = None if body is None else hls.parse_playlist(body, path)
        except ValueError:
            continue
        if isinstance(playlist, hls.MediaPlaylist):
            found.append(playlist)
    return found


async def prewarm_top(
    node: Node,
    n: int,
    *,
    lowest: int | None = None,
    seconds: float | None = None,
    concurrency: int = 8,
) -> list[PrewarmReport]:
    """Pre-warm the ``n`` titles most requested from ``node``, one after another."""
    return [
        await prewarm(node, path, lowest=lowest, seconds=seconds, concurrency=concurrency)
        for path, _ in node.top_titles(n)
    ]


@dataclasses.dataclass
class _Tally:
    # guarded by: single event loop (workers update it between awaits)
    fetched: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def done(self) -> int:
        return self.fetched + self.skipped + self.failed

    def count(self, path: str, outcome: Outcome) -> None:
        if outcome is Outcome.HIT:
            self.skipped += 1
        elif outcome is Outcome.ERROR:
            self.failed += 1
            if len(self.failures) < _NAMED_FAILURES:
                self.failures.append(path)
        else:
            self.fetched += 1


async def _stored_body(node: Node, path: str) -> bytes | None:
    """The body of the identity-encoded 200 stored for ``path``, if any."""
    for obj in node.store.peek(path):
        if obj.status == 200 and "Content-Encoding" not in obj.headers:
            return await node.store.read_body(obj)
    return None
