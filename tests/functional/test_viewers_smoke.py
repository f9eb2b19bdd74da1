"""Smoke test of the virtual viewers load test: a tiny steady run end to end on a real title."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PANELS = ("hit-ratio", "origin-rps", "ttfb-p99", "rebuffer", "bitrate-mix")


@pytest.mark.slow
@pytest.mark.timeout(40)
def test_viewers_tiny_steady_run_writes_report_and_plots(
    sample_library: Path, tmp_path: Path
) -> None:
    """viewers steady, 4 viewers of the 6 s sample title: exit 0, a sane JSON report, PNGs."""
    report = tmp_path / "viewers-steady.json"
    args = ["steady", "--library", str(sample_library), "--titles", "1", "--viewers", "4"]
    args += ["--duration", "8", "--ramp", "1", "--speedup", "10", "--json", str(report)]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.viewers", *args],
        capture_output=True,
        text=True,
        timeout=35,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "viewers 4/4" in done.stderr  # the progress bar
    s = json.loads(report.read_text())
    assert s["scenario"] == "steady"
    assert s["titles"] == {"/sample/manifest.mpd": 4}
    assert s["viewers"] == {
        "planned": 4, "started": 4, "played": 4, "finished": 4, "left_on_errors": 0,
        "cut_by_duration": 0,
    }  # fmt: skip
    assert s["requests"]["errors"] == 0, s["requests"]["error_examples"]
    assert s["requests"]["media"] == 4 * 3 * 2  # 6 s of 2 s segments, video + audio
    for figure in ("segment_ttfb_ms", "segment_download_ms", "startup_ms"):
        assert s[figure]["count"] > 0 and 0 < s[figure]["p50"] <= s[figure]["p99"], figure
    assert s["rebuffer"]["ratio"] is not None and 0 <= s["rebuffer"]["ratio"] <= 1
    assert set(s["abr"]["rungs"]) == {"0", "1"}
    assert sum(s["abr"]["mix"].values()) == pytest.approx(1, abs=0.01)
    assert s["tiers"]["edge"]["outcomes"]["hit"] + s["tiers"]["edge"]["outcomes"]["miss"] > 0
    assert s["tiers"]["origin"]["requests"] > 0
    assert s["events"] == [] and s["around_events"] == []
    client = s["timeline"]["client"]
    assert len(client["t"]) == len(client["ttfb_p99_ms"]) == len(client["rebuffer_ratio"]) > 0
    assert {"edge_hit_ratio", "regional_hit_ratio", "origin_rps"} <= set(s["timeline"]["tiers"])
    assert s["host"]["cpus"]
    pngs = [tmp_path / "viewers-steady.png"] + [
        tmp_path / f"viewers-steady-{p}.png" for p in PANELS
    ]
    assert sorted(s["plots"]) == sorted(str(p) for p in pngs)
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert png.stat().st_size > 10_000, png
