"""Smoke test of the PoP benchmark (``loadtest.pop --quick``): all four parts end to end.

The hit path has tiercdn figures (nginx's only when an nginx binary is found,
wrk or the Python fallback as installed), every storm reaches the regional
once per object, two edges as peers send the regional no more than two
independent edges do, and the owner hop is timed in every case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_pop_quick_run_reports_every_part(tmp_path: Path) -> None:
    report = tmp_path / "pop.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.pop",
            "--quick",
            "--objects",
            "1KiB",
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "summary:" in done.stdout
    summary = json.loads(report.read_text())
    assert summary["tool"] in ("wrk", "python")

    hits = summary["hitpath"]
    assert [row["object"] for row in hits["rows"]] == ["1KiB"]  # --objects
    for row in hits["rows"]:
        for name in ("tiercdn-2w", "tiercdn-1w"):
            assert row[name]["rps_median"] > 0, (name, row)
            assert row[name]["errors"] == 0, (name, row)
        if summary["nginx_binary"]:
            assert row["nginx-2w"]["rps_median"] > 0, row
            assert row["ratio_2w_nginx"]["median"] > 0, row
        else:
            assert "nginx-2w" not in row and row["ratio_2w_nginx"] is None
    assert hits["regional_requests_during_runs"] == 0  # every measured request a hit
    assert all(not d for d in hits["non_hit_outcomes_during_runs"].values()), hits

    storm = summary["storm"]
    assert len(storm["rows"]) == 2
    assert storm["regional_requests_per_object"] == [1, 1]
    for row in storm["rows"]:
        assert row["statuses"] == {"200": storm["clients"]}, row

    peers, alone = summary["zipf"]["rows"]
    assert (peers["config"], alone["config"]) == ("peers", "independent")
    for row in (peers, alone):
        assert row["errors"] == {} and not row["truncated"], row
        assert row["client_requests"] == summary["zipf"]["requests"]
        assert row["regional_requests"] >= row["distinct_objects_asked"]  # each cold once
    assert peers["regional_requests"] <= alone["regional_requests"]
    assert peers["peer_requests"] > 0 and alone["peer_requests"] == 0

    hop = {row["case"]: row for row in summary["hop"]["rows"]}
    assert len(hop) == 5 and all(row["samples"] == 20 for row in hop.values())
    assert all(0 < row["p50_ms"] <= row["p90_ms"] for row in hop.values())
