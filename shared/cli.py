"""``tiercdn``: the umbrella command. ``tiercdn up`` runs a whole local CDN.

``up`` starts origin, regional and edge as child processes (each its own
CPU-bound event loop, as in production), makes the sample title on first run,
waits until every tier answers its health check, prints what to play, and on
Ctrl-C (SIGINT) or SIGTERM stops the edge, then the regional, then the origin.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from shared.settings import add_arguments, from_namespace, option, size_field
from shared.topology import TIERS, Topology, TopologyError

__all__ = ["main"]

_STARTUP_SECONDS = 30.0
_STOP_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class UpSettings:
    """Flags of ``tiercdn up``."""

    library: str = option("library", "library directory (the sample title is made here)")
    host: str = option("127.0.0.1", "address every tier listens on")
    edge_port: int = option(8080, "edge port")
    regional_port: int = option(8081, "regional port")
    origin_port: int = option(8082, "origin port")
    admin_offset: int = option(1000, "admin port of each tier = its port + this")
    edge_cache_bytes: int = size_field("256MiB", "edge memory store budget")
    regional_cache_bytes: int = size_field("1GiB", "regional memory store budget")
    sample_duration: float = option(60.0, "seconds of the sample title made on first run")
    access_log: bool = option(False, "each tier logs one line per request")

    def admin(self, port: int) -> int:
        return port + self.admin_offset


def _has_title(library: Path) -> bool:
    return library.is_dir() and any(library.glob("*/*.mpd"))


def _make_sample(library: Path, duration: float) -> None:
    print(f"making the sample title in {library / 'sample'} (first run only)...", flush=True)
    args = ["origin", "sample", "--out", str(library / "sample"), "--duration", str(duration)]
    if subprocess.call([sys.executable, "-m", *args], stdin=subprocess.DEVNULL) != 0:
        raise SystemExit("error: could not make the sample title")


def _print_ready(top: Topology, started: float) -> None:
    with urllib.request.urlopen(top.origin.url + "/", timeout=5) as resp:
        titles = json.load(resp)
    print(f"\ntiercdn is up in {time.monotonic() - started:.1f}s", flush=True)
    for title in titles:
        print(f"  play:      {top.edge.url}{title['manifest']}")
    for tier in reversed(top.tiers.values()):
        print(f"  {tier.name + ':':<10} {tier.url}/   admin {tier.admin_url}/stats")
    print("  metrics:   <admin>/metrics     Ctrl-C stops all three\n", flush=True)


def up(settings: UpSettings) -> int:
    """Run the three tiers until SIGINT/SIGTERM or until one of them dies."""
    started = time.monotonic()
    library = Path(settings.library)
    if not _has_title(library):
        library.mkdir(parents=True, exist_ok=True)
        _make_sample(library, settings.sample_duration)
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    s = settings
    ports = {
        name: (port, s.admin(port))
        for name, port in zip(TIERS, (s.origin_port, s.regional_port, s.edge_port), strict=True)
    }
    try:
        top = Topology.launch(
            library,
            ports=ports,
            host=s.host,
            edge_cache=str(s.edge_cache_bytes),
            regional_cache=str(s.regional_cache_bytes),
            extra_args=("--access-log",) if s.access_log else (),
            ready_seconds=_STARTUP_SECONDS,
        )
    except TopologyError as exc:
        raise SystemExit(f"error: {exc}") from None
    try:
        _print_ready(top, started)
        while not stopping:
            top.check_alive()
            time.sleep(0.2)
        print("stopping edge, regional, origin...", flush=True)
        return 0
    except TopologyError as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        top.stop(_STOP_SECONDS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tiercdn", description="tiercdn: a local three-tier CDN")
    verbs = parser.add_subparsers(dest="verb", required=True)
    up_parser = verbs.add_parser("up", help="run origin, regional and edge with a sample title")
    add_arguments(up_parser, UpSettings)
    ns = parser.parse_args(argv)
    if ns.verb == "up":
        return up(from_namespace(UpSettings, ns))
    parser.error(f"unknown verb {ns.verb}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
