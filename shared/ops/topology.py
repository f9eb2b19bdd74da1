"""The three tiers (origin → regional → edge) as child processes.

Used by ``tiercdn up`` (fixed ports, output to the terminal) and by the
benchmarks (free ports, output to log files). Each tier is its own process,
as in production: one event loop per core, and a load generator never shares
a node's loop.

Invariants:

- ``launch`` starts a tier only once the one before it answers ``/healthz``
  (an edge started before its regional listens would open its breaker and
  send the first requests past the shield), waiting at most ``ready_seconds``
  in all; ``stop`` sends SIGTERM edge first, origin last, and kills a tier that
  has not stopped after ``stop_seconds`` (a node stops accepting on SIGTERM
  and lets in-flight responses finish: ``shared.service.run.serve``).
- ``respawn`` starts a dead tier again with the same command line.
- With ``handoff`` (``tiercdn up``), the supervisor binds each tier's two
  listening sockets itself and hands them to the tier
  (``shared.service.handoff``). ``replace`` is the graceful restart: a new
  process on the same sockets, then the old one drains; nothing waiting in the
  accept queue is lost. A tier that dies has its sockets closed at once
  (``release``: clients are refused, the edge's fallback takes over, instead of
  waiting in a queue nobody reads); ``respawn`` binds them again.
- A tier writing to a log file (never an unread pipe, which would block a
  chatty child) has its log tail quoted when it dies or never becomes healthy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
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

from shared.service.handoff import LISTEN_FDS_ENV, READY_FD_ENV, listen_fds

__all__ = [
    "HOST",
    "TIERS",
    "Tier",
    "Topology",
    "TopologyError",
    "answers",
    "busy_port",
    "free_ports",
]

HOST = "127.0.0.1"
TIERS = ("origin", "regional", "edge")  # start order; stop order is the reverse
_POLL_SECONDS = 0.05
_LOG_TAIL_BYTES = 2000


class TopologyError(RuntimeError):
    """A tier died, or did not become healthy in time."""


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct free ports: all are held bound at once, so none repeats."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def busy_port(ports: list[int], host: str = HOST) -> int | None:
    """The first of ``ports`` that cannot be bound on ``host`` now (as a server binds
    it, with SO_REUSEADDR), or None if all are free."""
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return port
    return None


def answers(url: str) -> bool:
    """Does ``url`` answer 200 right now?"""
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclasses.dataclass
class Tier:
    """One running tier: its process, its two ports and where its output goes."""

    name: str
    host: str
    port: int
    admin_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path | None  # None: the tier writes to our own stdout/stderr
    argv: list[str] = dataclasses.field(default_factory=list)  # for respawn
    socks: list[socket.socket] = dataclasses.field(default_factory=list)  # handed over

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self) -> str:
        if self.log_path is None:
            return "(see its output above)"
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-_LOG_TAIL_BYTES:].decode(errors="replace")

    def __repr__(self) -> str:
        state = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"<Tier {self.name} {self.url} admin {self.admin_url} pid {self.pid} {state}>"


class Topology:
    """origin → regional → edge, each a child process."""

    def __init__(self) -> None:
        self.tiers: dict[str, Tier] = {}  # in start order
        self.handoff = False  # bind listening sockets here and hand them over
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

    @classmethod
    def launch(
        cls,
        library: Path,
        *,
        ports: dict[str, tuple[int, int]],
        host: str = HOST,
        edge_cache: str | None = "256MiB",
        regional_cache: str | None = "1GiB",
        log_dir: Path | None = None,
        extra_args: tuple[str, ...] = (),
        tier_args: dict[str, tuple[str, ...]] | None = None,
        cache_dir: Path | None = None,
        ready_seconds: float = 30.0,
        handoff: bool = False,
    ) -> Topology:
        """Start every tier on ``ports[tier] = (port, admin_port)`` and wait until each
        is healthy; if that fails, the tiers already started are stopped.

        ``extra_args`` go to every tier, ``tier_args[name]`` to that tier only
        (e.g. ``{"origin": ("--fault-delay", "200ms")}``); a budget of None passes no
        ``--cache-bytes`` (the tier's ``--config`` file or default decides). The
        regional keeps its disk tier in ``cache_dir/regional-1`` (default: its own
        default, ``./cache``). With ``handoff`` the listening sockets are bound here
        and handed to the tiers (an ``OSError`` if one cannot be bound)."""
        top = cls()
        top.handoff = handoff
        common = ["--host", host, *extra_args]
        own = tier_args or {}
        try:
            origin = ["origin", "serve", "--library", str(library), *common, *own.get("origin", ())]
            top._spawn("origin", origin, host, ports["origin"], log_dir)
            deadline = time.monotonic() + ready_seconds
            top.wait_healthy(deadline)
            for name, parent, budget in (
                ("regional", "origin", regional_cache),
                ("edge", "regional", edge_cache),
            ):
                args = [name, "--upstream", top.tiers[parent].url]
                args += ["--cache-bytes", budget] if budget is not None else []
                args += ["--name", f"{name}-1", *common, *own.get(name, ())]
                if name == "regional" and cache_dir is not None:
                    args += ["--disk-path", str(cache_dir / "regional-1")]
                if name == "edge":  # with the regional down, go to the origin directly
                    args += ["--fallback", top.tiers["origin"].url]
                top._spawn(name, args, host, ports[name], log_dir)
                top.wait_healthy(deadline)  # the tiers before it are healthy already
        except BaseException:
            top.stop()
            raise
        return top

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
        tier_args: dict[str, tuple[str, ...]] | None = None,
    ) -> Iterator[Topology]:
        """Launch on free loopback ports, logs in a temporary folder; stop at the end."""
        with tempfile.TemporaryDirectory(prefix="tiercdn-topology-") as logs:
            free = iter(free_ports(2 * len(TIERS)))
            top = cls.launch(
                library,
                ports={name: (next(free), next(free)) for name in TIERS},
                edge_cache=edge_cache,
                regional_cache=regional_cache,
                log_dir=Path(logs),
                extra_args=("--log-level", log_level),
                tier_args=tier_args,
                cache_dir=Path(logs) / "cache",
                ready_seconds=ready_seconds,
            )
            try:
                yield top
            finally:
                top.stop(stop_seconds)

    def _spawn(
        self, name: str, args: list[str], host: str, ports: tuple[int, int], log_dir: Path | None
    ) -> None:
        port, admin_port = ports
        argv = [sys.executable, "-m", *args, "--port", str(port), "--admin-port", str(admin_port)]
        log_path = None if log_dir is None else log_dir / f"{name}.log"
        socks = _bind(host, (port, admin_port)) if self.handoff else []
        try:
            proc = _start(argv, log_path, "wb", host, socks)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        self.tiers[name] = Tier(name, host, port, admin_port, proc, log_path, argv, socks)

    def respawn(self, name: str) -> Tier:
        """Start the (dead) tier ``name`` again with the same command line; its log
        file, if any, is appended to. With ``handoff`` its sockets are bound again
        (``OSError`` if a port was taken meanwhile)."""
        tier = self.tiers[name]
        assert tier.proc.poll() is not None, f"{name} is still running"
        if self.handoff and not tier.socks:
            tier.socks = _bind(tier.host, (tier.port, tier.admin_port))
        tier.proc = _start(tier.argv, tier.log_path, "ab", tier.host, tier.socks)
        return tier

    def release(self, name: str) -> None:
        """Close the sockets held for ``name`` (dead: connect attempts are refused at
        once rather than queued for nobody)."""
        tier = self.tiers[name]
        for sock in tier.socks:
            sock.close()
        tier.socks = []

    def replace(self, name: str, ready_seconds: float) -> subprocess.Popen[bytes] | None:
        """Graceful restart of ``name`` (``handoff`` only): start a new process on the
        same sockets (and the same command line: its ``--config`` file has changed),
        wait until it says it serves, then SIGTERM the old one, which stops accepting
        and drains. The old process is returned (the caller waits for it); None if
        the new one did not come up, which is then killed: the old one serves on."""
        tier = self.tiers[name]
        assert tier.socks, "replace needs handoff sockets"
        read_end, write_end = os.pipe()
        try:
            new = _start(tier.argv, tier.log_path, "ab", tier.host, tier.socks, write_end)
        finally:
            os.close(write_end)
        try:
            ok = _wait_ready(read_end, new, ready_seconds)
        finally:
            os.close(read_end)
        if not ok:
            new.kill()
            new.wait()
            return None
        old, tier.proc = tier.proc, new
        if old.poll() is None:
            old.send_signal(signal.SIGTERM)
        return old

    def wait_healthy(self, deadline: float) -> None:
        """Poll each tier's ``/healthz`` until it answers 200, or raise ``TopologyError``."""
        for tier in self.tiers.values():
            while not answers(tier.admin_url + "/healthz"):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise TopologyError(
                        f"{tier.name} not healthy in time; log tail:\n{tier.log_tail()}"
                    )
                time.sleep(_POLL_SECONDS)
        self.check_alive()  # each answer came from a process we started, still running

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
            self.stop_tier(tier.name, stop_seconds)

    def stop_tier(self, name: str, stop_seconds: float = 10.0) -> bool:
        """SIGTERM ``name`` and wait up to ``stop_seconds`` for it to drain and exit,
        then SIGKILL it. True if it exited by itself."""
        tier = self.tiers[name]
        if tier.proc.poll() is None:
            tier.proc.send_signal(signal.SIGTERM)
        drained = True
        try:
            tier.proc.wait(stop_seconds)
        except subprocess.TimeoutExpired:
            drained = False
            tier.proc.kill()
            tier.proc.wait()
        self.exit_codes[name] = tier.proc.returncode
        self.release(name)
        return drained

    def __repr__(self) -> str:
        return f"<Topology {list(self.tiers.values())!r}>"


def _popen(
    argv: list[str],
    log_path: Path | None,
    mode: str,
    *,
    env: dict[str, str] | None = None,
    pass_fds: list[int] | None = None,
) -> subprocess.Popen[bytes]:
    with contextlib.ExitStack() as stack:  # the child keeps its own copy of the descriptor
        out = stack.enter_context(log_path.open(mode)) if log_path else None
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # a terminal's Ctrl-C reaches us only: we stop tiers in order
            env=env,
            pass_fds=pass_fds or (),
        )


def _start(
    argv: list[str],
    log_path: Path | None,
    mode: str,
    host: str,
    socks: list[socket.socket],
    ready_fd: int | None = None,
) -> subprocess.Popen[bytes]:
    """A tier process, handed ``socks`` (bound on ``host``) and ``ready_fd``, if any."""
    env, fds = dict(os.environ), [sock.fileno() for sock in socks]
    env.pop(LISTEN_FDS_ENV, None)
    env.pop(READY_FD_ENV, None)
    if socks:
        env[LISTEN_FDS_ENV] = listen_fds({(host, s.getsockname()[1]): s.fileno() for s in socks})
    if ready_fd is not None:
        env[READY_FD_ENV] = str(ready_fd)
        fds.append(ready_fd)
    return _popen(argv, log_path, mode, env=env, pass_fds=fds)


def _bind(host: str, ports: tuple[int, ...]) -> list[socket.socket]:
    """Listening sockets on ``host:port`` for each port, as a node binds them (an
    ``OSError`` for a busy port, the ones already bound closed)."""
    socks: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(4096)  # a node's backlog (shared.service.listener)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def _wait_ready(fd: int, proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Until ``seconds`` pass: True when ``ready`` arrives on ``fd``, False if ``proc``
    exits or closes the pipe without saying it."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([fd], [], [], min(left, _POLL_SECONDS * 4))
        if readable:
            return os.read(fd, 64).startswith(b"ready")
        if proc.poll() is not None:
            return False
    return False
