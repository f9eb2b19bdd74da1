"""Smoke test of the Zipf admission benchmark: real tiers over HTTP, tiny parameters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtest import cachesim

POLICIES = ("lru", "tinylfu", "adaptive")
SMALL = ["--objects", "500", "--requests", "2000", "--alpha", "0.8", "--concurrency", "8"]


def run(tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """Run the benchmark; its stdout and JSON summary (it must exit 0)."""
    report = tmp_path / "zipf.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.zipf", *SMALL, *args, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert report.with_suffix(".png").stat().st_size > 0
    return done.stdout, json.loads(report.read_text())


def sane(rows: dict[str, dict[str, Any]]) -> None:
    for name, row in rows.items():
        assert 0 <= row["object_hit_ratio"] <= 1, name
        assert 0 <= row["byte_hit_ratio"] <= 1, name


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_zipf_benchmark_shift_workload_over_http(tmp_path: Path) -> None:
    """A popularity-shift trace through real tiers: every policy replayed without error,
    the edge within its budget, ratios in [0, 1] with Belady above every policy."""
    out, summary = run(
        tmp_path, "--workload", "shift", "--shift-every", "500", "--shift-new", "20",
        "--http-requests", "1000",
    )  # fmt: skip
    assert "tiercdn adaptive http" in out and "adaptive targets met" in out
    catalog = summary["catalog"]
    assert catalog["overhead_source"] == "measured"
    assert 0 < catalog["overhead_bytes_per_object"] < 2000
    assert catalog["cache_bytes"] == int(catalog["charged_bytes"] * 0.05)
    assert catalog["ids"] == 500 + 3 * 20  # three drops of 20 new objects
    [result] = summary["results"]
    assert result["kind"] == "shift" and result["shift"]["every"] == 500
    assert 0 < result["objects_requested"] <= catalog["ids"]
    for group in ("offline", "libcachesim", "http", "http_offline"):
        sane(result[group])
    for p in POLICIES:
        http = result["http"][p]
        assert http["requests"] == 1000 and not http["errors"] and not http["truncated"]
        assert http["edge_stats"]["bytes"] <= catalog["cache_bytes"]
        # same prefix, same policy: through a real edge as in-process, give or take order
        assert abs(http["object_hit_ratio"] - result["http_offline"][p]["object_hit_ratio"]) < 0.1
    best = result["offline"]["belady"]["object_hit_ratio"]
    for p in POLICIES:
        assert best >= result["offline"][p]["object_hit_ratio"], p
    assert cachesim.available(), "libcachesim is missing: run scripts/bootstrap"
    assert set(result["libcachesim"]) == set(cachesim.ONLINE + cachesim.ORACLES)
    assert set(result["targets"]["adaptive_vs_best_online"]) == {
        "object_hit_ratio",
        "byte_hit_ratio",
    }


@pytest.mark.timeout(60)
def test_zipf_benchmark_static_workload_offline(tmp_path: Path) -> None:
    """The static trace in-process: tinylfu's targets and adaptive's verdicts reported."""
    out, summary = run(tmp_path, "--workload", "static", "--offline")
    assert "static a=0.8" in out and "adaptive - tinylfu" in out
    [result] = summary["results"]
    assert result["kind"] == "static" and result["http"] == {}
    sane(result["offline"])
    assert set(result["targets"]) >= {"beats_lru", "gap_closed", "met", "adaptive_met"}
    assert summary["catalog"]["overhead_source"] == "assumed"
