"""``tiercdn up``: a whole local CDN, supervised; ``tiercdn reload``: reload it.

``up`` starts origin, regional and edge as child processes (each its own
CPU-bound event loop, as in production), makes the sample title on first run,
waits until every tier answers its health check, prints what to play, and on
Ctrl-C (SIGINT) or SIGTERM stops the edge, then the regional, then the origin,
each draining up to ``--drain-timeout``. A tier that dies is restarted (1 s
doubling to 30 s) while the others serve. ``up`` binds every tier's listening
sockets itself and hands them over (``shared.service.handoff``).

``up --config FILE`` takes one TOML file: ``[edge]``, ``[regional]``, ``[origin]``
(each tier's keys, as its own ``--config`` takes) and ``[up]`` (``up``'s flags,
under env and flags, read at start only). The whole file is checked before
anything starts. ``up`` writes each tier's config file in a temporary folder,
its own per-tier values (memory budget, access log, admin token) under the
tier's table (the table wins), and starts the tier with ``--config`` on it; keys
``up`` sets itself (``UP_OWNED``: ports, host, upstreams, library...) are refused.

``up`` writes its pid (and the absolute ``--config`` path) to
``<cache-dir>/up.pid``. On SIGHUP (``tiercdn reload``) it checks the file again;
if invalid, one line and nothing changes. If valid, it rewrites the tiers'
files, and each tier whose table changed is reloaded: SIGHUP when every changed
key can change live (``shared.service.reload.LIVE``), else a graceful restart
(a new process on the same sockets, then the old one drains). SIGUSR1 is passed
to every tier (they reopen their access log files: logrotate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from shared.ops.config import read_up_config
from shared.ops.topology import TIERS, Topology, TopologyError, busy_port
from shared.service.reload import LIVE
from shared.service.settings import (
    duration_field,
    from_namespace,
    option,
    read_config,
    size_field,
)

__all__ = ["PID_FILE", "UpDir", "UpSettings", "reload", "up", "up_table"]

_STARTUP_SECONDS = 30.0
_BACKOFF_SECONDS = (1.0, 30.0)  # a dead tier's restart delay: first, cap (doubling)
_STABLE_SECONDS = 30.0  # a tier up this long starts its backoff afresh
_SAMPLE_STOP_SECONDS = 10.0  # a stopped packager's time to stop ffmpeg and tidy up
PID_FILE = "up.pid"  # in --cache-dir: line 1 the pid, line 2 the --config path (or empty)


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
    edge_workers: str = option("1", "edge processes (a number, or auto: one per core)")
    regional_workers: str = option("1", "regional processes (a number, or auto)")
    cache_dir: str = option("cache", "directory of the regional's disk tier (kept across restarts)")
    sample_duration: float = option(60.0, "seconds of the sample title made on first run")
    live: tuple[str, ...] = option(
        (), "live channel NAME at the origin, played at /live/NAME/manifest.mpd (repeat)"
    )
    access_log: bool = option(False, "each tier logs one line per request")
    access_log_file: str = option(
        "", "every tier appends its access lines here (reopened on SIGUSR1); '' = stderr"
    )
    admin_token: str = option("", "token for purge/prewarm on regional and edge; '' = off")
    drain_timeout: float = duration_field(
        "10s", "on stop, how long each tier may finish in-flight responses before SIGKILL"
    )

    def __post_init__(self) -> None:
        for flag, value in (
            ("--edge-workers", self.edge_workers),
            ("--regional-workers", self.regional_workers),
        ):
            if value != "auto" and not (value.isdigit() and 1 <= int(value) <= 256):
                raise ValueError(f"{flag} takes a number from 1 to 256 or auto, got {value!r}")

    def admin(self, port: int) -> int:
        return port + self.admin_offset


def _has_title(library: Path) -> bool:
    return library.is_dir() and any(library.glob("*/*.mpd"))


def _make_sample(library: Path, duration: float) -> None:
    """Make the sample title; on SIGINT/SIGTERM (KeyboardInterrupt from ``up``'s handler) stop
    the packager with SIGTERM, so it stops ffmpeg and removes its partial folder, then re-raise."""
    print(f"making the sample title in {library / 'sample'} (first run only)...", flush=True)
    args = ["origin", "sample", "--out", str(library / "sample"), "--duration", str(duration)]
    with subprocess.Popen([sys.executable, "-m", *args], stdin=subprocess.DEVNULL) as proc:
        try:
            returncode = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            try:
                proc.wait(timeout=_SAMPLE_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if returncode != 0:
        raise SystemExit("error: could not make the sample title")


def _print_ready(top: Topology, started: float, token: bool) -> None:
    with urllib.request.urlopen(top.origin.url + "/", timeout=5) as resp:
        titles = json.load(resp)
    print(f"\ntiercdn is up in {time.monotonic() - started:.1f}s", flush=True)
    for title in titles:
        live = "  (live)" if title.get("live") else ""
        print(f"  play:      {top.edge.url}{title['manifest']}{live}")
        if title.get("hls"):  # the same segments as HLS (titles packaged since HLS)
            print(f"  hls:       {top.edge.url}{title['hls']}{live}")
    for tier in reversed(top.tiers.values()):
        print(f"  {tier.name + ':':<10} {tier.url}/   admin {tier.admin_url}/stats")
    if token:
        edge, regional = top.edge.admin_url, top.regional.admin_url
        print("  (with TIERCDN_ADMIN_TOKEN set to the token:)")
        print(f"  purge:     tiercdn purge --prefix /sample/ --regional {regional} --edge {edge}")
        for title in titles[:1]:
            print(f"  prewarm:   tiercdn prewarm {top.edge.url}{title['manifest']} --seconds 30")
    print("  metrics:   <admin>/metrics     Ctrl-C stops all three\n", flush=True)


def _library_dir(value: str) -> Path:
    """``--library`` as a directory, made if missing; a bad value is one line, exit 1."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise SystemExit(f"error: --library {value}: not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SystemExit(f"error: --library {value}: cannot create it: {exc.strerror}") from None
    return path


def _check_ports(s: UpSettings, ports: dict[str, tuple[int, int]]) -> None:
    """Refuse, before starting anything, if any main or admin port is taken."""
    labels = {p: f"{name} admin" for name, (_, p) in ports.items()}
    labels.update({p: name for name, (p, _) in ports.items()})
    busy = busy_port(list(labels), s.host)
    if busy is not None:
        raise SystemExit(
            f"error: port {busy} ({labels[busy]}) is already in use on {s.host}; nothing started"
        )


@dataclasses.dataclass
class _Restarts:
    """When to start each dead tier again: after 1 s, doubling up to 30 s; a tier
    that then runs ``_STABLE_SECONDS`` starts its backoff afresh.
    # guarded by: the main thread (the supervising loop) only"""

    count: dict[str, int] = dataclasses.field(default_factory=dict)
    delay: dict[str, float] = dataclasses.field(default_factory=dict)  # the next one
    due: dict[str, float] = dataclasses.field(default_factory=dict)  # monotonic
    since: dict[str, float] = dataclasses.field(default_factory=dict)  # last start

    def schedule(self, name: str, now: float) -> float:
        first, cap = _BACKOFF_SECONDS
        if now - self.since.get(name, now) >= _STABLE_SECONDS:
            self.delay.pop(name, None)
        delay = self.delay.get(name, first)
        self.delay[name] = min(2 * delay, cap)
        self.due[name] = now + delay
        return delay

    def started(self, name: str, now: float) -> int:
        del self.due[name]
        self.since[name] = now
        self.count[name] = self.count.get(name, 0) + 1
        return self.count[name]

    def __repr__(self) -> str:
        return f"<_Restarts count={self.count} due={sorted(self.due)}>"


def _supervise(
    top: Topology, stopping: Callable[[], bool], tick: Callable[[], None] = lambda: None
) -> _Restarts:
    """Restart a tier that dies (with backoff) until ``stopping()``; the others keep
    serving (the edge falls back to the origin while the regional is down).
    ``tick()`` runs every round (a reload asked for by SIGHUP)."""
    restarts = _Restarts()
    while not stopping():
        tick()
        now = time.monotonic()
        for tier in top.tiers.values():
            if tier.proc.poll() is None:
                continue
            if tier.name not in restarts.due:
                top.release(tier.name)  # refuse its clients now: the edge falls back
                delay = restarts.schedule(tier.name, now)
                status = tier.proc.returncode
                print(f"{tier.name} exited with status {status}; restart in {delay:g}s", flush=True)
            elif now >= restarts.due[tier.name]:
                try:
                    top.respawn(tier.name)
                except OSError as exc:
                    delay = restarts.schedule(tier.name, now)
                    print(f"{tier.name} cannot listen ({exc}); retry in {delay:g}s", flush=True)
                    continue
                n = restarts.started(tier.name, now)
                print(f"{tier.name} restarted, pid {tier.pid} (restart #{n})", flush=True)
        time.sleep(0.1)
    return restarts


def _stop(top: Topology, drain: float) -> None:
    """Edge, then regional, then origin: SIGTERM, up to ``drain`` s to finish, SIGKILL."""
    for tier in reversed(top.tiers.values()):
        print(f"stopping {tier.name} (draining up to {drain:g}s)...", flush=True)
        drained = top.stop_tier(tier.name, drain)
        print(f"{tier.name} stopped" if drained else f"{tier.name} killed", flush=True)


@dataclasses.dataclass
class _TierConfigs:
    """The tiers' config files in ``folder``: ``up``'s own per-tier values under the
    tier's table of the ``--config`` file ``source`` (the table wins).
    # guarded by: the main thread"""

    settings: UpSettings
    source: str | None
    folder: Path
    tables: dict[str, dict[str, object]] = dataclasses.field(default_factory=dict)  # written

    def path(self, tier: str) -> Path:
        return self.folder / f"{tier}.toml"

    def write(self) -> dict[str, set[str]]:
        """Check ``source`` whole (``SystemExit``: one line, no file touched), then
        rewrite every tier's file (each replaced at once: a tier reads old or new).
        The keys (field names) whose values changed, per tier."""
        sections = read_up_config(self.source) if self.source else {}
        changed: dict[str, set[str]] = {}
        for tier in TIERS:
            table = self._own(tier)
            for key, value in sections.get(tier, {}).items():
                table[key.replace("_", "-")] = value
            old = self.tables.get(tier, {})
            keys = {k for k in old.keys() | table.keys() if old.get(k) != table.get(k)}
            changed[tier] = {k.replace("-", "_") for k in keys}
            tmp = self.path(tier).with_suffix(".tmp")
            tmp.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in table.items()))
            os.replace(tmp, self.path(tier))
            self.tables[tier] = table
        return changed

    def _own(self, tier: str) -> dict[str, object]:
        s, table = self.settings, dict[str, object]()
        if tier != "origin":
            budget = s.edge_cache_bytes if tier == "edge" else s.regional_cache_bytes
            table["cache-bytes"] = budget
            workers = s.edge_workers if tier == "edge" else s.regional_workers
            if workers != "1":
                table["workers"] = workers
            if s.admin_token:
                table["admin-token"] = s.admin_token
        if tier == "origin" and s.live:
            table["live"] = list(s.live)
        if s.access_log:
            table["access-log"] = True
        if s.access_log_file:
            table["access-log-file"] = str(Path(s.access_log_file).resolve())
        return table

    def __repr__(self) -> str:
        return f"<_TierConfigs {self.source} -> {self.folder}>"


def _toml(value: object) -> str:
    """A checked config value (string, number, boolean, list of strings) as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a TOML basic string


def up_table(path: str | None) -> dict[str, Any]:
    """The ``[up]`` table of ``up --config``, converted, after checking the whole file."""
    if path is None:
        return {}
    table = read_up_config(path)["up"]
    return read_config(UpSettings, f"{path} [up]", table)


def _write_pid(s: UpSettings, config: str | None) -> None:
    folder = Path(s.cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        source = str(Path(config).resolve()) if config else ""
        (folder / PID_FILE).write_text(f"{os.getpid()}\n{source}\n")
    except OSError as exc:
        raise SystemExit(f"error: --cache-dir {s.cache_dir}: {exc.strerror}") from None


def _live(tier: str) -> frozenset[str]:
    """Settings the tier's own SIGHUP applies; a change to any other restarts it."""
    if tier == "origin":
        from origin.reload import LIVE as ORIGIN_LIVE  # the origin's app, only when asked

        return ORIGIN_LIVE
    return LIVE


@dataclasses.dataclass
class _Draining:
    """Old processes of gracefully restarted tiers, each given ``drain`` seconds to
    finish its responses, then killed.
    # guarded by: the main thread (threads only wait on their own process)"""

    drain: float
    threads: list[threading.Thread] = dataclasses.field(default_factory=list)

    def add(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        def wait() -> None:
            try:
                proc.wait(self.drain)
                print(f"old {name} (pid {proc.pid}) drained and stopped", flush=True)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                print(f"old {name} (pid {proc.pid}) killed after {self.drain:g}s", flush=True)

        thread = threading.Thread(target=wait, name=f"drain-{name}-{proc.pid}")
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()

    def __repr__(self) -> str:
        return f"<_Draining {sum(t.is_alive() for t in self.threads)} draining>"


def _reload(top: Topology, configs: _TierConfigs, draining: _Draining) -> None:
    """Re-read ``--config``; if valid, rewrite the tiers' files, SIGHUP each tier whose
    changes are all live and restart gracefully those with any other change."""
    if configs.source is None:
        print("reload: tiercdn up has no --config; nothing to re-read", flush=True)
        return
    try:
        changed = configs.write()
    except SystemExit as exc:
        print(f"{exc}; reload refused, nothing changed", file=sys.stderr, flush=True)
        return
    done = []
    for tier in top.tiers.values():
        keys = changed.get(tier.name, set())
        if not keys or tier.proc.poll() is not None:
            continue  # unchanged, or dead: it reads its new file when it is restarted
        if not keys - _live(tier.name):
            tier.proc.send_signal(signal.SIGHUP)
            done.append(f"{tier.name} SIGHUP")
            continue
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(keys - _live(tier.name)))
        print(f"reload: {tier.name}: {flags} need a new process: restarting it", flush=True)
        old = top.replace(tier.name, _STARTUP_SECONDS)
        if old is None:
            print(f"reload: the new {tier.name} did not start; the old one serves on", flush=True)
            continue
        draining.add(tier.name, old)
        done.append(f"{tier.name} restarted (pid {tier.pid})")
    print(f"reload: {configs.source} taken; {', '.join(done) or 'nothing changed'}", flush=True)


def _forward(top: Topology, signum: int) -> None:
    for tier in top.tiers.values():
        if tier.proc.poll() is None:
            tier.proc.send_signal(signum)


def up(settings: UpSettings, config: str | None = None) -> int:
    """Run the three tiers, restarting any that dies, until SIGINT/SIGTERM; reload
    ``config`` (``up --config``) on SIGHUP."""
    started = time.monotonic()
    s = settings
    ports = {
        name: (port, s.admin(port))
        for name, port in zip(TIERS, (s.origin_port, s.regional_port, s.edge_port), strict=True)
    }
    _check_ports(s, ports)
    library = _library_dir(s.library)
    ready = stopping = reload_asked = reopen_asked = False
    draining = _Draining(s.drain_timeout)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if not ready:
            raise KeyboardInterrupt  # abandon start-up: launch stops what it started

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        nonlocal reload_asked
        reload_asked = True  # done by the supervising loop, not in the handler

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        nonlocal reopen_asked
        reopen_asked = True

    def tick() -> None:
        nonlocal reload_asked, reopen_asked
        if reload_asked:
            reload_asked = False
            _reload(top, configs, draining)
        if reopen_asked:
            reopen_asked = False
            _forward(top, signal.SIGUSR1)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    signal.signal(signal.SIGUSR1, on_usr1)
    if not _has_title(library):
        try:
            _make_sample(library, s.sample_duration)
        except KeyboardInterrupt:
            print("stopped before it was up", flush=True)
            return 130
    pid_file = Path(s.cache_dir) / PID_FILE
    configs = _TierConfigs(s, config, Path(tempfile.mkdtemp(prefix="tiercdn-up-")))
    try:
        configs.write()
        _write_pid(s, config)
        top = Topology.launch(
            library,
            ports=ports,
            host=s.host,
            edge_cache=None,  # in the tiers' config files
            regional_cache=None,
            tier_args={t: ("--config", str(configs.path(t))) for t in TIERS},
            cache_dir=Path(s.cache_dir),
            ready_seconds=_STARTUP_SECONDS,
            handoff=True,
        )
        ready = True
    except TopologyError as exc:
        _forget(pid_file, configs)
        raise SystemExit(f"error: {exc}") from None
    except OSError as exc:  # a port taken between the check and the bind
        _forget(pid_file, configs)
        raise SystemExit(f"error: cannot listen: {exc.strerror} ({exc})") from None
    except KeyboardInterrupt:
        _forget(pid_file, configs)
        print("stopped before it was up", flush=True)
        return 130
    except BaseException:
        _forget(pid_file, configs)
        raise
    try:
        _print_ready(top, started, bool(s.admin_token))
        restarts = _supervise(top, lambda: stopping, tick)
    finally:
        _stop(top, s.drain_timeout)
        draining.join()
        _forget(pid_file, configs)
    if restarts.count:
        print(f"restarts: {restarts.count}", flush=True)
    return 0


def _forget(pid_file: Path, configs: _TierConfigs) -> None:
    pid_file.unlink(missing_ok=True)
    shutil.rmtree(configs.folder, ignore_errors=True)


# --- reload: SIGHUP to a running up ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UpDir:
    cache_dir: str = option("cache", "the --cache-dir of the running tiercdn up (its up.pid)")


def reload(ns: argparse.Namespace) -> int:
    """Find the running ``up`` by its pid file, check its ``--config`` and SIGHUP it."""
    pid_file = Path(from_namespace(UpDir, ns).cache_dir) / PID_FILE
    try:
        pid_text, source = [*pid_file.read_text().splitlines(), "", ""][:2]
        pid = int(pid_text)
    except FileNotFoundError:
        raise SystemExit(
            f"error: {pid_file}: not found; is tiercdn up running (with this --cache-dir)?"
        ) from None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {pid_file}: unreadable: {exc}") from None
    if not _is_up(pid):
        raise SystemExit(f"error: {pid_file}: stale, pid {pid} is not a running tiercdn up")
    if not source:
        raise SystemExit(f"error: tiercdn up (pid {pid}) runs without --config; nothing to reload")
    read_up_config(source)  # invalid: one line, exit 1, nothing sent
    os.kill(pid, signal.SIGHUP)
    print(f"{source}: ok; SIGHUP sent to tiercdn up (pid {pid})", flush=True)
    return 0


def _is_up(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours: not the up that wrote the file
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc: trust the live pid
    return b"up" in argv
