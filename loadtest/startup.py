"""Startup time of ``tiercdn up``: launch to the first byte of the manifest via the edge.

``python -m loadtest.startup`` launches ``tiercdn up`` (``python -m
shared.ops.cli up``) on free loopback ports and polls the edge for the title's
MPD until its first body byte arrives. Warm runs use a library that already
holds a title (``--library``, or one sample made once into a temp folder);
``--cold`` runs also start from an empty library, so they include making the
sample with ffmpeg. Each run ends with SIGINT, and ``tiercdn up`` must exit 0
within ``--stop-seconds``.

Invariants:

- Bounded: every poll loop stops at its deadline (``--timeout``, or
  ``--cold-timeout`` for cold runs), every wait has a timeout, and the run's
  process group is killed if anything outlives it. Only loopback.
- Ports: three ports the OS reports free, and an admin offset for which the
  three admin ports (port + offset) are free too, found with a seeded RNG.
- The clock starts just before ``Popen`` and stops when the first byte of a
  200 body is read; refused connections and 5xx from a tier that is not up
  yet are retried every ``--interval``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from loadtest.report import config_of, write_summary
from loadtest.titles import find_titles, make_title
from loadtest.topology import HOST, free_ports

__all__ = ["main", "run_once", "up_ports"]

SEED = 20240601
_UP_IN = re.compile(r"tiercdn is up in ([\d.]+)s")


def up_ports(rng: random.Random, attempts: int = 200) -> tuple[list[int], int]:
    """Edge, regional and origin ports plus an admin offset whose ports are free too."""
    ports = free_ports(3)
    for _ in range(attempts):
        offset = rng.randint(1, 20000)
        admin = [p + offset for p in ports]
        if all(p < 65536 and p not in ports and _bindable(p) for p in admin):
            return ports, offset
    raise RuntimeError("no admin offset with three free ports")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def first_byte(port: int, path: str, deadline: float, interval: float) -> tuple[float, int]:
    """Poll ``GET path`` on the edge until a 200 body's first byte; (time, attempts)."""
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        conn = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            if resp.status == 200 and resp.read(1):
                return time.monotonic(), attempts
        except (OSError, http.client.HTTPException):
            pass  # not listening yet, or reset while a tier starts
        finally:
            conn.close()
        time.sleep(interval)
    raise TimeoutError(f"no manifest from the edge after {attempts} attempts")


def run_once(
    library: Path,
    manifest: str,
    *,
    rng: random.Random,
    sample_duration: float,
    timeout: float,
    interval: float,
    stop_seconds: float,
) -> dict[str, Any]:
    """One launch of ``tiercdn up``: seconds to first byte, its own 'up in', exit code."""
    (edge, regional, origin), offset = up_ports(rng)
    cmd = [sys.executable, "-m", "shared.ops.cli", "up", "--library", str(library)]
    cmd += ["--edge-port", str(edge), "--regional-port", str(regional)]
    cmd += ["--origin-port", str(origin), "--admin-offset", str(offset)]
    cmd += ["--sample-duration", str(sample_duration)]
    cmd += ["--cache-dir", str(library.parent / "tiercdn-startup-cache")]
    with tempfile.TemporaryFile() as out:
        started = time.monotonic()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: SIGINT reaches only it; cleanup by group
        )
        try:
            got, attempts = first_byte(edge, manifest, started + timeout, interval)
            proc.send_signal(signal.SIGINT)
            try:
                code: int | None = proc.wait(stop_seconds)
            except subprocess.TimeoutExpired:
                code = None
        finally:
            leftovers = _kill_group(proc)
        out.seek(0)
        text = out.read().decode(errors="replace")
    up_in = _UP_IN.search(text)
    return {
        "seconds": round(got - started, 3),
        "up_reported_seconds": float(up_in[1]) if up_in else None,
        "attempts": attempts,
        "exit_code": code,
        "leftover_processes": leftovers,
    }


def _kill_group(proc: subprocess.Popen[bytes]) -> bool:
    """Kill whatever is left of the run's process group; True if something was."""
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    return True


def _make_sample(library: Path, duration: float) -> float:
    """Make the sample title in ``library/sample``; seconds it took."""
    print(f"making a {duration:g} s sample title in {library / 'sample'} ...", flush=True)
    return make_title(library / "sample", duration, timeout=900)


def manifest_of(library: Path) -> str | None:
    """The URL path of the first title's MPD in ``library``, if it holds one."""
    titles = find_titles(library)
    return titles[0] if titles else None


LibraryFor = Callable[[], contextlib.AbstractContextManager[Any]]  # yields a library dir


def _empty_library() -> contextlib.AbstractContextManager[str]:
    return tempfile.TemporaryDirectory(prefix="tiercdn-cold-")


def _series(
    kind: str, runs: int, library_for: LibraryFor, manifest: str, ns: argparse.Namespace
) -> list[dict[str, Any]]:
    rng = random.Random(ns.seed)
    results = []
    timeout = ns.cold_timeout if kind == "cold" else ns.timeout
    for i in range(runs):
        with library_for() as library:
            res = run_once(
                Path(library),
                manifest,
                rng=rng,
                sample_duration=ns.sample_duration,
                timeout=timeout,
                interval=ns.interval,
                stop_seconds=ns.stop_seconds,
            )
        results.append(res)
        up = res["up_reported_seconds"]
        print(
            f"  {kind} run {i + 1}/{runs}: first MPD byte after {res['seconds']:.3f} s "
            f"('up in' {up if up is not None else '?'} s, {res['attempts']} polls), "
            f"exit code {res['exit_code']}"
            + ("; LEFTOVER PROCESSES KILLED" if res["leftover_processes"] else ""),
            flush=True,
        )
    return results


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "median_seconds": round(statistics.median(r["seconds"] for r in results), 3),
        "runs": results,
        "all_exited_0": all(r["exit_code"] == 0 for r in results),
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.startup",
        description="Seconds from launching 'tiercdn up' to the first MPD byte via the edge.",
    )
    p.add_argument("--library", type=Path, help="library with a title (default: make one)")
    p.add_argument("--sample-duration", type=float, default=60.0, help="sample seconds")
    p.add_argument("--runs", type=int, default=3, help="runs of each kind (default 3)")
    p.add_argument("--cold", action="store_true", help="also time first runs (empty library)")
    p.add_argument("--timeout", type=float, default=120.0, help="warm run deadline, seconds")
    p.add_argument("--cold-timeout", type=float, default=600.0, help="cold run deadline")
    p.add_argument("--interval", type=float, default=0.01, help="poll interval, seconds")
    p.add_argument("--stop-seconds", type=float, default=15.0, help="SIGINT to exit deadline")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the port offset choice")
    p.add_argument("--json", type=Path, default=Path("reports/startup.json"), help="summary")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if ns.runs < 1 or ns.timeout <= 0 or ns.interval <= 0:
        raise SystemExit("error: --runs, --timeout and --interval must be positive")
    summary: dict[str, Any] = {"scenario": "startup", "config": config_of(ns)}
    with contextlib.ExitStack() as stack:
        library = ns.library
        if library is None:
            library = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tiercdn-")))
        try:
            if manifest_of(library) is None:
                summary["sample_seconds"] = round(_make_sample(library, ns.sample_duration), 1)
            manifest = manifest_of(library)
            assert manifest is not None
            print(f"warm: library {library}, manifest {manifest}", flush=True)
            warm = _series("warm", ns.runs, lambda: contextlib.nullcontext(library), manifest, ns)
            summary["warm"] = _summary(warm)
            if ns.cold:
                cold = _series("cold", ns.runs, _empty_library, "/sample/manifest.mpd", ns)
                summary["cold"] = _summary(cold)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print()
    for kind in ("warm", "cold"):
        if kind in summary:
            s = summary[kind]
            codes = [r["exit_code"] for r in s["runs"]]
            print(
                f"{kind:>5}: median {s['median_seconds']:.3f} s to the first MPD byte "
                f"over {len(codes)} runs; exit codes after SIGINT {codes}"
            )
    write_summary(ns.json, summary)
    ok = all(summary[k]["all_exited_0"] for k in ("warm", "cold") if k in summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
