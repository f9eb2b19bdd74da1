"""Table-driven tests for shared.policy.shedding (request admission under load)."""

from __future__ import annotations

import itertools

import pytest

from shared.dash import ContentKind, Representation, SegmentInfo, SegmentKind
from shared.policy.shedding import Priority, Shed, Shedder, media_priority, priority_of

P = Priority
ADMIT, REQS, FILLS = Shed.ADMIT, Shed.SHED_REQUESTS, Shed.SHED_FILLS


def info(kind: SegmentKind, rank: int, ranks: int) -> SegmentInfo:
    rep = Representation("r", 1000 * (rank + 1), ContentKind.VIDEO, rank, ranks)
    return SegmentInfo(
        kind, rep, "/t/manifest.mpd", number=1 if kind is SegmentKind.MEDIA else None
    )


# --- priority ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rank", "ranks", "expected"),
    [
        pytest.param(0, 1, P.MEDIA_BASE, id="single-rung"),
        pytest.param(0, 2, P.MEDIA_BASE, id="2-low"),
        pytest.param(1, 2, P.MEDIA_TOP, id="2-high"),
        pytest.param(1, 3, P.MEDIA_MID, id="3-mid"),
        pytest.param(1, 4, P.MEDIA_LOW, id="4-second"),
        pytest.param(2, 4, P.MEDIA_HIGH, id="4-third"),
        pytest.param(1, 5, P.MEDIA_LOW, id="5-second"),
        pytest.param(2, 5, P.MEDIA_MID, id="5-middle"),
        pytest.param(3, 5, P.MEDIA_HIGH, id="5-fourth"),
        pytest.param(1, 10, P.MEDIA_LOW, id="10-second"),
        pytest.param(8, 10, P.MEDIA_HIGH, id="10-ninth"),
        pytest.param(9, 10, P.MEDIA_TOP, id="10-top"),
    ],
)
def test_media_priority_by_rank(rank, ranks, expected):
    """Lowest rung BASE, highest TOP, inner rungs in proportion."""
    assert media_priority(rank, ranks) is expected


@pytest.mark.parametrize("ranks", range(1, 12))
def test_media_priority_monotonic_in_rank(ranks):
    """A lower-bitrate rung is never less protected than a higher one."""
    levels = [media_priority(rank, ranks) for rank in range(ranks)]
    assert levels == sorted(levels, reverse=True)
    assert levels[0] is P.MEDIA_BASE


@pytest.mark.parametrize(
    ("path", "segment", "expected"),
    [
        pytest.param("/t/manifest.mpd", None, P.MANIFEST, id="manifest"),
        pytest.param("/t/manifest.mpd?x=1", None, P.MANIFEST, id="manifest-query"),
        pytest.param("/t/init-1.mp4", info(SegmentKind.INIT, 3, 4), P.INIT, id="init-top-rung"),
        pytest.param("/t/c-0-1.m4s", info(SegmentKind.MEDIA, 0, 4), P.MEDIA_BASE, id="media-low"),
        pytest.param("/t/c-3-1.m4s", info(SegmentKind.MEDIA, 3, 4), P.MEDIA_TOP, id="media-top"),
        pytest.param("/t/unlearned.m4s", None, P.UNKNOWN, id="unknown"),
        pytest.param("/player.html", None, P.UNKNOWN, id="other"),
    ],
)
def test_priority_of(path, segment, expected):
    """Manifests and init segments on top, media by rung, unlearned paths mid-ladder."""
    assert priority_of(path, segment) is expected


# --- Shedder.decide ------------------------------------------------------------------

# max_requests=100, max_fills=10: fill limits 5, 7, 8, 8, 9, 10, 11, 11 by priority
DECISIONS = [
    # (priority, requests in flight, fills in flight, needs_fill, expected)
    (P.MEDIA_TOP, 0, 0, True, ADMIT),
    (P.MEDIA_TOP, 0, 4, True, ADMIT),
    (P.MEDIA_TOP, 0, 5, True, FILLS),
    (P.MEDIA_HIGH, 0, 6, True, ADMIT),
    (P.MEDIA_HIGH, 0, 7, True, FILLS),
    (P.MEDIA_MID, 0, 7, True, ADMIT),
    (P.MEDIA_MID, 0, 8, True, FILLS),
    (P.UNKNOWN, 0, 7, True, ADMIT),
    (P.UNKNOWN, 0, 8, True, FILLS),
    (P.MEDIA_LOW, 0, 8, True, ADMIT),
    (P.MEDIA_LOW, 0, 9, True, FILLS),
    (P.MEDIA_BASE, 0, 9, True, ADMIT),
    (P.MEDIA_BASE, 0, 10, True, FILLS),
    (P.INIT, 0, 10, True, ADMIT),
    (P.INIT, 0, 11, True, FILLS),
    (P.MANIFEST, 0, 10, True, ADMIT),
    (P.MANIFEST, 0, 11, True, FILLS),
    # requests: limits 50 / 63 / 75 / 75 / 88 / 100 / 110 / 110
    (P.MEDIA_TOP, 49, 0, True, ADMIT),
    (P.MEDIA_TOP, 50, 0, True, REQS),
    (P.MEDIA_HIGH, 62, 0, False, ADMIT),
    (P.MEDIA_HIGH, 63, 0, False, REQS),
    (P.MEDIA_LOW, 87, 0, True, ADMIT),
    (P.MEDIA_LOW, 88, 0, True, REQS),
    (P.MEDIA_BASE, 99, 0, True, ADMIT),
    (P.MEDIA_BASE, 100, 0, True, REQS),
    (P.MANIFEST, 109, 0, True, ADMIT),
    (P.MANIFEST, 110, 0, True, REQS),
    # both over: the request cap is named
    (P.MEDIA_TOP, 50, 5, True, REQS),
    # joiners: no fill is started, so only the request cap applies
    (P.MEDIA_TOP, 0, 10_000, False, ADMIT),
    (P.MEDIA_TOP, 49, 10_000, False, ADMIT),
    (P.MEDIA_TOP, 50, 0, False, REQS),
    (P.MANIFEST, 0, 500, False, ADMIT),
]


@pytest.mark.parametrize(
    ("priority", "requests", "fills", "needs_fill", "expected"),
    DECISIONS,
    ids=[f"{p.name.lower()}-r{r}-f{f}-{'lead' if n else 'join'}" for p, r, f, n, _ in DECISIONS],
)
def test_shedder_decide_table(priority, requests, fills, needs_fill, expected):
    """High-bitrate misses go at 50 % of a cap, the lowest at 100 %, essentials at 110 %."""
    shedder = Shedder(max_requests=100, max_fills=10)
    assert shedder.decide(priority, requests, fills, needs_fill=needs_fill) is expected


@pytest.mark.parametrize(
    ("max_requests", "max_fills", "priority", "expected"),
    [
        pytest.param(1, 1, P.MEDIA_TOP, (1, 1), id="cap-1-top"),
        pytest.param(1, 1, P.MEDIA_BASE, (1, 1), id="cap-1-base"),
        pytest.param(1, 1, P.MANIFEST, (2, 2), id="cap-1-reserve"),
        pytest.param(10, 3, P.MEDIA_TOP, (5, 2), id="rounds-up"),
        pytest.param(10, 3, P.INIT, (11, 4), id="exact-not-float"),
        pytest.param(1000, 64, P.MEDIA_MID, (750, 48), id="large"),
    ],
)
def test_shedder_limits(max_requests, max_fills, priority, expected):
    """Limits are ceil(cap * share): every priority gets a slot, essentials one more."""
    assert Shedder(max_requests, max_fills).limits(priority) == expected


@pytest.mark.parametrize(("max_requests", "max_fills"), [(1, 1), (7, 3), (100, 10), (64, 1000)])
def test_shedder_monotonic(max_requests, max_fills):
    """A more protected priority is never shed where a less protected one is admitted.
    Decisions only change at a limit, so every limit, its neighbours, 0 and a load
    past every cap cover all the regions (a full grid at 64/1000 took 14 s)."""
    shedder = Shedder(max_requests, max_fills)
    edges = {0, max(max_requests, max_fills) * 12 // 10 + 1}
    for p in Priority:
        for limit in shedder.limits(p):
            edges |= {limit - 1, limit, limit + 1}
    loads = sorted(x for x in edges if x >= 0)
    for needs_fill, requests, fills in itertools.product((True, False), loads, loads):
        admitted = [
            shedder.decide(p, requests, fills, needs_fill=needs_fill) is ADMIT for p in Priority
        ]
        assert admitted == sorted(admitted), (needs_fill, requests, fills)


@pytest.mark.parametrize(("max_requests", "max_fills"), [(1, 1), (100, 10)])
def test_shedder_joiners_ignore_fill_cap(max_requests, max_fills):
    """Joining a fill is judged by the request cap alone."""
    shedder = Shedder(max_requests, max_fills)
    for p in Priority:
        requests = shedder.limits(p)[0]
        assert shedder.decide(p, requests - 1, 10**6, needs_fill=False) is ADMIT
        assert shedder.decide(p, requests, 0, needs_fill=False) is REQS
        assert shedder.decide(p, requests - 1, 10**6, needs_fill=True) is FILLS


@pytest.mark.parametrize(("max_requests", "max_fills"), [(0, 1), (1, 0), (-5, 10)])
def test_shedder_rejects_bad_caps(max_requests, max_fills):
    """Caps must be positive."""
    with pytest.raises(ValueError):
        Shedder(max_requests, max_fills)


def test_shed_labels_and_repr():
    """Decision values and priority names make metric labels; repr names the caps."""
    assert [s.value for s in Shed] == ["admit", "shed_requests", "shed_fills"]
    assert P.MEDIA_TOP.name.lower() == "media_top"
    assert repr(Shedder(8, 4)) == "Shedder(max_requests=8, max_fills=4)"
