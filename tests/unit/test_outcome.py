"""cache_status_member: one RFC 9211 Cache-Status list member per outcome."""

from __future__ import annotations

import pytest

from shared.engine.outcome import Fwd, Outcome, cache_status_member


@pytest.mark.parametrize(
    ("outcome", "params", "expected"),
    [
        pytest.param(Outcome.HIT, {"ttl": 29.9}, "edge-1; hit; ttl=29", id="hit"),
        pytest.param(Outcome.HIT, {"ttl": 0.4}, "edge-1; hit; ttl=0", id="hit-last-second"),
        pytest.param(Outcome.HIT, {}, "edge-1; hit", id="hit-without-ttl"),
        pytest.param(
            Outcome.STALE,
            {"ttl": -12.5, "detail": "stale-while-revalidate"},
            "edge-1; hit; ttl=-12; detail=stale-while-revalidate",
            id="stale-while-revalidate",
        ),
        pytest.param(
            Outcome.STALE,
            {"ttl": -200.0, "detail": "stale-if-error"},
            "edge-1; hit; ttl=-200; detail=stale-if-error",
            id="stale-if-error",
        ),
        pytest.param(
            Outcome.MISS,
            {"fwd": Fwd.URI_MISS, "fwd_status": 200, "stored": True},
            "edge-1; fwd=uri-miss; fwd-status=200; stored",
            id="miss-stored",
        ),
        pytest.param(
            Outcome.MISS,
            {"fwd": Fwd.VARY_MISS, "fwd_status": 404},
            "edge-1; fwd=vary-miss; fwd-status=404",
            id="vary-miss-not-stored",
        ),
        pytest.param(
            Outcome.COALESCED,
            {"fwd": Fwd.URI_MISS, "fwd_status": 200, "stored": True},
            "edge-1; fwd=uri-miss; fwd-status=200; stored; collapsed",
            id="collapsed",
        ),
        pytest.param(
            Outcome.REVALIDATED,
            {"fwd": Fwd.STALE, "fwd_status": 304, "stored": True},
            "edge-1; fwd=stale; fwd-status=304; stored",
            id="revalidated",
        ),
        pytest.param(
            Outcome.MISS,
            {"fwd": Fwd.REQUEST, "fwd_status": 200, "stored": True},
            "edge-1; fwd=request; fwd-status=200; stored",
            id="reload",
        ),
        pytest.param(
            Outcome.ERROR,
            {"fwd": Fwd.URI_MISS, "detail": "upstream-unavailable"},
            "edge-1; fwd=uri-miss; detail=upstream-unavailable",
            id="error",
        ),
        pytest.param(
            Outcome.SHED,
            {"fwd": Fwd.URI_MISS, "detail": "shed_requests"},
            "edge-1; fwd=uri-miss; detail=shed_requests",
            id="shed",
        ),
        pytest.param(
            Outcome.BYPASS,
            {"fwd": Fwd.BYPASS, "fwd_status": 200},
            "edge-1; fwd=bypass; fwd-status=200",
            id="bypass",
        ),
        pytest.param(
            Outcome.BYPASS,
            {"fwd": Fwd.METHOD, "fwd_status": 201},
            "edge-1; fwd=method; fwd-status=201",
            id="bypass-method",
        ),
        pytest.param(Outcome.ERROR, {"detail": ""}, "edge-1", id="empty-detail-left-out"),
    ],
)
def test_cache_status_member_strings(outcome, params, expected):
    """Each outcome names the tier, then hit / fwd / fwd-status / ttl / stored /
    collapsed / detail in RFC 9211 order, leaving out what does not apply."""
    assert cache_status_member("edge-1", outcome, **params) == expected


@pytest.mark.parametrize("ttl", [29.9, 30.0, 0.0, 0.99, -0.5, -7.2, 1e9])
def test_cache_status_member_hit_fast_path_matches_general_path(ttl):
    """A fresh hit's one-format fast path gives the string the general path builds
    for a served stored response with the same ttl (STALE without a detail)."""
    general = cache_status_member("edge-1", Outcome.STALE, ttl=ttl)
    assert cache_status_member("edge-1", Outcome.HIT, ttl=ttl) == general


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"stored": True}, id="stored"),
        pytest.param({"fwd_status": 304}, id="fwd-status"),
    ],
)
def test_cache_status_member_hit_fast_path_keeps_every_parameter(params):
    """The fast path gives what the general path would for every parameter it is given."""
    general = cache_status_member("edge-1", Outcome.STALE, ttl=5.0, **params)
    assert cache_status_member("edge-1", Outcome.HIT, ttl=5.0, **params) == general
