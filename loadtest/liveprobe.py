"""The reference probe: when did the origin produce each segment's first chunk?

``python -m loadtest.liveprobe ORIGIN_URL MPD_PATH --out FILE --until EPOCH`` asks the
origin itself (no cache between) for every representation of every segment at the
moment it becomes available, as the viewers do, and writes one JSON line per GET
(``loadtest.liveviewer.Fetch`` fields) to ``FILE``, flushed per segment. Its first
body byte is the origin's first chunk: the viewers' first bytes are measured
against it (``loadtest.livereport``).

Invariants:

- A process of its own, so a loaded generator loop does not delay what it sees.
- It connects from ``--source`` (``127.0.0.2``: another loopback address), so the
  origin's access log tells its requests from the CDN's.
- Bounded: no segment available after ``--until``; a 404 (a moment early) is retried
  every ``RETRY`` seconds for at most one segment duration; SIGTERM ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from loadtest.eventloop import run_loop
from loadtest.liveviewer import RETRY, Fetch, LiveRun, ViewerLog, live_session

__all__ = ["PROBE_SOURCE", "main"]

PROBE_SOURCE = "127.0.0.2"


async def _segment(
    run: LiveRun, kind: str, path: str, n: int, rung: int, avail: float, seg: float
) -> list[Fetch]:
    """GET one object at its availability; a failure is retried for one segment duration."""
    log = ViewerLog(-1)
    while True:
        record = await run.get(kind, path, log)
        record.n, record.rung, record.availability, record.scheduled = n, rung, avail, True
        if not record.error or time.time() > avail + seg:
            return log.fetches
        await asyncio.sleep(RETRY)


async def probe(origin: str, mpd_path: str, file: TextIO, until: float, source: str) -> int:
    """Every segment of every representation from the next one on, until ``until``."""
    async with live_session(10.0, (source, 0)) as session:
        run = LiveRun(origin.rstrip("/"), mpd_path, session, until, 0.0)
        log = ViewerLog(-1)
        found = await run.manifest(log)
        if found is None:
            print("probe: no MPD", file=sys.stderr)
            return 2
        channel = found[0]
        skew = await run.skew(log)
        streams = [(s, "video", s.representation.rank) for s in channel.video]
        if channel.audio is not None:
            streams.append((channel.audio, "audio", 0))

        async def one(n: int, avail: float) -> None:  # every representation of ``n``
            got = await asyncio.gather(
                *(
                    _segment(run, kind, channel.path(s, n), n, rung, avail, channel.segment)
                    for s, kind, rung in streams
                )
            )
            for records in got:
                for record in records:
                    file.write(json.dumps(dataclasses.asdict(record)) + "\n")
            file.flush()

        n = channel.live_edge(time.time() + skew) + 1
        async with asyncio.TaskGroup() as group:  # a slow segment never delays the next
            while (avail := channel.availability(n) - skew) < until:
                if (wait := avail - time.time()) > 0:
                    await asyncio.sleep(wait)
                group.create_task(one(n, avail), name=f"probe {n}")
                n += 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.liveprobe", description=__doc__)
    p.add_argument("origin", help="the origin's URL")
    p.add_argument("mpd", help="the channel's MPD path, e.g. /live/ch/manifest.mpd")
    p.add_argument("--out", required=True, help="JSON lines, appended")
    p.add_argument("--until", type=float, required=True, help="epoch seconds: last availability")
    p.add_argument("--source", default=PROBE_SOURCE, help=f"local address ({PROBE_SOURCE})")
    ns = p.parse_args(argv)
    with open(ns.out, "a", encoding="utf-8") as file:
        return run_loop(probe(ns.origin, ns.mpd, file, ns.until, ns.source))


if __name__ == "__main__":
    sys.exit(main())
