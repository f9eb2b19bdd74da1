"""Smoke test of the load tests: the hit-path scenario runs end to end and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_hitpath_python_fallback_reports_positive_rates(tmp_path: Path) -> None:
    """hitpath with the Python load tool exits 0 and reports req/s for edge and origin."""
    report = tmp_path / "hitpath.json"
    args = ["--seconds", "0.5", "--rounds", "1", "--connections", "4", "--tool", "python"]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.hitpath", *args, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=45,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PYTHON FALLBACK" in done.stdout
    summary = json.loads(report.read_text())
    assert summary["tool"] == "python"
    assert {row["object"] for row in summary["objects"]} == {"1KiB", "700KiB"}
    for row in summary["objects"]:
        assert row["edge"]["rps_median"] > 0
        assert row["origin"]["rps_median"] > 0
        assert row["edge"]["errors"] == row["origin"]["errors"] == 0
