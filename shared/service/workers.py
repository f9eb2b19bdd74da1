"""``--workers N``: one cache node as N processes on one port, one owner per object.

The process started with ``--workers N`` (N > 1) serves no request itself: it
binds the sockets, starts N workers (the same command, ``--workers 1``) and
keeps them running, as nginx's master process does.

- **One port.** Each worker accepts on its own socket bound with
  ``SO_REUSEPORT`` to the node's address (the kernel spreads connections over
  them); a socket handed over by ``tiercdn up`` is shared by all instead. The
  supervisor keeps every socket open, so connections that arrive while a
  worker restarts wait in its queue instead of being reset.
- **One owner per object.** Worker I also listens on a loopback port of its
  own, and is told the others' (``TIERCDN_SIBLINGS``): owner routing
  (``shared.engine.upstream``) then sends every worker's misses of an object
  to its owning worker, which asks the parent once. Each worker takes ``1/N``
  of the byte budgets itself (``share``, at start and on every reload) and its
  own disk folder, ``--disk-path``/``worker-I``. ``--peer``/``--peers-dns``
  machines are routed to first, by the machine's own ``--peer-url``: each
  object has one owning machine and, there, one owning worker.
- **Restarts.** A worker that exits is logged and started again after a
  back-off (0.5 s, doubling to 10 s; reset after 30 s up). Its share of the
  objects goes to the parent directly meanwhile (a refused owner is skipped).
- **One admin listener.** ``--admin-port`` is the supervisor's: ``/healthz``
  (200 while every worker answers), ``/stats`` (totals and each worker),
  ``/metrics`` (every worker's series with a ``worker`` label, and
  ``tiercdn_worker_up`` / ``tiercdn_worker_restarts_total``), ``/top`` (the
  workers' counts summed); ``POST /purge`` and ``/prewarm`` are sent to every
  worker (same body and token). Workers' own admin listeners are on loopback.
- **Signals.** SIGTERM/SIGINT stop the workers (each drains as a node does) and
  then the supervisor; SIGHUP and SIGUSR1 are passed on (reload, reopen logs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from shared.engine.tasks import spawn
from shared.service import handoff
from shared.service.admin import FROM_CACHE, LOOKUPS
from shared.service.run import open_listeners
from shared.service.settings import CacheSettings

__all__ = ["WorkerSet", "share", "supervise"]

log = logging.getLogger(__name__)

_BACKOFF = (0.5, 10.0)  # first and longest wait before a worker is started again
_STEADY = 30.0  # seconds up after which a worker's back-off starts over
_READY_SECONDS = 60.0  # every worker must answer its /healthz within this
_STOP_SECONDS = 35.0  # a worker draining longer than this is killed
_ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=10)
_SUMMED = (  # /stats counts that add up over the workers
    *("objects", "bytes", "capacity_bytes", "evictions", "admitted", "rejected"),
    *("fills_in_flight", "misses_in_flight"),
)


S = TypeVar("S", bound=CacheSettings)


def share(settings: S, index: int, count: int) -> S:
    """Worker ``index`` of ``count``'s settings: named ``NAME.wI``, with 1/count of the
    byte budgets and a disk folder of its own (``--disk-path``/``worker-I``)."""
    return dataclasses.replace(
        settings,
        name=f"{settings.name}.w{index}",
        cache_bytes=max(settings.cache_bytes // count, 1),
        disk_bytes=max(settings.disk_bytes // count, 1),
        disk_path=os.path.join(settings.disk_path, f"worker-{index}") if settings.disk_path else "",
    )


def _listening(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


class Worker:
    """One worker process: its sockets, its process, its restarts."""

    def __init__(self, index: int, public: socket.socket, host: str, port: int) -> None:
        self.index = index
        self.public, self.host, self.port = public, host, port
        self.peer = _listening("127.0.0.1", 0, reuse_port=False)  # its peers ask it here
        self.admin = _listening("127.0.0.1", 0, reuse_port=False)
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.started = 0.0
        self.backoff = _BACKOFF[0]

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer.getsockname()[1]}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin.getsockname()[1]}"

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class WorkerSet:
    """The supervisor's workers, and their start, restart and stop."""

    def __init__(self, settings: CacheSettings, argv: Sequence[str], module: str) -> None:
        self.settings, self.argv, self.module = settings, list(argv), module
        n = settings.worker_count()
        host, port = settings.host, settings.port
        shared = handoff.inherited(host, port)  # tiercdn up bound it: every worker accepts on it
        if shared is not None:
            shared.set_inheritable(True)  # (the ones bound here are already)
            sockets = [shared] * n
            port = int(shared.getsockname()[1])
        else:
            first = _listening(host, port, reuse_port=True)
            port = int(first.getsockname()[1])  # --port 0: the others take the same one
            sockets = [first, *(_listening(host, port, reuse_port=True) for _ in range(n - 1))]
        self.port = port
        self.workers = [Worker(i, sock, host, port) for i, sock in enumerate(sockets)]
        self.stopping = False

    def command(self, worker: Worker) -> list[str]:
        """The worker's command line: the node's own, with its addresses (its share of
        the budgets and its name it takes itself, ``share``, reloads included)."""
        extra = [
            "--workers", "1",
            "--port", str(self.port),
            "--admin-host", "127.0.0.1",
            "--admin-port", str(worker.admin.getsockname()[1]),
        ]  # fmt: skip
        return [sys.executable, "-m", self.module, *self.argv, *extra]

    async def start(self, worker: Worker) -> None:
        fds = {
            (worker.host, self.port): worker.public.fileno(),
            ("127.0.0.1", worker.peer.getsockname()[1]): worker.peer.fileno(),
            ("127.0.0.1", worker.admin.getsockname()[1]): worker.admin.fileno(),
        }
        env = {k: v for k, v in os.environ.items() if k not in handoff.SUPERVISOR_ENV}
        env[handoff.LISTEN_FDS_ENV] = handoff.listen_fds(fds)
        env[handoff.WORKER_ENV] = f"{worker.index}/{len(self.workers)}"
        env[handoff.ALSO_LISTEN_ENV] = f"127.0.0.1:{worker.peer.getsockname()[1]}"
        others = [w.peer_url for w in self.workers if w is not worker]
        env[handoff.SIBLINGS_ENV] = ",".join([worker.peer_url, *others])
        worker.proc = await asyncio.create_subprocess_exec(
            *self.command(worker),
            env=env,
            pass_fds=tuple(fds.values()),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),  # its ready line is not the node's
        )
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        """Until every worker answers ``/healthz``; a worker that exits first fails it."""
        deadline = time.monotonic() + _READY_SECONDS
        for worker in self.workers:
            while not await _healthy(http, worker):
                if not worker.up:
                    raise RuntimeError(f"worker {worker.index} exited before it was ready")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker {worker.index} not ready in {_READY_SECONDS:g}s")
                await asyncio.sleep(0.05)

    async def keep(self, worker: Worker) -> None:
        """Restart ``worker`` whenever it exits, until the set stops."""
        while not self.stopping:
            assert worker.proc is not None
            code = await worker.proc.wait()
            if self.stopping:
                return
            if time.monotonic() - worker.started > _STEADY:
                worker.backoff = _BACKOFF[0]
            log.warning(
                "worker %d exited (code %s): starting it again in %.1fs",
                worker.index,
                code,
                worker.backoff,
            )
            await asyncio.sleep(worker.backoff)
            worker.backoff = min(worker.backoff * 2, _BACKOFF[1])
            if self.stopping:
                return
            worker.restarts += 1
            await self.start(worker)

    def signal(self, sig: int) -> None:
        for worker in self.workers:
            if worker.up:
                assert worker.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)

    async def stop(self) -> None:
        self.stopping = True
        self.signal(signal.SIGTERM)
        procs = [w.proc for w in self.workers if w.proc is not None]
        try:
            async with asyncio.timeout(_STOP_SECONDS):
                await asyncio.gather(*(p.wait() for p in procs))
        except TimeoutError:
            log.warning("workers still draining after %gs: killed", _STOP_SECONDS)
            self.signal(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in procs))


async def _healthy(http: aiohttp.ClientSession, worker: Worker) -> bool:
    if not worker.up:
        return False
    try:
        async with http.get(worker.admin_url + "/healthz") as r:
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


# -- the supervisor's admin listener -----------------------------------------------


def make_admin(workers: WorkerSet, http: aiohttp.ClientSession) -> web.Application:
    """``/healthz``, ``/stats``, ``/metrics``, ``/top`` over every worker; purge and
    pre-warm sent to each."""
    name = workers.settings.name

    async def each(method: str, path: str, request: web.Request) -> list[tuple[int, Any]]:
        body = await request.read() if request.can_read_body else None
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        if body is not None:
            headers["Content-Type"] = request.headers.get("Content-Type", "application/json")

        async def one(worker: Worker) -> tuple[int, Any]:
            try:
                url = worker.admin_url + path
                async with http.request(method, url, data=body, headers=headers) as r:
                    text = await r.text()
                    try:
                        return r.status, json.loads(text)
                    except ValueError:
                        return r.status, text
            except (aiohttp.ClientError, TimeoutError) as exc:
                return 503, {"error": f"worker {worker.index} unreachable: {exc}"}

        return list(await asyncio.gather(*(one(w) for w in workers.workers)))

    async def healthz(request: web.Request) -> web.Response:
        down = [w.index for w in workers.workers if not await _healthy(http, w)]
        if down:
            return web.Response(status=503, text=f"workers down: {down}\n")
        return web.Response(text="ok\n")

    async def stats(request: web.Request) -> web.Response:
        answers = await each("GET", "/stats", request)
        per = [a if s == 200 and isinstance(a, dict) else None for s, a in answers]
        return web.json_response(_total_stats(name, per))

    async def metrics(request: web.Request) -> web.Response:
        answers = await each("GET", "/metrics", request)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged(workers, [a if s == 200 else "" for s, a in answers]))
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def top(request: web.Request) -> web.Response:
        answers = await each("GET", "/top?" + request.query_string, request)
        counts: dict[str, int] = {}
        for status, answer in answers:
            for title in answer.get("titles", []) if status == 200 else []:
                counts[title["manifest"]] = counts.get(title["manifest"], 0) + title["requests"]
        n = int(request.query.get("n", "10")) if request.query.get("n", "").isdigit() else 10
        best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        titles = [{"manifest": m, "requests": c} for m, c in best]
        return web.json_response({"node": name, "titles": titles})

    def fan_out(path: str) -> Any:
        async def route(request: web.Request) -> web.Response:
            answers = await each("POST", path, request)
            status = next((s for s, _ in answers if s >= 300), 200)
            body: dict[str, Any] = {"node": name, "workers": [a for _, a in answers]}
            if path == "/purge":
                body["purged"] = sum(
                    a.get("purged", 0) for s, a in answers if s == 200 and isinstance(a, dict)
                )
            return web.json_response(body, status=status)

        return route

    admin = web.Application()
    admin.router.add_get("/healthz", healthz)
    admin.router.add_get("/stats", stats)
    admin.router.add_get("/metrics", metrics)
    admin.router.add_get("/top", top)
    admin.router.add_post("/purge", fan_out("/purge"))
    admin.router.add_post("/prewarm", fan_out("/prewarm"))
    return admin


def _total_stats(name: str, per: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The workers' ``/stats`` summed (hit ratio from the summed counts), and each one."""
    up = [p for p in per if p is not None]
    total: dict[str, Any] = {"name": name, "workers_up": len(up), "workers": per}
    for key in _SUMMED:
        total[key] = sum(p.get(key) or 0 for p in up)
    requests: collections.Counter[str] = collections.Counter()
    for p in up:
        requests.update(p.get("requests") or {})  # (update keeps outcomes counted 0)
    total["requests"] = dict(requests)
    lookups = sum(requests.get(o.value, 0) for o in LOOKUPS)
    hits = sum(requests.get(o.value, 0) for o in FROM_CACHE)
    total["hit_ratio"] = round(hits / lookups, 4) if lookups else None
    upstreams: dict[str, str] = {}
    for p in up:
        for parent, state in (p.get("upstreams") or {}).items():
            if upstreams.get(parent, "closed") == "closed":
                upstreams[parent] = state  # a breaker not closed in any worker shows
    total["upstreams"] = upstreams
    disks = [p["disk"] for p in up if p.get("disk")]
    total["disk"] = (
        {k: sum(d.get(k) or 0 for d in disks) for k in ("objects", "bytes", "capacity_bytes")}
        if disks
        else None
    )
    return total


class _Merged:
    """Every worker's series, labelled ``worker``, plus the supervisor's own."""

    def __init__(self, workers: WorkerSet, texts: list[Any]) -> None:
        self.workers, self.texts = workers, texts

    def collect(self) -> Any:
        families: dict[str, Metric] = {}
        for worker, text in zip(self.workers.workers, self.texts, strict=True):
            if not isinstance(text, str):
                continue
            for family in text_string_to_metric_families(text):
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(
                        family.name, family.documentation, family.type
                    )
                for sample in family.samples:
                    labels = {**sample.labels, "worker": str(worker.index)}
                    merged.add_sample(sample.name, labels, sample.value, sample.timestamp)
        yield from families.values()
        up = Metric("tiercdn_worker_up", "1 while the worker process runs", "gauge")
        restarts = Metric("tiercdn_worker_restarts", "Worker processes started again", "counter")
        for worker in self.workers.workers:
            up.add_sample("tiercdn_worker_up", {"worker": str(worker.index)}, float(worker.up))
            restarts.add_sample(
                "tiercdn_worker_restarts_total", {"worker": str(worker.index)}, worker.restarts
            )
        yield up
        yield restarts


# -- the supervisor -----------------------------------------------------------------


async def supervise(settings: CacheSettings, argv: Sequence[str], module: str) -> None:
    """Run ``settings.worker_count()`` workers of ``python -m module argv`` until
    SIGINT/SIGTERM; see the module notes."""
    workers = WorkerSet(settings, argv, module)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for sig in (signal.SIGHUP, signal.SIGUSR1):
        loop.add_signal_handler(sig, workers.signal, sig)
    async with aiohttp.ClientSession(timeout=_ADMIN_TIMEOUT) as http:
        for worker in workers.workers:
            await workers.start(worker)
        keepers: list[asyncio.Task[None]] = []
        listeners = []
        try:
            try:
                await workers.wait_ready(http)
            except RuntimeError as exc:  # its own error is on stderr above this line
                print(f"error: {exc}; nothing started", file=sys.stderr, flush=True)
                raise SystemExit(1) from None
            keepers = [spawn(workers.keep(w), name=f"worker-{w.index}") for w in workers.workers]
            if settings.admin_port:
                listeners = await open_listeners(
                    make_admin(workers, http),
                    settings.admin_host,
                    settings.admin_port,
                    name="admin",
                )
            n = len(workers.workers)
            handoff.ready()
            print(
                f"{settings.name} ready on http://{settings.host}:{workers.port}/ ({n} workers)",
                flush=True,
            )
            await stop.wait()
            log.info("stopping %d workers", n)
        finally:
            await workers.stop()
            for task in keepers:
                task.cancel()
            for listener in listeners:
                with contextlib.suppress(Exception):
                    await listener.stop()
