"""Prefetch (an edge policy): segment n of a representation brings n+1 … n+k.

Segment templates come from the MPDs that passed through the node, and segment
lists from its HLS media playlists (``node.segments``; a playlist names only the
segments that exist, so a live one is never prefetched past its edge). Prefetches
run at low priority: within their own concurrency (``--prefetch-concurrency``) and
never while the node is busy enough to shed its most expensive misses. Each one is
``node.warm``: it joins the fill a client would, so a client asking meanwhile
coalesces with it.

Live (a dynamic MPD): a segment is never asked for before its availability time
(the MPD's availabilityStartTime, the segment's end, availabilityTimeOffset, by the
node's clock). One not available yet is deferred to that moment, once per path
(every viewer's request names the same next segments), at most ``MAX_DEFERRED`` at
once and at most ``MAX_WAIT`` seconds ahead; it then starts only if nobody has
fetched it meanwhile and the node is still calm.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from shared.engine.node import Node
from shared.engine.outcome import Outcome
from shared.policy.shedding import Priority

__all__ = ["MAX_DEFERRED", "MAX_WAIT", "Prefetcher"]

MAX_DEFERRED = 256  # live segments waiting for their availability time, at most
MAX_WAIT = 30.0  # seconds: a segment available later than this is not deferred


class Prefetcher:
    """Plugs into ``Node.on_request``; counts ``tiercdn_prefetches_total`` by result."""

    def __init__(self, node: Node, *, depth: int, concurrency: int) -> None:
        self.node = node
        self.depth = depth  # segments fetched ahead
        self.concurrency = concurrency
        self.in_flight = 0  # guarded by: single event loop
        self.deferred: set[str] = set()  # live paths waiting for their availability time
        results = ("done", "failed", "skipped", "deferred")
        self._counts = {r: node.metrics.prefetches.labels(r) for r in results}

    def __call__(self, key: str, request: web.Request) -> None:
        """After a GET for a segment, start fetching the next ones not cached yet."""
        node = self.node
        if not len(node.segments) or request.method != "GET":
            return  # (a manifest or any other path: no next segments, remembered)
        now = None
        for path, available_at in node.segments.upcoming(key, self.depth):
            if path in self.deferred or node.joinable(path) or node.store.peek(path):
                continue
            if available_at is not None:  # live: never before its availability time
                now = node.clock() if now is None else now
                if available_at > now:
                    self._defer(path, available_at - now)
                    continue
            if not self._start(path):
                return

    def _start(self, path: str) -> bool:
        """Start prefetching ``path`` if there is room and the node is calm."""
        node = self.node
        room = self.in_flight < self.concurrency
        calm = node.fetches_in_flight < node.shedder.limits(Priority.MEDIA_TOP)[1]
        if not (room and calm):
            self._counts["skipped"].inc()
            return False
        self.in_flight += 1
        node.tasks.spawn(self._prefetch(path), name=f"prefetch {path!r}")
        return True

    def _defer(self, path: str, delay: float) -> None:
        if delay > MAX_WAIT or len(self.deferred) >= MAX_DEFERRED:
            self._counts["skipped"].inc()
            return
        self.deferred.add(path)
        self._counts["deferred"].inc()
        self.node.tasks.spawn(self._later(path, delay), name=f"prefetch at availability {path!r}")

    async def _later(self, path: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
        finally:
            self.deferred.discard(path)
        node = self.node
        if not (node.joinable(path) or node.store.peek(path)):
            self._start(path)

    async def _prefetch(self, path: str) -> None:
        try:
            outcome = await self.node.warm(path)
        finally:
            self.in_flight -= 1
        self._counts["failed" if outcome is Outcome.ERROR else "done"].inc()

    def __repr__(self) -> str:
        return (
            f"<Prefetcher depth={self.depth} in_flight={self.in_flight}/{self.concurrency}"
            f" deferred={len(self.deferred)}>"
        )
