"""Run one cache node from the command line: the body of edge and regional ``main``.

Settings come from a ``--config`` TOML file, ``TIERCDN_*`` env vars over it and
flags on top; the tier passes its own defaults (name, ports, budget, parent).
SIGHUP reloads them the same way (``shared.service.reload``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from shared.engine.node import NODE
from shared.service import handoff
from shared.service import run as service
from shared.service.admin import make_admin_app
from shared.service.connection import ConnectionLimits
from shared.service.reload import reload
from shared.service.settings import CacheSettings, load
from shared.service.workers import share, supervise

__all__ = ["main"]

S = TypeVar("S", bound=CacheSettings)


def main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    settings_class: type[S],
    make_app: Callable[[S], web.Application],
    module: str = "",
    **defaults: Any,
) -> int:
    """Parse the tier's settings, build its app and serve it until SIGINT/SIGTERM;
    SIGHUP reads them again (the same argv, env and ``--config`` file) and applies
    what can change live (``shared.service.reload``). With ``--workers N`` (N > 1)
    this process supervises N workers, each ``python -m module`` with the same
    arguments (``shared.service.workers``)."""

    worker = handoff.worker()  # worker I of N of a --workers node: its share

    def read() -> S:
        s = load(settings_class, argv, prog=prog, description=description, **defaults)
        return s if worker is None else share(s, *worker)

    settings = read()
    service.configure_logging(settings.log_level, settings.log_json, settings.access_log_file)
    if module and settings.worker_count() > 1 and worker is None:
        args = list(sys.argv[1:] if argv is None else argv)
        return service.run(lambda: supervise(settings, args, module))
    app = make_app(settings)
    node = app[NODE]
    if (workers := handoff.siblings()) is not None:  # a worker: its machine's other workers
        own, others = workers
        node.upstream.resibling(others, own)

    def on_hup() -> None:
        node.tasks.spawn(reload(node, read), name="reload")

    async def serve() -> None:
        await service.serve(
            app,
            settings.host,
            settings.port,
            admin=make_admin_app(app),
            admin_host=settings.admin_host,
            admin_port=settings.admin_port,
            access_log=settings.access_log,
            ready_message=f"{settings.name} ready on http://{settings.host}:{settings.port}/",
            limits=ConnectionLimits.of(settings),
            registry=node.metrics.registry,
            name=settings.name,
            on_hup=on_hup,
            also=handoff.also_listen(),  # a worker: its own address, for its peers
        )

    loop = settings.event_loop
    if loop == "auto":  # sendfile for disk hits needs the stock loop (uvloop has none)
        loop = "asyncio" if settings.disk_path else "uvloop"
    return service.run(serve, use_uvloop=loop == "uvloop")
