"""``python -m loadtest.viewers steady --protocol mix``, small: DASH and HLS viewers of the
sample title through a real topology; one origin request per segment object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(60)
def test_loadtest_viewers_mix_plays_both_protocols_over_one_origin_fetch_per_segment(
    sample_library: Path, tmp_path: Path
) -> None:
    """8 viewers, half DASH, half HLS, on the 6 s sample: 0 errors, both protocols play
    it through, and each segment object reached the origin exactly once, most of them
    asked for by both protocols."""
    report = tmp_path / "viewers-steady.json"
    args = ["steady", "--library", str(sample_library), "--titles", "1", "--viewers", "8"]
    args += ["--protocol", "mix", "--duration", "8", "--ramp", "1", "--speedup", "10"]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.viewers", *args, "--json", str(report), "--no-plots"],
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "origin: 1 request per segment object" in done.stdout
    s = json.loads(report.read_text())
    assert s["requests"]["errors"] == 0, s["requests"]["error_examples"]
    assert s["titles"] == {"/sample/manifest.mpd": 4, "/sample/master.m3u8": 4}
    for protocol in ("dash", "hls"):
        p = s["protocols"][protocol]
        assert p["viewers"]["finished"] == 4, (protocol, p["viewers"])
        assert p["requests"]["media"] == 4 * 3 * 2, protocol  # 3 slots of video + audio
        assert p["requests"]["errors"] == 0 and p["startup_ms"]["count"] == 4
    origin = s["origin_objects"]
    assert origin["all"]["objects"] >= 3 * 2 + 2  # 3 video + 3 audio segments, 2 inits
    assert origin["all"]["max_per_object"] == 1 and origin["all"]["objects_missing"] == 0
    assert origin["both"]["objects"] > 0 and origin["both"]["max_per_object"] == 1
    assert origin["manifests"]["mpd"] >= 1 and origin["manifests"]["playlists"] >= 2
