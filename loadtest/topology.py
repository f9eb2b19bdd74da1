"""A three-tier topology (origin → regional → edge) as child processes, for load tests.

Each tier is its own process (``sys.executable -m origin|regional|edge``), as
in production: a benchmark's load generator never shares an event loop or a
core's time slice accounting with the node it measures.

Invariants:

- Only loopback: every tier listens on ``127.0.0.1``, on ports the OS handed
  out (``free_port`` binds port 0), never fixed ones.
- Bounded: ``Topology.start`` waits at most ``ready_seconds`` for every
  ``/healthz``; on exit each tier gets SIGTERM (edge first, origin last) and
  is killed if it has not stopped after ``stop_seconds``.
- A tier's stdout and stderr go to a log file in a temporary folder (never an
  unread pipe, which would block a chatty child); its tail is quoted when the
  tier dies or does not become healthy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "HOST",
    "Tier",
    "Topology",
    "TopologyError",
    "free_port",
    "free_ports",
    "metrics",
    "rss_bytes",
]

HOST = "127.0.0.1"
_POLL_SECONDS = 0.05
_LOG_TAIL_BYTES = 2000


class TopologyError(RuntimeError):
    """A tier died, or did not become healthy in time."""


def free_port(host: str = HOST) -> int:
    """A TCP port the OS reports free on ``host`` (bind to port 0, then release it)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct free ports: all are held bound at once, so none repeats."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def rss_bytes(pid: int, field: str = "VmRSS") -> int | None:
    """``VmRSS`` (or ``VmHWM``, the peak) of ``pid`` from ``/proc``, or None if unavailable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    return None


def metrics(admin_url: str, timeout: float = 5.0) -> dict[str, float]:
    """Every sample of ``<admin_url>/metrics``, keyed ``name{label="value",...}``."""
    with urllib.request.urlopen(admin_url.rstrip("/") + "/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@dataclasses.dataclass
class Tier:
    """One running tier: its process, its two ports and its log file."""

    name: str
    port: int
    admin_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-_LOG_TAIL_BYTES:].decode(errors="replace")

    def __repr__(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"<Tier {self.name} {self.url} admin {self.admin_url} pid {self.pid} {state}>"


class Topology:
    """origin → regional → edge, each a child process on free loopback ports."""

    def __init__(self, tiers: dict[str, Tier]) -> None:
        self.tiers = tiers  # "origin", "regional", "edge", in start order
        self.exit_codes: dict[str, int | None] = {}  # filled in by stop()

    @property
    def origin(self) -> Tier:
        return self.tiers["origin"]

    @property
    def regional(self) -> Tier:
        return self.tiers["regional"]

    @property
    def edge(self) -> Tier:
        return self.tiers["edge"]

    @property
    def origin_url(self) -> str:
        return self.origin.url

    @property
    def regional_url(self) -> str:
        return self.regional.url

    @property
    def edge_url(self) -> str:
        return self.edge.url

    @property
    def origin_admin_url(self) -> str:
        return self.origin.admin_url

    @property
    def regional_admin_url(self) -> str:
        return self.regional.admin_url

    @property
    def edge_admin_url(self) -> str:
        return self.edge.admin_url

    @classmethod
    @contextlib.contextmanager
    def start(
        cls,
        library: Path,
        *,
        edge_cache: str = "256MiB",
        regional_cache: str = "1GiB",
        ready_seconds: float = 30.0,
        stop_seconds: float = 10.0,
        log_level: str = "WARNING",
    ) -> Iterator[Topology]:
        """Start the three tiers serving ``library``; stop them when the block ends."""
        with tempfile.TemporaryDirectory(prefix="tiercdn-topology-") as logs:
            top = cls({})
            ports = iter(free_ports(6))
            common = ["--host", HOST, "--log-level", log_level]
            try:
                top._spawn(
                    Path(logs),
                    "origin",
                    ["origin", "serve", "--library", str(library), *common],
                    next(ports),
                    next(ports),
                )
                for name, parent, budget in (
                    ("regional", "origin", regional_cache),
                    ("edge", "regional", edge_cache),
                ):
                    args = [name, "--upstream", top.tiers[parent].url, "--cache-bytes", budget]
                    args += ["--name", f"{name}-1", *common]
                    top._spawn(Path(logs), name, args, next(ports), next(ports))
                top.wait_healthy(time.monotonic() + ready_seconds)
                yield top
            finally:
                top.stop(stop_seconds)

    def _spawn(self, logs: Path, name: str, args: list[str], port: int, admin_port: int) -> None:
        log_path = logs / f"{name}.log"
        ports = ["--port", str(port), "--admin-port", str(admin_port)]
        log: IO[bytes]
        with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", *args, *ports],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.tiers[name] = Tier(name, port, admin_port, proc, log_path)

    def wait_healthy(self, deadline: float) -> None:
        """Poll each tier's ``/healthz`` until it answers 200, or raise ``TopologyError``."""
        for tier in self.tiers.values():
            while not _answers(tier.admin_url + "/healthz"):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise TopologyError(
                        f"{tier.name} not healthy in time; log tail:\n{tier.log_tail()}"
                    )
                time.sleep(_POLL_SECONDS)

    def check_alive(self) -> None:
        """Raise ``TopologyError`` if any tier has exited."""
        for tier in self.tiers.values():
            if tier.proc.poll() is not None:
                raise TopologyError(
                    f"{tier.name} exited with status {tier.proc.returncode}; "
                    f"log tail:\n{tier.log_tail()}"
                )

    def stop(self, stop_seconds: float = 10.0) -> None:
        """SIGTERM edge, regional, origin in turn; kill a tier that outlives ``stop_seconds``."""
        for tier in reversed(self.tiers.values()):
            if tier.proc.poll() is None:
                tier.proc.send_signal(signal.SIGTERM)
            try:
                tier.proc.wait(stop_seconds)
            except subprocess.TimeoutExpired:
                tier.proc.kill()
                tier.proc.wait()
            self.exit_codes[tier.name] = tier.proc.returncode

    def __repr__(self) -> str:
        return f"<Topology {list(self.tiers.values())!r}>"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False
