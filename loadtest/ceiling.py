"""The ceiling of the hit path: a bare aiohttp server doing nothing a cache does.

``python -m loadtest.ceiling --root DIR --port N --mode memory|file`` serves the
files under ``DIR`` (``/<relative path>``):

- ``memory``: the bytes read once at start into a dict, one ``web.Response``
  per request, on uvloop: what one Python process can do for a memory hit.
- ``file``: ``web.FileResponse`` on the stock asyncio loop (``os.sendfile``),
  the way aiohttp serves a file: the ceiling of a disk hit.

It prints ``ready`` on stdout once listening and runs until SIGTERM/SIGINT.
Only loopback by default; the port is the caller's (``0`` picks one, printed).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

__all__ = ["main", "make_file_app", "make_memory_app"]


def make_memory_app(bodies: dict[str, bytes]) -> web.Application:
    """Answer ``GET <path>`` with ``bodies[path]`` (404 if absent), nothing else."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = bodies.get(request.path)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type="video/iso.segment")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


def make_file_app(root: Path) -> web.Application:
    """Answer ``GET <path>`` with ``web.FileResponse(root / path)``."""
    root = root.resolve()

    async def handle(request: web.Request) -> web.StreamResponse:
        path = (root / request.path.lstrip("/")).resolve()
        if root not in path.parents:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


def _bodies(root: Path) -> dict[str, bytes]:
    return {
        "/" + p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
    }


async def _serve(app: web.Application, host: str, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready on {site.name}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.ceiling", description=__doc__)
    p.add_argument("--root", type=Path, required=True, help="folder of the files to serve")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=("memory", "file"), default="memory")
    ns = p.parse_args(argv)
    if ns.mode == "memory":
        import uvloop

        uvloop.run(_serve(make_memory_app(_bodies(ns.root)), ns.host, ns.port))
    else:
        asyncio.run(_serve(make_file_app(ns.root), ns.host, ns.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
