"""Prometheus instruments of one cache node, in the node's own registry.

One ``CollectorRegistry`` per node so several nodes can live in one test
process. Names follow Prometheus conventions (``tiercdn_`` prefix, base
units, ``_total``); label values come from enums or configuration, never from
request URLs. Values the node already keeps (store size, fills in flight,
origin tokens) are read at scrape time by ``NodeCollector`` instead of being
copied on every request. So are the families every hit touches (requests by
outcome, first-byte times, response bytes): plain integers and lists the request
path increments (``Tally``, ``Timings``), turned into the same names and labels
at scrape time; a ``prometheus_client`` child costs a label lookup and a lock
per call, which a hit cannot afford.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
from collections.abc import Iterable, Iterator
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from shared.engine.outcome import Outcome
from shared.store import Store

__all__ = ["Metrics", "NodeState", "Tally", "Timings"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _Budget(Protocol):
    @property
    def in_flight(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def limited(self) -> bool: ...
    def tokens(self) -> float: ...


class NodeState(Protocol):
    """What ``NodeCollector`` reads from a node at scrape time."""

    @property
    def store(self) -> Store: ...
    @property
    def budget(self) -> _Budget: ...
    @property
    def misses_in_flight(self) -> int: ...
    @property
    def fetches_in_flight(self) -> int: ...


class NodeCollector(Collector):
    """Gauges and counters read from the live node when Prometheus scrapes."""

    def __init__(self, node: NodeState) -> None:
        self.node = node

    def collect(self) -> Iterator[Metric]:
        n = self.node
        yield _gauge("tiercdn_store_bytes", "Bytes held by the store", n.store.bytes)
        yield _gauge("tiercdn_store_objects", "Objects held by the store", len(n.store))
        evictions = CounterMetricFamily("tiercdn_store_evictions", "Objects evicted from the store")
        evictions.add_metric([], n.store.evictions)
        yield evictions
        admission = CounterMetricFamily(
            "tiercdn_admission", "Admission decisions on objects entering the main cache",
            labels=["decision"],
        )  # fmt: skip
        admission.add_metric(["admit"], n.store.admitted)
        admission.add_metric(["reject"], n.store.rejected)
        yield admission
        disk = n.store.disk
        if disk is not None:
            yield _gauge("tiercdn_disk_bytes", "Bytes held by the disk tier", disk.bytes)
            yield _gauge("tiercdn_disk_objects", "Objects held by the disk tier", len(disk))
            for name, help, value in (
                ("tiercdn_disk_write_errors", "Disk writes that failed (object not stored)",
                 disk.write_errors),
                ("tiercdn_disk_corrupt_dropped", "Disk objects dropped: missing, short or corrupt",
                 disk.corrupt_dropped),
            ):  # fmt: skip
                family = CounterMetricFamily(name, help)
                family.add_metric([], value)
                yield family
        yield _gauge("tiercdn_fills_in_flight", "Upstream fetches in progress", n.fetches_in_flight)
        yield _gauge(
            "tiercdn_misses_in_flight", "Client requests waiting on upstream", n.misses_in_flight
        )
        if n.budget.limited:
            tokens = n.budget.tokens()
            yield _gauge("tiercdn_origin_tokens", "Origin budget tokens available",
                         tokens if math.isfinite(tokens) else -1)  # fmt: skip
            yield _gauge("tiercdn_origin_waiting", "Fetches waiting for the origin budget",
                         n.budget.waiting)  # fmt: skip
            yield _gauge("tiercdn_origin_in_flight", "Fetches holding an origin budget slot",
                         n.budget.in_flight)  # fmt: skip

    def describe(self) -> Iterator[Metric]:
        return iter(())


def _gauge(name: str, help: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help, value=value)


K = TypeVar("K")
C = TypeVar("C", bound=Collector)


class Tally(Collector, Generic[K]):
    """A one-label counter kept as plain integers: ``tally.counts[key] += n`` on the
    request path, ``<name>_total{label="<labels[key]>"}`` at scrape time, every
    label value shown (zero until counted), as a labelled ``Counter`` shows them."""

    def __init__(self, name: str, help: str, label: str, labels: dict[K, str]) -> None:
        self.name, self.help, self.label, self.labels = name, help, label, labels
        self.counts: collections.Counter[K] = collections.Counter()  # [single event loop]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.help, labels=[self.label])
        for key, value in self.labels.items():
            family.add_metric([value], self.counts[key])
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Timings(Collector, Generic[K]):
    """A one-label histogram kept as plain lists: ``observe(key, seconds)`` is a
    bisect and two additions; cumulative buckets are made at scrape time.

    ``series[key]`` is one list per label value: a count per bucket (the last is
    +Inf), then the sum (one look-up per observation)."""

    def __init__(
        self, name: str, help: str, label: str, labels: dict[K, str], buckets: Iterable[float]
    ) -> None:
        self.name, self.help, self.label, self.labels = name, help, label, labels
        self.bounds = tuple(buckets)
        # guarded by: single event loop
        self.series: dict[K, list[float]] = {key: [0] * (len(self.bounds) + 2) for key in labels}

    def observe(self, key: K, seconds: float) -> None:
        series = self.series[key]
        series[bisect.bisect_left(self.bounds, seconds)] += 1  # le is inclusive
        series[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.help, labels=[self.label])
        edges = [floatToGoString(b) for b in self.bounds] + ["+Inf"]  # type: ignore[no-untyped-call]
        for key, value in self.labels.items():
            cumulative, total = [], 0.0
            *counts, seconds = self.series[key]
            for edge, n in zip(edges, counts, strict=True):
                total += n
                cumulative.append((edge, total))
            family.add_metric([value], cumulative, seconds)
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Every instrument of a node, with its help text."""

    registry: CollectorRegistry
    requests: Tally[Outcome]  # node.counts: /stats reads it too
    response_bytes: Tally[str]  # by source: cache, upstream
    first_byte_seconds: Timings[Outcome]
    upstream_requests: Counter
    breaker_state: Gauge
    upstream_seconds: Histogram
    upstream_bytes: Counter
    fill_readers: Counter
    fill_retries: Counter
    fill_resumes: Counter
    fills_uncached: Counter
    shed: Counter
    stale_served: Counter
    origin_wait_seconds: Histogram
    origin_rejected: Counter
    invalidations: Counter
    prefetches: Counter
    purged: Counter

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()

        def counter(name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, help, labels, registry=r)

        def histogram(name: str, help: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(name, help, labels, buckets=_LATENCY_BUCKETS, registry=r)

        def tally(collector: C) -> C:
            r.register(collector)
            return collector

        outcomes = {o: o.value for o in Outcome}

        return cls(
            registry=r,
            requests=tally(
                Tally("tiercdn_requests", "Client requests by cache outcome", "outcome", outcomes)
            ),
            response_bytes=tally(
                Tally(
                    "tiercdn_response_bytes",
                    "Body bytes sent to clients by source (cache or upstream)",
                    "source",
                    {"cache": "cache", "upstream": "upstream"},
                )
            ),
            first_byte_seconds=tally(
                Timings(
                    "tiercdn_first_byte_seconds",
                    "Time from request to response headers, by outcome",
                    "outcome",
                    outcomes,
                    _LATENCY_BUCKETS,
                )
            ),
            upstream_requests=counter(
                "tiercdn_upstream_requests",
                "Requests sent upstream by parent and result (status class or error)",
                ("parent", "result"),
            ),
            breaker_state=Gauge(
                "tiercdn_breaker_state",
                "Circuit breaker per parent: 0 closed, 1 half-open, 2 open",
                ["parent"],
                registry=r,
            ),
            upstream_seconds=histogram(
                "tiercdn_upstream_first_byte_seconds",
                "Time from upstream request to its response headers",
            ),
            upstream_bytes=counter("tiercdn_upstream_bytes", "Body bytes received from upstream"),
            fill_readers=counter(
                "tiercdn_fill_readers",
                "Readers that streamed from a fill, by role (leader or joined)",
                ("role",),
            ),
            fill_retries=counter(
                "tiercdn_fill_retries",
                "Readers moved to one new fill after theirs failed before their headers",
            ),
            fill_resumes=counter(
                "tiercdn_fill_resumes",
                "Fill bodies cut short upstream and continued with a Range request",
            ),
            fills_uncached=counter(
                "tiercdn_fills_uncached", "Fills not stored, by reason", ("reason",)
            ),
            shed=counter(
                "tiercdn_shed", "Requests refused by load shedding, by reason", ("reason",)
            ),
            stale_served=counter(
                "tiercdn_stale_served", "Stale copies served, by reason", ("reason",)
            ),
            origin_wait_seconds=histogram(
                "tiercdn_origin_wait_seconds", "Time fetches waited for the origin budget"
            ),
            origin_rejected=counter(
                "tiercdn_origin_rejected", "Fetches refused because the origin budget was spent"
            ),
            invalidations=counter(
                "tiercdn_invalidations", "Stored URLs invalidated by unsafe methods (RFC 9111 §4.4)"
            ),
            prefetches=counter(
                "tiercdn_prefetches", "Next-segment prefetches by result", ("result",)
            ),
            purged=counter("tiercdn_purged_objects", "Objects removed by purge"),
        )

    def watch(self, node: NodeState) -> None:
        """Read the node's live state at scrape time."""
        self.registry.register(NodeCollector(node))


# -- admin listener: refused token checks (issue 9) ---------------------------------

__all__ += ["admin_auth_failures"]


def admin_auth_failures(registry: CollectorRegistry) -> Counter:
    """``tiercdn_admin_auth_failures_total{result}`` in ``registry``: mutating admin
    requests refused for their token; the admin listener names the results."""
    return Counter(
        "tiercdn_admin_auth_failures",
        "Mutating admin requests refused: token missing, wrong, rate-limited or not configured",
        ("result",),
        registry=registry,
    )


# -- upstream pool: dead pooled connections and the last route (issue 9) ---------------

__all__ += ["UpstreamFaults"]


@dataclasses.dataclass(frozen=True)
class UpstreamFaults:
    """Counters of ``shared.engine.upstream.UpstreamPool``'s fault handling."""

    fresh_retries: Counter
    last_route: Counter
    refused: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> UpstreamFaults:
        return cls(
            fresh_retries=Counter(
                "tiercdn_upstream_fresh_retries",
                "Requests retried once on a new connection after a reused one failed"
                " before any response byte",
                registry=registry,
            ),
            last_route=Counter(
                "tiercdn_upstream_last_route",
                "Requests sent upstream with every circuit breaker open (no stale copy)",
                registry=registry,
            ),
            refused=Counter(
                "tiercdn_upstream_breaker_refused",
                "Requests failed at once with every circuit breaker open (a stale copy stands in)",
                registry=registry,
            ),
        )
