"""Smoke test of the flash-crowd load test: a tiny crowd runs end to end on a real title."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.dashclient import media_clock, media_path, segment_count
from loadtest.flashcrowd import peak_rate
from shared.dash import parse_mpd


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_flashcrowd_tiny_crowd_prewarmed_with_prefetch(
    sample_library: Path, tmp_path: Path
) -> None:
    """flashcrowd, 10 viewers, pre-warm + prefetch only: exit 0 and a sane JSON summary."""
    report = tmp_path / "flashcrowd.json"
    args = ["--library", str(sample_library), "--only", "prewarm+prefetch", "--viewers", "10"]
    args += ["--ramp", "0.5", "--speedup", "10", "--deadline", "20", "--json", str(report)]
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.flashcrowd", *args],
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "targets:" in done.stdout
    summary = json.loads(report.read_text())
    assert list(summary["combinations"]) == ["prewarm+prefetch"]
    row = summary["combinations"]["prewarm+prefetch"]
    crowd = row["crowd"]
    assert crowd["errors"] == 0, crowd["error_examples"]
    assert crowd["viewers_finished"] == 10
    assert crowd["segments"] == crowd["segments_ok"] == 10 * 3 * 2  # 6 s title: 3 slots x 2
    assert crowd["segment_ttfb_ms"]["p50"] is not None
    assert row["prewarm"]["method"] in ("admin-api", "fallback-get")
    assert row["prewarm"]["errors"] == 0
    assert row["origin"]["requests_prewarm"] > 0
    assert row["prefetch"] == 2
    # the baseline did not run: the cuts are not judged, the error count is
    verdicts = {g["target"]: g["pass"] for g in summary["targets"]}
    assert sorted(verdicts.values(), key=str) == [None, None, True]
    assert summary["pass"] is True


@pytest.mark.slow
def test_flashcrowd_media_path_names_the_packagers_files(sample_library: Path) -> None:
    """media_path expands every representation's template to files the packager wrote."""
    manifest = sample_library / "sample" / "manifest.mpd"
    presentation = parse_mpd(manifest.read_bytes(), "/sample/manifest.mpd")
    for stream in presentation.streams:
        for index in range(segment_count(stream)):
            assert (sample_library / media_path(stream, index).lstrip("/")).is_file()
        assert media_clock(stream, 3) == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.parametrize(
    ("samples", "window", "peak"),
    [
        ([], 1.0, None),
        ([(0.0, 5.0)], 1.0, None),
        ([(0.0, 0.0), (0.5, 2.0)], 1.0, 4.0),  # shorter than the window: the mean rate
        ([(0.0, 0.0), (0.5, 0.0), (1.0, 1.0), (1.5, 9.0), (2.0, 10.0)], 1.0, 9.0),
        ([(0.0, 0.0), (1.0, 3.0), (2.0, 3.0)], 1.0, 3.0),
    ],
)
def test_flashcrowd_peak_rate_over_a_window(
    samples: list[tuple[float, float]], window: float, peak: float | None
) -> None:
    """peak_rate is the largest counter increase per second between samples >= window apart."""
    assert peak_rate(samples, window) == peak
