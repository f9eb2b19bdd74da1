"""``tiercdn``: the umbrella command. ``tiercdn up`` runs a whole local CDN.

``up`` starts origin, regional and edge as child processes (each its own
CPU-bound event loop, as in production), makes the sample title on first run,
waits until every tier answers its health check, prints what to play, and on
Ctrl-C (SIGINT) or SIGTERM stops the edge, then the regional, then the origin.
With ``--admin-token`` (or TIERCDN_ADMIN_TOKEN) the regional and edge accept
purge and pre-warm on their admin listeners; without it those stay off.

``up --config FILE`` takes one TOML file: ``[edge]``, ``[regional]``, ``[origin]``
(each tier's keys, as its own ``--config`` takes) and ``[up]`` (``up``'s flags,
under env and flags, read at start only). The whole file is checked before
anything starts. ``up`` writes each tier's config file in a temporary folder,
its own per-tier values (memory budget, access log, admin token) under the
tier's table (the table wins), and starts the tier with ``--config`` on it; keys
``up`` sets itself (``UP_OWNED``: ports, host, upstreams, library...) are refused.
``up`` writes its pid (and the absolute ``--config`` path) to
``<cache-dir>/up.pid``; on SIGHUP (``tiercdn reload``) it checks the file again
and, if valid, rewrites the tiers' files and sends each tier SIGHUP; if not, one
line and nothing changes.

``purge`` and ``prewarm`` speak to nodes' admin listeners (``POST /purge``,
``POST /prewarm``) with the token from ``--token`` or TIERCDN_ADMIN_TOKEN.
``purge`` does every regional before any edge, so an edge cannot refill from a
parent still holding the old copy. ``prewarm MANIFEST_URL`` finds the admin
listener at the player URL's port + 1000 (``tiercdn up``'s default offset)
unless ``--admin`` says otherwise.
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
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from shared.ops.config import add_check_config, check_config, read_up_config
from shared.ops.topology import TIERS, Topology, TopologyError, busy_port
from shared.service.settings import (
    Parser,
    add_arguments,
    duration_field,
    from_namespace,
    option,
    read_config,
    size_field,
)

__all__ = ["main"]

_STARTUP_SECONDS = 30.0
_BACKOFF_SECONDS = (1.0, 30.0)  # a dead tier's restart delay: first, cap (doubling)
_STABLE_SECONDS = 30.0  # a tier up this long starts its backoff afresh
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
    cache_dir: str = option("cache", "directory of the regional's disk tier (kept across restarts)")
    sample_duration: float = option(60.0, "seconds of the sample title made on first run")
    access_log: bool = option(False, "each tier logs one line per request")
    admin_token: str = option("", "token for purge/prewarm on regional and edge; '' = off")
    drain_timeout: float = duration_field(
        "10s", "on stop, how long each tier may finish in-flight responses before SIGKILL"
    )

    def admin(self, port: int) -> int:
        return port + self.admin_offset


def _has_title(library: Path) -> bool:
    return library.is_dir() and any(library.glob("*/*.mpd"))


def _make_sample(library: Path, duration: float) -> None:
    print(f"making the sample title in {library / 'sample'} (first run only)...", flush=True)
    args = ["origin", "sample", "--out", str(library / "sample"), "--duration", str(duration)]
    if subprocess.call([sys.executable, "-m", *args], stdin=subprocess.DEVNULL) != 0:
        raise SystemExit("error: could not make the sample title")


def _print_ready(top: Topology, started: float, token: bool) -> None:
    with urllib.request.urlopen(top.origin.url + "/", timeout=5) as resp:
        titles = json.load(resp)
    print(f"\ntiercdn is up in {time.monotonic() - started:.1f}s", flush=True)
    for title in titles:
        print(f"  play:      {top.edge.url}{title['manifest']}")
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
                delay = restarts.schedule(tier.name, now)
                status = tier.proc.returncode
                print(f"{tier.name} exited with status {status}; restart in {delay:g}s", flush=True)
            elif now >= restarts.due[tier.name]:
                top.respawn(tier.name)
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

    def path(self, tier: str) -> Path:
        return self.folder / f"{tier}.toml"

    def write(self) -> None:
        """Check ``source`` whole (``SystemExit``: one line, no file touched), then
        rewrite every tier's file (each replaced at once: a tier reads old or new)."""
        sections = read_up_config(self.source) if self.source else {}
        for tier in TIERS:
            table = self._own(tier)
            for key, value in sections.get(tier, {}).items():
                table[key.replace("_", "-")] = value
            tmp = self.path(tier).with_suffix(".tmp")
            tmp.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in table.items()))
            os.replace(tmp, self.path(tier))

    def _own(self, tier: str) -> dict[str, object]:
        s, table = self.settings, dict[str, object]()
        if tier != "origin":
            budget = s.edge_cache_bytes if tier == "edge" else s.regional_cache_bytes
            table["cache-bytes"] = budget
            if s.admin_token:
                table["admin-token"] = s.admin_token
        if s.access_log:
            table["access-log"] = True
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


def _up_table(path: str | None) -> dict[str, Any]:
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


def _reload(top: Topology, configs: _TierConfigs) -> None:
    """Re-read ``--config``; if valid, rewrite the tiers' files and SIGHUP each tier."""
    if configs.source is None:
        print("reload: tiercdn up has no --config; nothing to re-read", flush=True)
        return
    try:
        configs.write()
    except SystemExit as exc:
        print(f"{exc}; reload refused, nothing changed", file=sys.stderr, flush=True)
        return
    for tier in top.tiers.values():
        if tier.proc.poll() is None:
            tier.proc.send_signal(signal.SIGHUP)
    print(f"reload: {configs.source} taken; SIGHUP sent to every tier", flush=True)


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
    if not _has_title(library):
        _make_sample(library, s.sample_duration)
    ready = stopping = reload_asked = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if not ready:
            raise KeyboardInterrupt  # abandon start-up: launch stops what it started

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        nonlocal reload_asked
        reload_asked = True  # done by the supervising loop, not in the handler

    def tick() -> None:
        nonlocal reload_asked
        if reload_asked:
            reload_asked = False
            _reload(top, configs)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
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
        )
        ready = True
    except TopologyError as exc:
        _forget(pid_file, configs)
        raise SystemExit(f"error: {exc}") from None
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
        _forget(pid_file, configs)
    if restarts.count:
        print(f"restarts: {restarts.count}", flush=True)
    return 0


def _forget(pid_file: Path, configs: _TierConfigs) -> None:
    pid_file.unlink(missing_ok=True)
    shutil.rmtree(configs.folder, ignore_errors=True)


# --- reload: SIGHUP to a running up ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _UpDir:
    cache_dir: str = option("cache", "the --cache-dir of the running tiercdn up (its up.pid)")


def reload(ns: argparse.Namespace) -> int:
    """Find the running ``up`` by its pid file, check its ``--config`` and SIGHUP it."""
    pid_file = Path(from_namespace(_UpDir, ns).cache_dir) / PID_FILE
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


# --- purge and prewarm: clients of the nodes' admin listeners -----------------------


@dataclasses.dataclass(frozen=True)
class _Token:
    admin_token: str = option("", "admin token of the nodes")


class AdminError(Exception):
    """An admin call failed; the message is one line for the operator."""


def _admin_call(
    admin_url: str, route: str, body: dict[str, object], token: str, timeout: float
) -> dict[str, object]:
    """POST ``body`` as JSON to ``admin_url + route``; the JSON answer, or ``AdminError``."""
    url = admin_url.rstrip("/") + route
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as exc:
        answer = _json_or_none(exc.read())
        message = answer.get("error") if isinstance(answer, dict) else None
        if exc.code == 401:
            message = f"{message or 'unauthorized'} (use --token or TIERCDN_ADMIN_TOKEN)"
        if exc.code == 502 and isinstance(answer, dict):
            return answer  # a report whose "error" says why
        raise AdminError(f"HTTP {exc.code}: {message or exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise AdminError(f"connection refused at {url} (is that the admin port?)") from None
        raise AdminError(f"cannot reach {url}: {reason}") from None
    except (TimeoutError, OSError) as exc:
        raise AdminError(f"cannot reach {url}: {exc}") from None
    except ValueError:
        raise AdminError(f"{url} did not answer JSON") from None
    if not isinstance(answer, dict):
        raise AdminError(f"{url} did not answer a JSON object")
    return answer


def _json_or_none(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        return None


def purge(ns: argparse.Namespace) -> int:
    """Purge every regional, then every edge; one line per node; 1 if any failed."""
    token = from_namespace(_Token, ns).admin_token
    if not ns.regional and not ns.edge:
        raise SystemExit("error: name at least one node: --regional ADMIN_URL / --edge ADMIN_URL")
    body: dict[str, object]
    if ns.all:
        body = {"all": True}
    else:
        body = {"url": ns.url} if ns.url is not None else {"prefix": ns.prefix}
    failed = 0
    for tier, urls in (("regional", ns.regional or []), ("edge", ns.edge or [])):
        for url in urls:
            try:
                answer = _admin_call(url, "/purge", body, token, ns.timeout)
            except AdminError as exc:
                failed += 1
                print(f"{tier} {url}: error: {exc}", file=sys.stderr, flush=True)
                continue
            print(f"{tier} {url}: purged {answer.get('purged')}", flush=True)
    return 1 if failed else 0


def prewarm(ns: argparse.Namespace) -> int:
    """Ask one node to pre-warm a title (or its top titles) and print the report."""
    token = from_namespace(_Token, ns).admin_token
    if (ns.manifest is None) == (ns.top is None):
        raise SystemExit("error: give either MANIFEST_URL or --top N")
    body: dict[str, object] = {
        "lowest": ns.lowest,
        "seconds": ns.seconds,
        "concurrency": ns.concurrency,
    }
    if ns.top is not None:
        if ns.admin is None:
            raise SystemExit("error: --top needs --admin ADMIN_URL")
        admin, body["top"] = ns.admin, ns.top
    else:
        parts = urlsplit(ns.manifest)
        if parts.scheme not in ("http", "https") or not parts.hostname or not parts.path:
            raise SystemExit(f"error: MANIFEST_URL must be an http URL: {ns.manifest!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        admin = ns.admin or f"http://{parts.hostname}:{port + _ADMIN_OFFSET}"
        body["manifest"] = parts.path
    started = time.monotonic()
    done = threading.Event()
    ticker = threading.Thread(target=_tick, args=(done, started), daemon=True)
    ticker.start()
    try:
        answer = _admin_call(admin, "/prewarm", body, token, ns.timeout)
    except AdminError as exc:
        raise SystemExit(f"error: {admin}: {exc}") from None
    finally:
        done.set()
        ticker.join()
    reports = answer.get("titles", [answer])
    bad = 0
    for report in reports if isinstance(reports, list) else []:
        bad += _print_report(report)
    print(f"done in {time.monotonic() - started:.1f}s", flush=True)
    return 1 if bad else 0


_ADMIN_OFFSET = 1000  # tiercdn up's default --admin-offset


def _tick(done: threading.Event, started: float) -> None:
    """Show elapsed time on a terminal while the node works."""
    if not sys.stderr.isatty():
        return
    while not done.wait(0.5):
        print(
            f"\rwarming... {time.monotonic() - started:.0f}s", end="", file=sys.stderr, flush=True
        )
    print("\r", end="", file=sys.stderr, flush=True)


def _print_report(report: object) -> int:
    """Print one title's report; 1 if something in it failed."""
    if not isinstance(report, dict):
        return 1
    line = (
        f"{report.get('node')} {report.get('manifest')}: {report.get('total')} paths,"
        f" fetched {report.get('fetched')}, skipped {report.get('skipped')} (already cached),"
        f" failed {report.get('failed')} in {report.get('seconds')}s"
    )
    print(line, flush=True)
    if report.get("error"):
        print(f"  error: {report['error']}", file=sys.stderr, flush=True)
    for path in report.get("failures") or []:
        print(f"  failed: {path}", file=sys.stderr, flush=True)
    return 1 if report.get("error") or report.get("failed") else 0


def loadtest(ns: argparse.Namespace) -> int:
    """``python -m loadtest.viewers SCENARIO ...``: virtual viewers against a CDN."""
    from loadtest.viewers import main as viewers  # heavy (aiohttp client, plots): lazily

    return viewers([ns.scenario, *ns.args])


def _add_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token", "--admin-token", dest="admin_token", default=None,
        help="admin token of the nodes [env TIERCDN_ADMIN_TOKEN]",
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="tiercdn", description="tiercdn: a local three-tier CDN")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    up_parser = verbs.add_parser("up", help="run origin, regional and edge with a sample title")
    add_arguments(up_parser, UpSettings)
    up_parser.add_argument(
        "--config", dest="up_config", metavar="FILE", default=None,
        help="TOML file: [edge], [regional], [origin] (each tier's keys) and [up] (these flags)",
    )  # fmt: skip

    p = verbs.add_parser("reload", help="make a running tiercdn up re-read its --config")
    add_arguments(p, _UpDir)

    p = verbs.add_parser("purge", help="drop objects from regionals, then edges")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--url", help="one URL path, e.g. /sample/manifest.mpd")
    what.add_argument("--prefix", help="every URL path under this, e.g. /sample/")
    what.add_argument("--all", action="store_true", help="everything")
    p.add_argument("--regional", action="append", metavar="ADMIN_URL", help="repeatable")
    p.add_argument("--edge", action="append", metavar="ADMIN_URL", help="repeatable")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per node (default 30)")
    _add_token(p)

    p = verbs.add_parser("prewarm", help="fill a node with a title before viewers arrive")
    p.add_argument(
        "manifest",
        nargs="?",
        metavar="MANIFEST_URL",
        help="player URL of the MPD at a node, e.g. http://127.0.0.1:8080/t/manifest.mpd",
    )
    p.add_argument("--top", type=int, metavar="N", help="instead: its N most requested titles")
    p.add_argument(
        "--admin",
        metavar="ADMIN_URL",
        help="the node's admin listener (default: MANIFEST_URL's port + 1000)",
    )
    p.add_argument("--lowest", type=int, metavar="K", help="only the K lowest video rungs")
    p.add_argument("--seconds", type=float, metavar="N", help="only the first N seconds")
    p.add_argument("--concurrency", type=int, default=8, help="warms in flight (default 8)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    _add_token(p)

    p = verbs.add_parser(
        "loadtest",
        help="virtual viewers watch titles through the edge (starts a topology by default)",
        description="Runs python -m loadtest.viewers; see its --help for every option.",
    )
    p.add_argument("scenario", choices=("steady", "flash-crowd", "chaos"))
    p.add_argument(
        "args", nargs=argparse.REMAINDER, help="options of loadtest.viewers, e.g. --viewers 50"
    )

    p = verbs.add_parser("top", help="live per-node rates of a running topology")
    p.add_argument("urls", nargs="*", metavar="ADMIN_URL", help="default: tiercdn up's 908x")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples (1)")
    p.add_argument("--once", action="store_true", help="print one snapshot (two samples)")

    add_check_config(verbs)
    ns = parser.parse_args(argv)
    if ns.verb is None:  # bare ``tiercdn``: say what it can do
        parser.print_help()
        return 2
    if ns.verb == "check-config":
        return check_config(ns.file, ns.tier)
    if ns.verb == "top":
        from shared.ops.top import run as top  # rich: only for this verb

        return top(ns)
    if ns.verb == "loadtest":
        return loadtest(ns)
    if ns.verb == "up":
        return up(from_namespace(UpSettings, ns, **_up_table(ns.up_config)), ns.up_config)
    if ns.verb == "reload":
        return reload(ns)
    if ns.verb == "purge":
        return purge(ns)
    if ns.verb == "prewarm":
        return prewarm(ns)
    parser.error(f"unknown verb {ns.verb}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
