"""Prometheus instruments of one cache node, in the node's own registry.

One ``CollectorRegistry`` per node so several nodes can live in one test
process. Names follow Prometheus conventions (``tiercdn_`` prefix, base
units, ``_total``); label values come from enums, never from URLs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Every instrument of a node, with its help text."""

    registry: CollectorRegistry
    requests: Counter
    response_bytes: Counter
    first_byte_seconds: Histogram
    upstream_requests: Counter
    upstream_seconds: Histogram
    upstream_bytes: Counter
    store_bytes: Gauge
    store_objects: Gauge
    store_evictions: Gauge
    fills_in_flight: Gauge
    fill_readers: Counter
    fills_uncached: Counter
    invalidations: Counter

    @classmethod
    def create(cls) -> Metrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            requests=Counter(
                "tiercdn_requests", "Client requests by cache outcome", ["outcome"], registry=r
            ),
            response_bytes=Counter(
                "tiercdn_response_bytes",
                "Body bytes sent to clients by source (cache or upstream)",
                ["source"],
                registry=r,
            ),
            first_byte_seconds=Histogram(
                "tiercdn_first_byte_seconds",
                "Time from request to response headers, by outcome",
                ["outcome"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            upstream_requests=Counter(
                "tiercdn_upstream_requests",
                "Requests sent upstream by result (status class or error)",
                ["result"],
                registry=r,
            ),
            upstream_seconds=Histogram(
                "tiercdn_upstream_first_byte_seconds",
                "Time from upstream request to its response headers",
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            upstream_bytes=Counter(
                "tiercdn_upstream_bytes", "Body bytes received from upstream", registry=r
            ),
            store_bytes=Gauge("tiercdn_store_bytes", "Bytes held by the store", registry=r),
            store_objects=Gauge("tiercdn_store_objects", "Objects held by the store", registry=r),
            store_evictions=Gauge(
                "tiercdn_store_evictions", "Entries evicted from the store since start", registry=r
            ),
            fills_in_flight=Gauge(
                "tiercdn_fills_in_flight", "Upstream fills in progress", registry=r
            ),
            fill_readers=Counter(
                "tiercdn_fill_readers",
                "Readers that streamed from a fill, by role (leader or joined)",
                ["role"],
                registry=r,
            ),
            fills_uncached=Counter(
                "tiercdn_fills_uncached",
                "Fills not stored, by reason",
                ["reason"],
                registry=r,
            ),
            invalidations=Counter(
                "tiercdn_invalidations",
                "Stored URLs invalidated by unsafe methods (RFC 9111 §4.4)",
                registry=r,
            ),
        )

    def watch(
        self,
        store_bytes: Callable[[], float],
        store_objects: Callable[[], float],
        evictions: Callable[[], float],
        fills: Callable[[], float],
    ) -> None:
        """Read gauges from the live components at scrape time."""
        self.store_bytes.set_function(store_bytes)
        self.store_objects.set_function(store_objects)
        self.store_evictions.set_function(evictions)
        self.fills_in_flight.set_function(fills)
