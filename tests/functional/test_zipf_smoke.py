"""Smoke test of the Zipf admission benchmark: real tiers over HTTP, tiny parameters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

POLICIES = ("lru", "tinylfu")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_zipf_benchmark_runs_and_reports_sane_ratios(tmp_path: Path) -> None:
    """loadtest.zipf exits 0 and writes ratios in [0, 1] with Belady above every policy."""
    report = tmp_path / "zipf.json"
    args = ["--objects", "500", "--requests", "3000", "--alpha", "0.8", "--concurrency", "8"]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.zipf", *args, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "belady" in done.stdout and "tinylfu (http)" in done.stdout
    summary = json.loads(report.read_text())
    assert summary["primary"] == "http"
    catalog = summary["catalog"]
    assert catalog["overhead_source"] == "measured"
    assert 0 < catalog["overhead_bytes_per_object"] < 2000
    assert catalog["cache_bytes"] == int(catalog["charged_bytes"] * 0.05)
    [result] = summary["results"]
    assert result["alpha"] == 0.8
    rows = {f"{p} (http)": r for p, r in result["http"].items()}
    rows |= {f"{p} (offline)": r for p, r in result["offline"].items()}
    assert set(rows) >= {f"{p} ({m})" for p in POLICIES for m in ("http", "offline")}
    for name, row in rows.items():
        assert 0 <= row["object_hit_ratio"] <= 1, name
        assert 0 <= row["byte_hit_ratio"] <= 1, name
    for p in POLICIES:
        http = result["http"][p]
        assert http["requests"] == 3000 and not http["errors"] and not http["truncated"]
        assert http["edge_stats"]["bytes"] <= catalog["cache_bytes"]
    best = result["offline"]["belady"]["object_hit_ratio"]
    assert best > 0
    for p in POLICIES:
        assert best >= result["http"][p]["object_hit_ratio"], p
        assert best >= result["offline"][p]["object_hit_ratio"], p
    assert set(result["targets"]) >= {"beats_lru", "gap_closed", "met"}
