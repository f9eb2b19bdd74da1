"""``tiercdn``: the umbrella command.

``up`` runs a whole local CDN and ``reload`` reloads it (``shared.ops.up``);
``check-config`` validates a config file (``shared.ops.config``); ``top`` is a
live view of running nodes (``shared.ops.top``).

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
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlsplit

from shared.ops.config import add_check_config, check_config
from shared.ops.up import UpDir, UpSettings, reload, up, up_table
from shared.service.settings import (
    Parser,
    add_arguments,
    from_namespace,
    option,
)

__all__ = ["main"]

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
    add_arguments(p, UpDir)

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
        help="player URL of an MPD or HLS playlist at a node, e.g. http://127.0.0.1:8080/t/master.m3u8",
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
    p.add_argument("scenario", choices=("steady", "flash-crowd", "chaos", "live"))
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
        return up(from_namespace(UpSettings, ns, **up_table(ns.up_config)), ns.up_config)
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
