"""``tiercdn top``'s pure part: rates, hit ratio and TTFB percentiles from two samples."""

from __future__ import annotations

import math

import pytest

from shared.ops.top import Key, Row, Sample, hit_ratio, quantile, rate, total


def key(name: str, **labels: str) -> Key:
    return (name, tuple(sorted(labels.items())))


def requests(**by_outcome: float) -> dict[Key, float]:
    return {key("tiercdn_requests_total", outcome=o): v for o, v in by_outcome.items()}


BOUNDS = ("0.01", "0.1", "1.0", "+Inf")


def buckets(*cumulative: float, **labels: str) -> dict[Key, float]:
    return {
        key("tiercdn_first_byte_seconds_bucket", le=le, **labels): c
        for le, c in zip(BOUNDS, cumulative, strict=True)
    }


def test_total_sums_matching_labels_only():
    m = requests(hit=3, miss=2) | {key("other_total", outcome="hit"): 9}
    assert total(m, "tiercdn_requests_total") == 5
    assert total(m, "tiercdn_requests_total", outcome="hit") == 3
    assert total(m, "tiercdn_requests_total", outcome="nope") == 0


@pytest.mark.parametrize(
    ("then", "now", "seconds", "want"),
    [
        (10, 30, 2.0, 10.0),  # plain increase
        (10, 10, 1.0, 0.0),  # idle
        (50, 4, 1.0, 4.0),  # the node restarted: count from zero
        (10, 30, 0.0, 0.0),  # no time passed: no rate rather than a division by zero
    ],
)
def test_rate(then, now, seconds, want):
    before = Sample(100.0, requests(hit=then), {})
    after = Sample(100.0 + seconds, requests(hit=now), {})
    assert rate(before, after, "tiercdn_requests_total") == want


@pytest.mark.parametrize(
    ("before", "after", "want"),
    [
        (requests(hit=0, miss=0), requests(hit=3, miss=1), 0.75),
        (requests(hit=10, miss=10), requests(hit=10, miss=12), 0.0),  # over the interval only
        (requests(hit=1, stale=0, coalesced=0), requests(hit=2, stale=1, coalesced=2), 0.5),
        (requests(hit=5, bypass=0), requests(hit=5, bypass=9), None),  # bypass is no lookup
        ({}, {}, None),
    ],
)
def test_hit_ratio(before, after, want):
    assert hit_ratio(before, after) == want


def test_quantile_interpolates_inside_a_bucket_over_the_interval():
    # 100 observations in the interval: 50 under 10 ms, 40 in (10, 100] ms, 10 in (0.1, 1] s.
    before = buckets(1000, 1000, 1000, 1000)  # history before the interval is ignored
    after = buckets(1050, 1090, 1100, 1100)
    name = "tiercdn_first_byte_seconds"
    assert quantile(before, after, name, 0.5) == pytest.approx(0.01)
    assert quantile(before, after, name, 0.7) == pytest.approx(0.01 + 0.09 * 20 / 40)
    assert quantile(before, after, name, 0.99) == pytest.approx(0.1 + 0.9 * 9 / 10)


def test_quantile_sums_label_sets_and_handles_edges():
    name = "tiercdn_first_byte_seconds"
    both = buckets(4, 4, 4, 4, outcome="hit") | buckets(0, 0, 4, 4, outcome="miss")
    assert quantile({}, both, name, 0.5) == pytest.approx(0.01)  # 4 of 8 under 10 ms
    assert quantile(both, both, name, 0.5) is None  # nothing observed in the interval
    assert quantile({}, {}, name, 0.5) is None
    beyond = buckets(0, 0, 0, 5)
    assert quantile({}, beyond, name, 0.99) == 1.0  # +Inf: the last finite bound
    assert not math.isinf(quantile({}, beyond, name, 0.5) or 0.0)


def test_row_of_a_cache_node_and_of_the_origin_and_a_down_node():
    before = Sample(0.0, requests(hit=0, miss=0) | buckets(0, 0, 0, 0), {"name": "edge-1"})
    m = requests(hit=3, miss=1) | buckets(4, 4, 4, 4)
    m[key("tiercdn_response_bytes_total", source="cache")] = 3000
    m[key("tiercdn_fill_readers_total", role="joined")] = 2
    m[key("tiercdn_breaker_state", parent="http://r")] = 2
    stats = {"name": "edge-1", "bytes": 2048, "capacity_bytes": 4096, "disk": None}
    row = Row.of("http://127.0.0.1:9080", before, Sample(2.0, m, stats))
    assert (row.node, row.down, row.requests, row.hit_ratio) == ("edge-1", False, 2.0, 0.75)
    assert (row.bytes_cache, row.bytes_upstream, row.joined) == (1500.0, 0.0, 1.0)
    assert (row.breakers, row.store, row.disk) == ("1 open", "2.0KiB/4.0KiB", "")

    o0 = {key("tiercdn_origin_requests_total", kind="segment", status="2xx"): 1.0}
    o1 = {key("tiercdn_origin_requests_total", kind="segment", status="2xx"): 5.0}
    origin = Row.of("http://o", Sample(0.0, o0, {}), Sample(1.0, o1, {}))
    assert (origin.node, origin.requests, origin.hit_ratio) == ("origin", 4.0, None)

    down = Row.of("http://127.0.0.1:9", before, None)
    assert (down.node, down.down) == ("127.0.0.1:9", True)
