"""``tiercdn``: the umbrella command. ``tiercdn up`` runs a whole local CDN.

``up`` starts origin, regional and edge as child processes (each its own
CPU-bound event loop, as in production), makes the sample title on first run,
waits until every tier answers its health check, prints what to play, and on
Ctrl-C (SIGINT) or SIGTERM stops the edge, then the regional, then the origin.
With ``--admin-token`` (or TIERCDN_ADMIN_TOKEN) the regional and edge accept
purge and pre-warm on their admin listeners; without it those stay off.

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
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from shared.ops.config import add_check_config, check_config
from shared.ops.topology import TIERS, Topology, TopologyError, busy_port
from shared.service.settings import (
    Parser,
    add_arguments,
    duration_field,
    from_namespace,
    option,
    size_field,
)

__all__ = ["main"]

_STARTUP_SECONDS = 30.0
_BACKOFF_SECONDS = (1.0, 30.0)  # a dead tier's restart delay: first, cap (doubling)
_STABLE_SECONDS = 30.0  # a tier up this long starts its backoff afresh


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


def _supervise(top: Topology, stopping: Callable[[], bool]) -> _Restarts:
    """Restart a tier that dies (with backoff) until ``stopping()``; the others keep
    serving (the edge falls back to the origin while the regional is down)."""
    restarts = _Restarts()
    while not stopping():
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


def up(settings: UpSettings) -> int:
    """Run the three tiers, restarting any that dies, until SIGINT/SIGTERM."""
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
    ready = stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if not ready:
            raise KeyboardInterrupt  # abandon start-up: launch stops what it started

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        top = Topology.launch(
            library,
            ports=ports,
            host=s.host,
            edge_cache=str(s.edge_cache_bytes),
            regional_cache=str(s.regional_cache_bytes),
            extra_args=("--access-log",) if s.access_log else (),
            tier_args={t: ("--admin-token", s.admin_token) for t in ("regional", "edge")}
            if s.admin_token
            else None,
            cache_dir=Path(s.cache_dir),
            ready_seconds=_STARTUP_SECONDS,
        )
        ready = True
    except TopologyError as exc:
        raise SystemExit(f"error: {exc}") from None
    except KeyboardInterrupt:
        print("stopped before it was up", flush=True)
        return 130
    try:
        _print_ready(top, started, bool(s.admin_token))
        restarts = _supervise(top, lambda: stopping)
    finally:
        _stop(top, s.drain_timeout)
    if restarts.count:
        print(f"restarts: {restarts.count}", flush=True)
    return 0


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
        return up(from_namespace(UpSettings, ns))
    if ns.verb == "purge":
        return purge(ns)
    if ns.verb == "prewarm":
        return prewarm(ns)
    parser.error(f"unknown verb {ns.verb}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
