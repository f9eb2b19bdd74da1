"""``python -m loadtest.viewers live``, small: 20 viewers on a 1-rung channel for a few
seconds through a real topology; the summary it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(90)
def test_loadtest_live_runs_small_and_writes_its_summary(tmp_path: Path) -> None:
    """20 viewers, one rung, 8 s: 1 origin request per segment object, 0 errors, first
    bytes measured against the probe's, a table and plots."""
    out = tmp_path / "live.json"
    argv = [sys.executable, "-m", "loadtest.viewers", "live", "--viewers", "20"]
    argv += ["--duration", "8", "--ramp", "1", "--live-ladder", "144:150k", "--no-nginx"]
    done = subprocess.run(
        [*argv, "--json", str(out)], capture_output=True, text=True, timeout=80, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1st byte after origin p99 ms" in done.stdout
    summary = json.loads(out.read_text())
    cdn = summary["cdns"]["tiercdn"]
    assert list(summary["cdns"]) == ["tiercdn"]
    assert cdn["viewers"]["joined"] == 20
    assert cdn["requests"]["errors"] == 0 and cdn["requests"]["media"] > 0
    origin = cdn["tiers"]["origin"]
    assert origin["objects"] > 0 and origin["max_per_object"] == 1
    assert origin["objects_missing"] == 0
    assert cdn["first_byte_after_origin_ms"]["count"] > 0
    assert cdn["first_byte_after_origin_ms"]["p99"] is not None
    assert summary["probe"]["objects"] > 0
    assert all(Path(p).is_file() for p in summary["plots"])
