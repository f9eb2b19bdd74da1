"""Smoke test of the load tests: the hit-path scenario runs end to end and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_hitpath_quick_reports_ratios_against_the_ceiling(tmp_path: Path) -> None:
    """hitpath --quick (Python load tool) exits 0 and reports tiercdn / ceiling per cell,
    memory and disk, with the edges' requests all hits."""
    report = tmp_path / "hitpath.json"
    args = ["--quick", "--seconds", "0.5", "--connections", "4", "--tool", "python"]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.hitpath", *args, "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=80,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PYTHON FALLBACK" in done.stdout
    summary = json.loads(report.read_text())
    assert summary["tool"] == "python"
    cells = {(c["kind"], c["object"], c["connections"]) for c in summary["cells"]}
    assert cells == {(k, o, 4) for k in ("memory", "disk") for o in ("1KiB", "100KiB", "1MiB")}
    for cell in summary["cells"]:
        assert cell["tiercdn"]["rps_median"] > 0 and cell["ceiling"]["rps_median"] > 0
        assert cell["ratio_median"] > 0
        assert cell["tiercdn"]["errors"] == cell["ceiling"]["errors"] == 0
    assert len(summary["stall_runs"]) == 1
