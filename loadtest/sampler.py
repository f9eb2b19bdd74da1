"""A thread that samples a probe (a tier's ``/metrics``) every ``interval`` seconds.

The load runs on the event loop; the probe (a blocking scrape) runs beside
it on its own thread, so a slow tier never stalls the viewers. Bounded: one
sample as the ``with`` block opens, one per interval, one as it closes; the
thread is joined (with a timeout) before the last one, and ``samples`` is
read only after that.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Sampler"]

T = TypeVar("T")


class Sampler(Generic[T]):
    """``samples``: ``(time.perf_counter(), probe())`` as the block opens, every
    ``interval`` seconds, and as it closes. A probe that raises ``OSError`` or
    ``ValueError`` (a tier that did not answer) counts in ``errors`` instead."""

    def __init__(self, probe: Callable[[], T], interval: float, *, name: str) -> None:
        self.probe, self.interval, self.name = probe, interval, name
        # guarded by: appended by the sampler thread only, and before it starts and after
        # __exit__ joined it by the owner
        self.samples: list[tuple[float, T]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __repr__(self) -> str:
        return f"<Sampler {self.name} every {self.interval}s, {len(self.samples)}>"

    def __enter__(self) -> Sampler[T]:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sample()

    def _sample(self) -> None:
        try:
            self.samples.append((time.perf_counter(), self.probe()))
        except (OSError, ValueError):
            self.errors += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
