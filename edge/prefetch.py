"""Prefetch (an edge policy): segment n of a representation brings n+1 … n+k.

Segment templates come from the MPDs that passed through the node
(``node.segments``). Prefetches run at low priority: within their own
concurrency (``--prefetch-concurrency``) and never while the node is busy
enough to shed its most expensive misses. Each one is ``node.warm``: it joins
the fill a client would, so a client asking meanwhile coalesces with it.
"""

from __future__ import annotations

from aiohttp import web

from shared.engine.node import Node
from shared.engine.outcome import Outcome
from shared.policy.shedding import Priority

__all__ = ["Prefetcher"]


class Prefetcher:
    """Plugs into ``Node.on_request``; counts ``tiercdn_prefetches_total`` by result."""

    def __init__(self, node: Node, *, depth: int, concurrency: int) -> None:
        self.node = node
        self.depth = depth  # segments fetched ahead
        self.concurrency = concurrency
        self.in_flight = 0  # guarded by: single event loop
        self._counts = {r: node.metrics.prefetches.labels(r) for r in ("done", "failed", "skipped")}

    def __call__(self, key: str, request: web.Request) -> None:
        """After a GET for a segment, start fetching the next ones not cached yet."""
        node = self.node
        if not len(node.segments) or request.method != "GET":
            return  # (a manifest or any other path: no next segments, remembered)
        for path in node.segments.next_segments(key, self.depth):
            if node.joinable(path) or node.store.peek(path):
                continue
            room = self.in_flight < self.concurrency
            calm = node.fetches_in_flight < node.shedder.limits(Priority.MEDIA_TOP)[1]
            if not (room and calm):
                self._counts["skipped"].inc()
                return
            self.in_flight += 1
            node.tasks.spawn(self._prefetch(path), name=f"prefetch {path!r}")

    async def _prefetch(self, path: str) -> None:
        try:
            outcome = await self.node.warm(path)
        finally:
            self.in_flight -= 1
        self._counts["failed" if outcome is Outcome.ERROR else "done"].inc()

    def __repr__(self) -> str:
        return f"<Prefetcher depth={self.depth} in_flight={self.in_flight}/{self.concurrency}>"
