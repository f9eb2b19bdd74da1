"""loadtest.zipfreport verdicts and loadtest.cachesim on tiny traces."""

from __future__ import annotations

import pytest

from loadtest import cachesim
from loadtest.zipfreport import judge


def row(obj: float, byte: float) -> dict[str, float]:
    return {"object_hit_ratio": obj, "byte_hit_ratio": byte}


def result(kind: str, adaptive: tuple[float, float], s3fifo: tuple[float, float]) -> dict:
    offline = {
        "lru": row(0.3, 0.3),
        "tinylfu": row(0.45, 0.45),
        "adaptive": row(*adaptive),
        "belady": row(0.57, 0.55),
    }
    lcs = {"S3FIFO": row(*s3fifo), "GDSF": row(0.44, 0.30), "BeladySize": row(0.9, 0.9)}
    return {"kind": kind, "alpha": 0.8, "offline": offline, "libcachesim": lcs}


@pytest.mark.parametrize(
    ("kind", "adaptive", "s3fifo", "met"),
    [
        ("static", (0.46, 0.46), (0.43, 0.44), True),
        ("static", (0.449, 0.46), (0.43, 0.44), False),  # worse than tinylfu by object
        ("shift", (0.43, 0.42), (0.42, 0.43), False),  # behind S3-FIFO by byte
        ("shift", (0.45, 0.44), (0.42, 0.43), True),  # BeladySize is an oracle: not a target
    ],
)
def test_judge_adaptive_targets(kind, adaptive, s3fifo, met):
    """Static: no worse than tinylfu and >= every online policy; shift: >= the best
    online policy by object and by byte (the best of each)."""
    goal = judge(result(kind, adaptive, s3fifo), cachesim.ONLINE)
    assert goal["adaptive_met"] is met
    margins = goal["adaptive_vs_best_online"]
    assert margins["byte_hit_ratio"]["best"] == "S3FIFO"
    assert margins["object_hit_ratio"]["best"] in {"S3FIFO", "GDSF"}
    assert ("beats_lru" in goal) is (kind == "static")


def test_judge_without_libcachesim_says_not_judged():
    r = result("shift", (0.4, 0.4), (0.5, 0.5))
    r["libcachesim"] = {}
    goal = judge(r, cachesim.ONLINE)
    assert goal["adaptive_met"] is None and goal["met"] is True


@pytest.mark.parametrize("name", cachesim.ONLINE + cachesim.ORACLES)
def test_cachesim_policies_hit_on_repeats(name):
    """Two objects that fit, asked for in turn: every policy misses twice, then hits."""
    flags = cachesim.hits(name, [0, 1, 0, 1, 0, 1], [100, 100], 0, 10_000)
    assert flags[:2] == [False, False] and all(flags[2:]), flags


def test_cachesim_rejects_an_unknown_policy():
    with pytest.raises(ValueError):
        cachesim.hits("MRU", [0], [1], 0, 10)
