"""The image's HEALTHCHECK: every tiercdn node in the container answers its admin /healthz.

One image runs any tier (and ``tiercdn up`` runs several in one container), so
the check cannot assume a port: it finds the running nodes in ``/proc``
(``tiercdn-edge``, ``tiercdn-regional``, ``tiercdn-origin serve``) and works
out each one's admin listener the way its settings do: ``--admin-port`` /
``--admin-host`` flags over ``TIERCDN_ADMIN_PORT`` / ``TIERCDN_ADMIN_HOST``
(the process's own environment) over the ``--config`` / ``TIERCDN_CONFIG``
TOML file over the tier's default (edge 9080, regional 9081, origin 9082).
A listener on every interface is asked on 127.0.0.1.

Exit 0 when there is at least one node and every node's /healthz answers 200;
else 1, with one line per node that is not healthy (docker keeps it in
``docker inspect``). Standard library only: it runs every few seconds, so it
must not pay for importing aiohttp.

    python /usr/local/lib/tiercdn/healthcheck.py [--proc DIR] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["admin_address", "main", "node_argv", "nodes"]

DEFAULT_ADMIN_PORT = {"tiercdn-edge": 9080, "tiercdn-regional": 9081, "tiercdn-origin": 9082}
EVERY_INTERFACE = ("", "0.0.0.0", "::", "[::]")


def node_argv(cmdline: Sequence[str]) -> list[str] | None:
    """``[program, *args]`` when a process runs a tiercdn node, else None.

    The program is the first or (``python /usr/local/bin/tiercdn-edge ...``, as
    a console script's shebang runs it) second word, or ``python -m edge`` (as
    ``tiercdn up`` starts its tiers); the origin is a node only when it serves
    (``tiercdn-origin sample`` makes a title and exits).
    """
    if len(cmdline) > 2 and cmdline[1] == "-m" and f"tiercdn-{cmdline[2]}" in DEFAULT_ADMIN_PORT:
        cmdline = [f"tiercdn-{cmdline[2]}", *cmdline[3:]]
    for i, word in enumerate(cmdline[:2]):
        program = word.rsplit("/", 1)[-1]
        if program in DEFAULT_ADMIN_PORT:
            args = list(cmdline[i + 1 :])
            if program == "tiercdn-origin" and args[:1] != ["serve"]:
                return None
            return [program, *args]
    return None


def _flag(args: Sequence[str], name: str) -> str | None:
    """The last value of ``--name VALUE`` or ``--name=VALUE`` (argparse: the last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _from_file(path: str, key: str) -> str | None:
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        return None  # the node itself refuses such a file at start
    value = table.get(key.replace("_", "-"), table.get(key))
    return None if value is None else str(value)


def admin_address(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, int]:
    """(host, port) of a node's admin listener: flag > env > config file > default."""
    program, args = argv[0], argv[1:]
    config = _flag(args, "--config") or environ.get("TIERCDN_CONFIG")

    def setting(name: str) -> str | None:
        value = _flag(args, "--" + name.replace("_", "-"))
        if value is None:
            value = environ.get("TIERCDN_" + name.upper())
        if value is None and config:
            value = _from_file(config, name)
        return value

    port = setting("admin_port")
    host = setting("admin_host") or ""
    if host in EVERY_INTERFACE:
        host = "127.0.0.1"
    if port is None:
        return host, DEFAULT_ADMIN_PORT[program]
    if not port.strip().isdigit():
        raise ValueError(f"admin port {port!r} is not a number")
    return host, int(port)


def _environ(raw: bytes) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if item)
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def nodes(proc: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """(pid, argv, environment) of every tiercdn node under ``proc`` (a /proc tree)."""
    found = []
    for entry in sorted(proc.iterdir(), key=lambda p: p.name):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        argv = node_argv(cmdline.decode(errors="replace").split("\0")[:-1])
        if argv is not None:
            found.append((entry.name, argv, _environ(environ)))
    return found


def _probe(host: str, port: int, timeout: float) -> str | None:
    """None when ``/healthz`` answers 200, else what went wrong."""
    if port == 0:
        return "no admin listener (admin port 0)"
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return None if response.status == 200 else f"{url}: {response.status}"
    except (OSError, urllib.error.URLError) as exc:  # HTTPError included
        return f"{url}: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proc", type=Path, default=Path("/proc"), help="the /proc tree")
    parser.add_argument("--timeout", type=float, default=2.0, help="per node, in seconds")
    args = parser.parse_args(argv)
    found = nodes(args.proc)
    if not found:
        print("unhealthy: no tiercdn node is running (yet)", file=sys.stderr)
        return 1
    failures = 0
    for pid, node, environ in found:
        try:
            host, port = admin_address(node, environ)
        except ValueError as exc:  # the node itself refuses it at start
            problem: str | None = str(exc)
        else:
            problem = _probe(host, port, args.timeout)
        if problem is not None:
            failures += 1
            print(f"unhealthy: {node[0]} (pid {pid}): {problem}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
