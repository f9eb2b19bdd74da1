"""``python -m origin`` as a subprocess: sample, package and serve, and their failures."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import imageio_ffmpeg
import pytest

from shared.ops.topology import free_ports

REPO = Path(__file__).resolve().parents[2]


def origin_cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "origin", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_origin_cli_sample_makes_a_title(tmp_path: Path) -> None:
    """``sample`` writes a whole title folder (MPD, init and media segments) and nothing else."""
    out = tmp_path / "library" / "clip"
    proc = origin_cli("sample", "--out", str(out), "--duration", "2", "--ladder", "90:100k")
    assert proc.returncode == 0, proc.stderr
    assert "100%" in proc.stderr
    assert "manifest.mpd" in proc.stdout
    mpd = (out / "manifest.mpd").read_text()
    assert 'mediaPresentationDuration="PT2' in mpd
    assert 'media="chunk-$RepresentationID$-$Number%05d$.m4s"' in mpd
    assert {"init-0.mp4", "init-1.mp4", "chunk-0-00001.m4s"} <= {p.name for p in out.iterdir()}
    assert [p.name for p in (tmp_path / "library").iterdir()] == ["clip"]  # no temp left


def test_origin_cli_package_video_without_audio(tmp_path: Path) -> None:
    """``package`` keeps rungs no taller than the source and skips audio it doesn't have."""
    source = tmp_path / "in.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"]
        + ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(source)],
        check=True,
        timeout=60,
    )
    out = tmp_path / "library" / "mine"
    proc = origin_cli("package", str(source), "--out", str(out), "--ladder", "120:150k,480:900k")
    assert proc.returncode == 0, proc.stderr
    mpd = (out / "manifest.mpd").read_text()
    assert 'height="120"' in mpd and 'width="160"' in mpd
    assert 'height="480"' not in mpd
    assert 'contentType="audio"' not in mpd


def test_origin_cli_package_missing_input_fails_in_one_line(tmp_path: Path) -> None:
    """A missing input is one ``error:`` line and exit 1, and no title folder."""
    proc = origin_cli("package", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "t"))
    assert proc.returncode == 1
    assert_one_line_error(proc, "input not found", "nope.mp4")
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    "content",
    [b"this is not a video\n", random.Random(7).randbytes(4096), b""],
    ids=["text", "noise", "empty"],
)
def test_origin_cli_package_garbage_fails_in_one_line(tmp_path: Path, content: bytes) -> None:
    """An undecodable input is one ``error:`` line with ffmpeg's reason, exit 1, nothing left."""
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(content)
    proc = origin_cli("package", str(garbage), "--out", str(tmp_path / "lib" / "t"))
    assert proc.returncode == 1
    assert_one_line_error(proc, "cannot read", "Invalid data")
    assert not (tmp_path / "lib").exists() or not any((tmp_path / "lib").iterdir())


def test_origin_cli_sample_refuses_to_replace_a_non_title(tmp_path: Path) -> None:
    """``--out`` pointing at a non-empty folder that is not a title is left alone."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    proc = origin_cli("sample", "--out", str(precious), "--duration", "1", "--ladder", "90:100k")
    assert proc.returncode == 1
    assert_one_line_error(proc, "not a title folder")
    assert [p.name for p in precious.iterdir()] == ["keep.txt"]


def test_origin_cli_serve_missing_library_exits_2(tmp_path: Path) -> None:
    """``serve`` without its library directory says so and exits 2 before binding anything."""
    missing = tmp_path / "no-such-library"
    proc = origin_cli("serve", "--library", str(missing), "--port", "0", "--admin-port", "0")
    assert proc.returncode == 2
    assert_one_line_error(proc, "library directory not found", str(missing))


def test_origin_cli_serve_rejects_bad_settings(sample_library: Path) -> None:
    """Invalid settings (here from the environment) are one ``error:`` line."""
    proc = origin_cli("serve", "--library", str(sample_library), TIERCDN_PORT="70000")
    assert_one_line_error(proc, "ports must be between 0 and 65535")


def test_origin_cli_serve_runs_until_sigterm(sample_library: Path) -> None:
    """``serve`` prints a ready line, serves the library, and stops cleanly on SIGTERM."""
    port, admin_port = free_ports(2)
    env = {**os.environ, "TIERCDN_NAME": "origin-cli", "TIERCDN_ADMIN_PORT": str(admin_port)}
    args = ["serve", "--library", str(sample_library), "--port", str(port)]
    with subprocess.Popen(
        [sys.executable, "-m", "origin", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            assert f"origin-cli ready on http://127.0.0.1:{port}/" in ready
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
                assert json.load(resp)[0]["manifest"] == "/sample/manifest.mpd"
            stats_url = f"http://127.0.0.1:{admin_port}/stats"
            with urllib.request.urlopen(stats_url, timeout=10) as resp:
                assert json.load(resp)["name"] == "origin-cli"
        finally:
            proc.send_signal(signal.SIGTERM)
            returncode = proc.wait(timeout=20)
        assert returncode == 0
