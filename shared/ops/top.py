"""``tiercdn top``: a live view of running nodes, one row per node, like ``varnishstat``.

Every interval it reads each node's admin listener (``/metrics`` and ``/stats``)
and shows rates over the last interval: requests/s, hit ratio, bytes/s by source,
fills and joined readers, shed and stale served, TTFB p50/p99 (from the histogram
buckets' increase), plus breaker states and store/disk use.

Two layers: ``fetch`` does the I/O (a ``Sample`` per node, ``None`` when it is
down); ``Row.of(before, after)`` and the functions it uses are pure, so rates and
percentiles are tested without a server. A node down in either sample is a "down"
row, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.live import Live
from rich.table import Table

__all__ = [
    "DEFAULT_URLS",
    "Key",
    "Row",
    "Sample",
    "fetch",
    "hit_ratio",
    "quantile",
    "rate",
    "render",
    "run",
    "total",
]

DEFAULT_URLS = ("http://127.0.0.1:9080", "http://127.0.0.1:9081", "http://127.0.0.1:9082")

Key = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted label pairs)
Samples = Mapping[Key, float]

_FROM_CACHE = ("hit", "stale")  # as shared.service.admin counts hit_ratio
_LOOKUPS = (*_FROM_CACHE, "miss", "coalesced", "revalidated")
_BREAKER = {0: "closed", 1: "half-open", 2: "open"}


@dataclasses.dataclass(frozen=True)
class Sample:
    """What one node said at one moment (``at``: a monotonic clock reading)."""

    at: float
    metrics: Samples
    stats: Mapping[str, Any]


# -- pure: rates and percentiles from two samples ------------------------------------


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of every sample called ``name`` whose labels include ``labels``."""
    want = labels.items()
    return sum(v for (n, ls), v in samples.items() if n == name and want <= dict(ls).items())


def rate(before: Sample, after: Sample, name: str, **labels: str) -> float:
    """Per-second increase of ``total(name, labels)`` between the samples (a counter
    reset, i.e. a restarted node, counts from zero)."""
    seconds = after.at - before.at
    if seconds <= 0:
        return 0.0
    now, then = total(after.metrics, name, **labels), total(before.metrics, name, **labels)
    return (now - then if now >= then else now) / seconds


def hit_ratio(before: Samples, after: Samples) -> float | None:
    """Share of cache lookups served from cache between the samples; None if none."""

    def delta(outcomes: tuple[str, ...]) -> float:
        name = "tiercdn_requests_total"
        return sum(total(after, name, outcome=o) - total(before, name, outcome=o) for o in outcomes)

    lookups = delta(_LOOKUPS)
    return delta(_FROM_CACHE) / lookups if lookups > 0 else None


def quantile(before: Samples, after: Samples, name: str, q: float) -> float | None:
    """The ``q`` quantile of histogram ``name`` over the interval, interpolated
    linearly inside a bucket as Prometheus' ``histogram_quantile`` does; None when
    nothing was observed. Beyond the last finite bound, that bound."""
    increase: dict[float, float] = {}
    for (n, ls), value in after.items():
        if n == name + "_bucket":
            le = float(dict(ls)["le"])
            increase[le] = increase.get(le, 0.0) + value - before.get((n, ls), 0.0)
    bounds = sorted(increase)
    if not bounds or increase[bounds[-1]] <= 0:
        return None
    rank = q * increase[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        if increase[le] >= rank:
            if math.isinf(le):
                return lower
            inside = increase[le] - below
            return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = le, increase[le]
    return lower


@dataclasses.dataclass(frozen=True)
class Row:
    """One node's line; ``down`` rows carry only ``node``. Rates are per second."""

    node: str
    down: bool = False
    requests: float = 0.0
    hit_ratio: float | None = None
    bytes_cache: float | None = None
    bytes_upstream: float | None = None
    bytes_out: float = 0.0
    fills: float | None = None
    joined: float | None = None
    shed: float | None = None
    stale: float | None = None
    breakers: str = ""
    ttfb_p50: float | None = None
    ttfb_p99: float | None = None
    store: str = ""
    disk: str = ""

    @classmethod
    def of(cls, url: str, before: Sample | None, after: Sample | None) -> Row:
        if before is None or after is None:
            return cls(node=urlsplit(url).netloc or url, down=True)
        m, s = after.metrics, after.stats
        if any(n == "tiercdn_origin_requests_total" for n, _ in m):  # the origin
            name = str(s.get("name") or "origin")
            return cls(
                node=name,
                requests=rate(before, after, "tiercdn_origin_requests_total"),
                bytes_out=rate(before, after, "tiercdn_origin_response_bytes_total"),
            )
        ttfb = "tiercdn_first_byte_seconds"
        cache = rate(before, after, "tiercdn_response_bytes_total", source="cache")
        upstream = rate(before, after, "tiercdn_response_bytes_total", source="upstream")
        return cls(
            node=str(s.get("name") or urlsplit(url).netloc),
            requests=rate(before, after, "tiercdn_requests_total"),
            hit_ratio=hit_ratio(before.metrics, m),
            bytes_cache=cache,
            bytes_upstream=upstream,
            bytes_out=cache + upstream,
            fills=total(m, "tiercdn_fills_in_flight"),
            joined=rate(before, after, "tiercdn_fill_readers_total", role="joined"),
            shed=rate(before, after, "tiercdn_shed_total"),
            stale=rate(before, after, "tiercdn_stale_served_total"),
            breakers=_breakers(m),
            ttfb_p50=quantile(before.metrics, m, ttfb, 0.5),
            ttfb_p99=quantile(before.metrics, m, ttfb, 0.99),
            store=_use(s.get("bytes"), s.get("capacity_bytes")),
            disk=_use(*_pair(s.get("disk"))),
        )


def _breakers(m: Samples) -> str:
    """``"2 closed"``, or e.g. ``"1 closed, 1 open"``."""
    counts: dict[str, int] = {}
    for (n, _), v in m.items():
        if n == "tiercdn_breaker_state":
            state = _BREAKER.get(int(v), str(v))
            counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{c} {state}" for state, c in sorted(counts.items()))


def _pair(disk: object) -> tuple[object, object]:
    """(bytes, capacity_bytes) of the ``disk`` part of ``/stats`` (None: no disk tier)."""
    return (
        (disk.get("bytes"), disk.get("capacity_bytes")) if isinstance(disk, dict) else (None, None)
    )


def _use(used: object, capacity: object) -> str:
    if not isinstance(used, int | float):
        return ""
    cap = _bytes(capacity) if isinstance(capacity, int | float) else "?"
    return f"{_bytes(used)}/{cap}"


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}GiB"  # unreachable: the loop returns at GiB


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}ms"


def render(rows: Sequence[Row], interval: float) -> Table:
    """The table of ``rows`` (rates over ``interval`` seconds)."""
    table = Table(title=f"tiercdn top — rates per second over {interval:g}s", title_justify="left")
    headers: tuple[str, ...] = ("node", "req/s", "hit%", "out/s", "cache/s", "upstream/s", "fills")
    headers += ("joined/s", "shed/s", "stale/s", "breakers", "ttfb p50", "p99", "store", "disk")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i in (0, 10, 13, 14) else "right", no_wrap=True)
    for r in rows:
        if r.down:
            table.add_row(r.node, "[bold red]down[/]")
            continue
        hit = None if r.hit_ratio is None else r.hit_ratio * 100
        table.add_row(
            r.node,
            _num(r.requests),
            _num(hit),
            _bytes(r.bytes_out) + "/s",
            "-" if r.bytes_cache is None else _bytes(r.bytes_cache) + "/s",
            "-" if r.bytes_upstream is None else _bytes(r.bytes_upstream) + "/s",
            _num(r.fills, "{:.0f}"),
            _num(r.joined),
            _num(r.shed),
            _num(r.stale),
            r.breakers or "-",
            _ms(r.ttfb_p50),
            _ms(r.ttfb_p99),
            r.store or "-",
            r.disk or "-",
        )
    return table


# -- I/O: fetch the samples, run the view ---------------------------------------------


def _get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def fetch(admin_url: str, timeout: float) -> Sample | None:
    """``/metrics`` and ``/stats`` of one node; None if it does not answer both."""
    base = admin_url.rstrip("/")
    try:
        text = _get(base + "/metrics", timeout).decode()
        stats = json.loads(_get(base + "/stats", timeout))
        at = time.monotonic()
        metrics: dict[Key, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                metrics[(s.name, tuple(sorted(s.labels.items())))] = s.value
    except (OSError, ValueError):  # URLError, refused, timeout, bad body: "down"
        return None
    return Sample(at, metrics, stats if isinstance(stats, dict) else {})


def _sample_all(pool: ThreadPoolExecutor, urls: Sequence[str], timeout: float) -> list[Any]:
    return list(pool.map(lambda u: fetch(u, timeout), urls))


def run(ns: argparse.Namespace) -> int:
    """``tiercdn top [--once] [--interval S] [ADMIN_URL ...]``."""
    urls: list[str] = ns.urls or list(DEFAULT_URLS)
    interval: float = ns.interval
    if not interval > 0:
        raise SystemExit("error: --interval must be > 0")
    timeout = min(max(interval, 0.5), 2.0)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    with ThreadPoolExecutor(max_workers=min(len(urls), 16)) as pool:
        try:
            before = _sample_all(pool, urls, timeout)
            if ns.once:
                time.sleep(interval)
                after = _sample_all(pool, urls, timeout)
                console.print(render(_rows(urls, before, after), interval))
                return 0
            with Live(console=console, auto_refresh=False, screen=False) as live:
                while True:
                    time.sleep(interval)
                    after = _sample_all(pool, urls, timeout)
                    live.update(render(_rows(urls, before, after), interval), refresh=True)
                    before = after
        except KeyboardInterrupt:
            return 0


def _rows(urls: Sequence[str], before: list[Any], after: list[Any]) -> list[Row]:
    return [Row.of(u, b, a) for u, b, a in zip(urls, before, after, strict=True)]
