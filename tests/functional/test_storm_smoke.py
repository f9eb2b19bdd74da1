"""Smoke test of the miss-storm load test: it runs end to end and reports single flight."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_storm_small_crowd_reaches_origin_once(tmp_path: Path) -> None:
    """storm with 20 clients, 1 round: exit 0, no errors, one request per tier."""
    report = tmp_path / "storm.json"
    args = ["--clients", "20", "--rounds", "1", "--fault-delay", "50ms", "--timeout", "15"]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.storm", *args, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=45,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "targets:" in done.stdout
    summary = json.loads(report.read_text())
    (row,) = summary["rounds"]
    assert row["errors"] == 0, row["error_examples"]
    assert row["ok"] == 20
    assert row["tiers"]["origin_requests"] == 1
    assert row["tiers"]["edge_to_regional"] == row["tiers"]["regional_to_origin"] == 1
    assert row["edge_outcomes_seen"].get("miss") == 1
    assert row["leader_ttfb_ms"] is not None and row["leader_ttfb_ms"] >= 50
