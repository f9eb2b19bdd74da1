"""Miss storm: N clients ask the edge for the same cold segment at the same instant.

``python -m loadtest.storm`` makes a library with one title of segment-sized
``.m4s`` files of random bytes (or takes ``--library`` and ``--path``),
starts origin → regional → edge as processes with the origin slowed
(``--fault-delay`` before its headers, ``--fault-rate`` on its bodies), and
in each round sends ``--clients`` GETs for one cold segment to the edge at
once. It reports the leader's time to first byte (TTFB), the waiters' TTFB
and how far their first bytes trail the leader's (DESIGN.md: nginx's waiters
poll every 500 ms; ours should trail the leader by scheduling only), the
same for the first body byte, times to the last byte, the requests that
reached each tier (single flight: exactly one per tier), errors, and the
edge's peak RSS.

Invariants:

- The edge is measured, not the client: the client is its own process (on
  uvloop, raw ``asyncio.Protocol`` connections), opens every keep-alive
  connection first and proves each one is accepted with a warm-up hit on a
  tiny cached object (the temporary library's, or ``--warm-path``), then
  writes all N requests in one loop. Times are per connection, from its
  request's write to the first response byte (the head), the first body byte
  and the last. Every body is compared with the file on disk as it streams
  (Content-Length or chunked); nothing is kept.
- Which request led is read from the edge's own ``Cache-Status`` member
  (no ``collapsed``); the client with the smallest TTFB stands in if that
  fails. The spread target compares arrival times (a waiter's first byte
  after the leader's), not TTFBs, which would credit a request written late
  in the send loop with its lateness. Metrics, peak RSS and the edge's CPU
  time are read just before the go and after the round.
- Bounded: ``--clients`` connections, ``--rounds`` rounds, every wait has a
  timeout (``--timeout`` per round). Only loopback, only ports from the OS.
  Exit 0 unless something crashed, or ``--check`` and a target failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from loadtest.eventloop import run_loop
from loadtest.report import config_of, host_facts, write_summary
from loadtest.stats import ms, percentile, spread
from loadtest.tables import cell, dig, print_targets
from loadtest.titles import random_title
from loadtest.topology import Topology, TopologyError, metrics
from loadtest.usage import cpu_seconds, rss_bytes
from shared.service.limits import raise_fd_limit

__all__ = ["ClientSpec", "Sample", "main", "run_client", "summarise_round"]

SEED = 20240607
TITLE = "storm"
SEGMENT_BYTES = 700 * 1024
MIN_SEGMENTS = 3
WARM_NAME = "warm.m4s"  # a tiny object every connection fetches first (a hit)
WARM_BYTES = 1024
NGINX_LEADER_TTFB_MS = 210.0  # DESIGN.md, nginx miss storm with a 200 ms origin: the lock
NGINX_WAITER_TTFB_MS = 500.0  # holder's first byte at ≈ 210 ms, every waiter's at ≥ 500 ms
MIB = 1024 * 1024
_HEAD_LIMIT = 64 * 1024


# -- the client: its own process, raw asyncio protocols -----------------------------------


@dataclasses.dataclass(frozen=True)
class ClientSpec:
    """What one storm client process does (pickled to a spawned process)."""

    host: str
    port: int
    path: str  # the cold object of this round
    body_file: str  # its bytes on disk, to check every response against
    warm_path: str | None  # fetched once per connection before the storm (None: skip)
    warm_file: str | None
    clients: int
    connect_concurrency: int  # connects in flight at once (below the edge's listen backlog)
    timeout: float  # seconds for each phase: connect, warm-up, storm


@dataclasses.dataclass(frozen=True)
class Sample:
    """One connection's storm request: times from its write, in seconds."""

    sent: float  # when its request was written, after the first write of the storm
    ttfb: float | None  # first response byte (the head)
    first_body: float | None  # first body byte
    last_byte: float | None
    status: int
    error: str  # "" when the response was a 200 with the file's exact bytes
    member: str  # the edge's own Cache-Status member ("" if none)


class _Conn(asyncio.Protocol):
    """One keep-alive connection, one request at a time; the response is parsed
    and compared with the expected body as it arrives (nothing is buffered)."""

    def __init__(self) -> None:
        # guarded by: single event loop
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._done: asyncio.Future[None] | None = None
        self._expected = b""
        self._head = bytearray()
        self._in_body = False
        self._remaining: int | None = None  # identity body bytes still due (None: chunked)
        self._chunked = bytearray()
        self._chunk_left = 0  # data bytes left in the current chunk; -1: expect its CRLF
        self.sent = self.first = self.first_body = self.last = 0.0
        self.pos = 0
        self.status = 0
        self.error = ""
        self.member = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def prepare(self, request: bytes, expected: bytes) -> asyncio.Future[None]:
        """Reset for a new exchange; the caller then calls ``send`` with ``request``."""
        self._done = asyncio.get_running_loop().create_future()
        self._expected, self._head, self._in_body = expected, bytearray(), False
        self._remaining, self._chunked, self._chunk_left = None, bytearray(), 0
        self.first = self.first_body = self.last = 0.0
        self.pos, self.status, self.error, self.member = 0, 0, "", ""
        if self.lost or self.transport is None:
            self._finish("connection closed before the request")
        return self._done

    def send(self, request: bytes) -> None:
        if self.transport is not None and not self.lost:
            self.sent = time.perf_counter()
            self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self._done is None or self._done.done():
            return  # unsolicited bytes: nothing to check them against
        if not self.first:
            self.first = now
        if not self._in_body:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _HEAD_LIMIT:
                    self._finish("response head too large")
                return
            data = bytes(self._head[end + 4 :])
            self._parse_head(bytes(self._head[:end]).decode("latin-1"))
            self._in_body = True
            if self._done.done():
                return
        if self._remaining is None:
            self._feed_chunked(data)
        else:
            self._feed_identity(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._done is not None and not self._done.done():
            self._finish(f"connection lost after {self.pos} body bytes ({exc or 'eof'})")

    def _parse_head(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            fields[key] = f"{fields[key]}, {value.strip()}" if key in fields else value.strip()
        self.member = fields.get("cache-status", "").rsplit(",", 1)[-1].strip()
        if self.status != 200:
            self.error = f"status {self.status}"
        if "chunked" in fields.get("transfer-encoding", "").lower():
            self._remaining = None
        elif fields.get("content-length", "").isdigit():
            self._remaining = int(fields["content-length"])
            if self._remaining == 0:
                self._complete()
        else:
            self._finish("response without Content-Length or chunked framing")

    def _feed_identity(self, data: bytes) -> None:
        assert self._remaining is not None
        if len(data) > self._remaining:
            self._finish(f"{len(data) - self._remaining} bytes past Content-Length")
            return
        self._check(data)
        self._remaining -= len(data)
        if self._remaining == 0:
            self._complete()

    def _feed_chunked(self, data: bytes) -> None:
        buf = self._chunked
        buf += data
        while buf and not (self._done is None or self._done.done()):
            if self._chunk_left > 0:
                take = min(self._chunk_left, len(buf))
                self._check(bytes(buf[:take]))
                del buf[:take]
                self._chunk_left -= take
                if self._chunk_left == 0:
                    self._chunk_left = -1
                continue
            end = buf.find(b"\r\n")
            if end < 0:
                return
            line = bytes(buf[:end])
            del buf[: end + 2]
            if self._chunk_left == -1:  # the CRLF after a chunk's data
                self._chunk_left = 0
                if line:
                    self._finish("chunk data longer than its size")
            elif self._chunk_left == -2:  # trailer section: ends at an empty line
                if not line:
                    self._complete()
            else:
                try:
                    size = int(line.split(b";", 1)[0], 16)
                except ValueError:
                    self._finish(f"bad chunk size line {line[:40]!r}")
                    return
                self._chunk_left = size if size else -2

    def _check(self, data: bytes) -> None:
        if not self.first_body and data:
            self.first_body = time.perf_counter()
        if not self.error and self._expected[self.pos : self.pos + len(data)] != data:
            self.error = (
                f"body differs from the file within bytes {self.pos}-{self.pos + len(data)}"
            )
        self.pos += len(data)

    def _complete(self) -> None:
        if not self.error and self.status == 200 and self.pos != len(self._expected):
            self.error = f"body of {self.pos} bytes, the file has {len(self._expected)}"
        self._finish(self.error)

    def _finish(self, error: str) -> None:
        self.last = time.perf_counter()
        self.error = self.error or error
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    def sample(self, started: float) -> Sample:
        """Times of the last exchange; ``started``: when the first request was written."""
        sent = self.sent - started
        if self._done is None or not self._done.done():
            return Sample(sent, None, None, None, self.status, self.error or "timeout", self.member)
        ttfb = self.first - self.sent if self.first else None
        body = self.first_body - self.sent if self.first_body else None
        last = self.last - self.sent
        return Sample(sent, ttfb, body, last, self.status, self.error, self.member)


def _request(spec: ClientSpec, path: str) -> bytes:
    host = f"{spec.host}:{spec.port}"
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tiercdn-storm\r\n\r\n".encode()


async def _connect(spec: ClientSpec) -> tuple[list[_Conn], list[str]]:
    """Open ``spec.clients`` connections, at most ``connect_concurrency`` at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(spec.connect_concurrency)

    async def one() -> _Conn:
        async with gate:
            _, conn = await loop.create_connection(_Conn, spec.host, spec.port)
            return conn

    tries = [one() for _ in range(spec.clients)]
    got = await asyncio.wait_for(asyncio.gather(*tries, return_exceptions=True), spec.timeout)
    conns = [c for c in got if isinstance(c, _Conn)]
    return conns, [f"connect: {e!r}" for e in got if isinstance(e, BaseException)]


async def _exchange(
    conns: list[_Conn], request: bytes, expected: bytes, patience: float
) -> list[Sample]:
    """Send ``request`` on every connection in one loop (no await between the writes,
    so they leave back to back); wait for every response."""
    waits = [c.prepare(request, expected) for c in conns]
    started = time.perf_counter()
    for conn in conns:
        conn.send(request)
    if waits:
        await asyncio.wait(waits, timeout=patience)
    return [c.sample(started) for c in conns]


async def _client(
    spec: ClientSpec, pipe: Connection, body: bytes, warm: bytes | None
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    conns, errors = await _connect(spec)
    warm_errors = 0
    if spec.warm_path and warm is not None:
        got = await _exchange(conns, _request(spec, spec.warm_path), warm, spec.timeout)
        warm_errors = sum(1 for s in got if s.error)
    pipe.send(("ready", {"connected": len(conns), "warm_errors": warm_errors}))
    if await loop.run_in_executor(None, pipe.recv) != "go":
        return {"samples": [], "errors": errors}
    samples = await _exchange(conns, _request(spec, spec.path), body, spec.timeout)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return {"samples": [dataclasses.asdict(s) for s in samples], "errors": errors}


def run_client(spec: ClientSpec, pipe: Connection) -> None:
    """Process entry point: connect, warm up, say ``ready``, wait for ``go``, storm,
    send ``("done", result)`` (or ``("error", text)``) back on ``pipe``."""
    raise_fd_limit()
    try:
        body = Path(spec.body_file).read_bytes()
        warm = Path(spec.warm_file).read_bytes() if spec.warm_file else None
        pipe.send(("done", run_loop(_client(spec, pipe, body, warm))))
    except Exception as exc:  # report it to the parent, which decides what fails
        pipe.send(("error", repr(exc)))
    finally:
        pipe.close()


# -- one round: orchestration, metrics and RSS -----------------------------------------


def _await(pipe: Connection, expect: str, timeout: float) -> Any:
    if not pipe.poll(timeout):
        raise RuntimeError(f"storm client sent no {expect!r} within {timeout:g}s")
    try:
        kind, payload = pipe.recv()
    except EOFError:
        raise RuntimeError(f"storm client exited before {expect!r}") from None
    if kind != expect:
        raise RuntimeError(f"storm client failed: {payload}")
    return payload


def _snapshot(top: Topology) -> dict[str, dict[str, float]]:
    return {name: metrics(tier.admin_url) for name, tier in top.tiers.items()}


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, int]:
    """Non-zero increments of counter ``name`` (``<name>_total``), keyed by label values."""
    out = {}
    prefix = name + "_total"
    for key, value in after.items():
        if key == prefix or key.startswith(prefix + "{"):
            labels = [
                part.split("=", 1)[1].strip('"')
                for part in key[len(prefix) + 1 : -1].split(",")
                if "=" in part
            ]
            inc = round(value - before.get(key, 0.0))
            if inc:
                out[",".join(labels) or "all"] = inc
    return out


def tier_counts(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """What reached each tier during the round, from the metric deltas."""
    edge_req = _delta(before["edge"], after["edge"], "tiercdn_requests")
    regional_req = _delta(before["regional"], after["regional"], "tiercdn_requests")
    edge_up = _delta(before["edge"], after["edge"], "tiercdn_upstream_requests")
    regional_up = _delta(before["regional"], after["regional"], "tiercdn_upstream_requests")
    origin_req = _delta(before["origin"], after["origin"], "tiercdn_origin_requests")
    return {
        "edge_requests": edge_req,
        "edge_to_regional": sum(edge_up.values()),
        "edge_upstream_by_result": edge_up,
        "regional_requests": regional_req,
        "regional_to_origin": sum(regional_up.values()),
        "regional_upstream_by_result": regional_up,
        "origin_requests": sum(origin_req.values()),
        "origin_requests_by_label": origin_req,
    }


def storm_round(top: Topology, spec: ClientSpec) -> dict[str, Any]:
    """Run one storm against ``top.edge`` in a spawned client process."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=run_client, args=(spec, child), name="storm-client", daemon=True)
    proc.start()
    child.close()
    try:
        ready = _await(parent, "ready", 3 * spec.timeout + 30)
        before = _snapshot(top)
        hwm_before = rss_bytes(top.edge.pid, "VmHWM")
        cpu_before = cpu_seconds(top.edge.pid)
        parent.send("go")
        result = _await(parent, "done", spec.timeout + 30)
        cpu_after = cpu_seconds(top.edge.pid)  # before the scrape's own CPU
        after = _snapshot(top)
        hwm_after = rss_bytes(top.edge.pid, "VmHWM")
        rss_after = rss_bytes(top.edge.pid)
    finally:
        parent.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    top.check_alive()
    row = summarise_round([Sample(**s) for s in result["samples"]], spec.clients)
    row["errors"] += len(result["errors"])  # connections that never opened
    grew = hwm_after - hwm_before if hwm_after and hwm_before else None
    cpu = cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
    row.update(
        path=spec.path,
        connected=ready["connected"],
        connect_errors=result["errors"][:5],
        warm_errors=ready["warm_errors"],
        tiers=tier_counts(before, after),
        edge_hwm_before=hwm_before,
        edge_hwm_after=hwm_after,
        edge_hwm_delta=grew,
        edge_hwm_delta_mib=None if grew is None else round(grew / MIB, 2),
        edge_rss_after=rss_after,
        edge_cpu_ms=None if cpu is None else round(cpu * 1000),  # clock ticks: 10 ms steps
        edge_cpu_us_per_client=None if cpu is None else round(cpu * 1e6 / spec.clients, 1),
    )
    return row


# -- figures -----------------------------------------------------------------------------


def _leader(good: Sequence[Sample]) -> tuple[Sample | None, str]:
    """The request that led the edge's fill: the one edge member without ``collapsed``
    (or ``hit``); failing that, the fastest first byte."""
    misses = [s for s in good if s.member and "collapsed" not in s.member and "hit" not in s.member]
    if len(misses) == 1:
        return misses[0], "cache-status"
    return (min(good, key=lambda s: s.ttfb or 0.0), "min-ttfb") if good else (None, "")


def _after(samples: Sequence[Sample], leader: Sample | None, body: bool) -> list[float]:
    """When each sample's first (body) byte arrived after the leader's first byte: absolute
    times, so a waiter written late in the send loop is not credited with its lateness."""
    if leader is None or leader.ttfb is None:
        return []
    lead = leader.sent + leader.ttfb
    return [s.sent + ((s.first_body if body else s.ttfb) or 0.0) - lead for s in samples]


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def summarise_round(samples: Sequence[Sample], clients: int) -> dict[str, Any]:
    """Leader and waiters' TTFB, first body byte and last byte, and errors (in ms)."""
    good = [s for s in samples if not s.error and s.ttfb is not None]
    leader, how = _leader(good)
    waiters = [s for s in good if s is not leader]
    ttfb = [s.ttfb or 0.0 for s in waiters]
    lead = leader.ttfb if leader else None
    kinds: dict[str, int] = {}
    for s in good:
        kind = "hit" if "hit" in s.member else "coalesced" if "collapsed" in s.member else "miss"
        kinds[kind] = kinds.get(kind, 0) + 1
    errors = [s.error for s in samples if s.error]
    return {
        "clients": clients,
        "ok": len(good),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "edge_outcomes_seen": kinds,
        "leader_by": how,
        "leader_ttfb_ms": ms(lead),
        "min_ttfb_ms": ms(min((s.ttfb or 0.0 for s in good), default=None)),
        "waiters_ttfb_ms": spread(ttfb),
        "waiters_p99_minus_leader_ms": ms(percentile(_after(waiters, leader, False), 99)),
        # each from its own write, so a late write is credited with its place in the loop:
        "waiters_ttfb_p99_minus_leader_ttfb_ms": ms(_minus(percentile(ttfb, 99), lead)),
        "leader_first_body_ms": ms(leader.first_body if leader else None),
        "waiters_first_body_ms": spread([s.first_body or 0.0 for s in waiters]),
        "waiters_body_p99_minus_leader_ms": ms(percentile(_after(waiters, leader, True), 99)),
        "last_byte_ms": spread([s.last_byte or 0.0 for s in good]),
        "send_loop_ms": ms(max((s.sent for s in samples), default=None)),
    }


def _median(rows: list[dict[str, Any]], *path: str) -> float | None:
    values = [float(v) for v in (dig(row, path) for row in rows) if isinstance(v, int | float)]
    return round(statistics.median(values), 2) if values else None


def medians(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    return {
        "leader_ttfb_ms": _median(rows, "leader_ttfb_ms"),
        "waiters_ttfb_p50_ms": _median(rows, "waiters_ttfb_ms", "p50"),
        "waiters_ttfb_p99_ms": _median(rows, "waiters_ttfb_ms", "p99"),
        "waiters_ttfb_max_ms": _median(rows, "waiters_ttfb_ms", "max"),
        "waiters_p99_minus_leader_ms": _median(rows, "waiters_p99_minus_leader_ms"),
        "waiters_ttfb_p99_minus_leader_ttfb_ms": _median(
            rows, "waiters_ttfb_p99_minus_leader_ttfb_ms"
        ),
        "leader_first_body_ms": _median(rows, "leader_first_body_ms"),
        "waiters_first_body_p99_ms": _median(rows, "waiters_first_body_ms", "p99"),
        "waiters_body_p99_minus_leader_ms": _median(rows, "waiters_body_p99_minus_leader_ms"),
        "last_byte_p50_ms": _median(rows, "last_byte_ms", "p50"),
        "last_byte_p99_ms": _median(rows, "last_byte_ms", "p99"),
        "last_byte_max_ms": _median(rows, "last_byte_ms", "max"),
        "edge_hwm_delta_mib": _median(rows, "edge_hwm_delta_mib"),
        "edge_cpu_ms": _median(rows, "edge_cpu_ms"),
    }


def targets(
    rows: list[dict[str, Any]], med: dict[str, float | None], spread_ms: float
) -> list[dict[str, Any]]:
    """Each target, what was seen and whether it holds (counts: in every round)."""

    def every(key: str) -> list[int]:
        return [int(r["tiers"][key]) for r in rows]

    spread = med["waiters_p99_minus_leader_ms"]
    found = [
        ("waiters' p99 first byte - leader's, median", f"<= {spread_ms:g} ms", spread,
         spread is not None and spread <= spread_ms),
        ("edge -> regional requests", "1 per round", every("edge_to_regional"),
         all(n == 1 for n in every("edge_to_regional"))),
        ("regional -> origin requests", "1 per round", every("regional_to_origin"),
         all(n == 1 for n in every("regional_to_origin"))),
        ("origin requests", "1 per round", every("origin_requests"),
         all(n == 1 for n in every("origin_requests"))),
        ("errors", "0 per round", [r["errors"] for r in rows],
         all(r["errors"] == 0 for r in rows)),
    ]  # fmt: skip
    return [{"target": t, "goal": g, "seen": s, "pass": bool(ok)} for t, g, s, ok in found]


# (title, path into a round's row, key in the medians); times in ms
_COLUMNS: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("leader", ("leader_ttfb_ms",), "leader_ttfb_ms"),
    ("w.p50", ("waiters_ttfb_ms", "p50"), "waiters_ttfb_p50_ms"),
    ("w.p99", ("waiters_ttfb_ms", "p99"), "waiters_ttfb_p99_ms"),
    ("p99-ldr", ("waiters_p99_minus_leader_ms",), "waiters_p99_minus_leader_ms"),
    ("body.l", ("leader_first_body_ms",), "leader_first_body_ms"),
    ("body.99", ("waiters_first_body_ms", "p99"), "waiters_first_body_p99_ms"),
    ("b99-ldr", ("waiters_body_p99_minus_leader_ms",), "waiters_body_p99_minus_leader_ms"),
    ("last50", ("last_byte_ms", "p50"), "last_byte_p50_ms"),
    ("last99", ("last_byte_ms", "p99"), "last_byte_p99_ms"),
    ("e>r", ("tiers", "edge_to_regional"), None),
    ("r>o", ("tiers", "regional_to_origin"), None),
    ("orig", ("tiers", "origin_requests"), None),
    ("errors", ("errors",), None),
    ("HWM+MiB", ("edge_hwm_delta_mib",), "edge_hwm_delta_mib"),
    ("edgeCPU", ("edge_cpu_ms",), "edge_cpu_ms"),
)


def print_report(
    rows: list[dict[str, Any]], med: dict[str, float | None], goals: list[dict[str, Any]]
) -> None:
    print("\n" + f"{'round':>6} " + " ".join(f"{t:>7}" for t, _, _ in _COLUMNS) + "  (ms)")
    for i, row in enumerate(rows, 1):
        print(f"{i:>6} " + " ".join(cell(dig(row, path), 7) for _, path, _ in _COLUMNS))
    cells = (cell(med[key], 7) if key else " " * 7 for _, _, key in _COLUMNS)
    print(f"{'median':>6} " + " ".join(cells))
    for r in rows:
        if r["error_examples"] or r["connect_errors"]:
            print(f"  errors in {r['path']}: {(r['error_examples'] + r['connect_errors'])[:3]}")
    print(
        "leader, w.*: first response byte (head) of the leader and of the waiters, from each\n"
        "one's own request; body.*: first body byte; last*: last body byte; p99-ldr, b99-ldr:\n"
        "p99 of when the waiters' first byte, first body byte arrived after the leader's first\n"
        "byte; e>r, r>o, orig: requests edge->regional, regional->origin, at the origin;\n"
        "HWM+MiB: growth of the edge's peak RSS; edgeCPU: the edge's CPU time in the round"
    )
    print(
        f"nginx, origin 200 ms (DESIGN.md): leader ~{NGINX_LEADER_TTFB_MS:.0f} ms, waiters "
        f">= {NGINX_WAITER_TTFB_MS:.0f} ms (>= {NGINX_WAITER_TTFB_MS - NGINX_LEADER_TTFB_MS:.0f}"
        f" ms behind); here: waiters' p99 {med['waiters_ttfb_p99_ms']} ms, "
        f"{med['waiters_p99_minus_leader_ms']} ms behind the leader"
    )
    print_targets(goals, 42, 12)


# -- the scenario ------------------------------------------------------------------------


def make_library(root: Path, seed: int, count: int) -> list[str]:
    """One title of ``count`` random-byte segments plus the warm-up object; their paths."""
    chunks = [f"chunk-{i:05d}.m4s" for i in range(count)]
    random_title(root, TITLE, {WARM_NAME: WARM_BYTES} | dict.fromkeys(chunks, SEGMENT_BYTES), seed)
    return [f"/{TITLE}/{name}" for name in chunks]


def _on_disk(library: Path, path: str) -> Path:
    file = library / path.lstrip("/").split("?", 1)[0]
    if not file.is_file():
        raise SystemExit(f"error: {path} is not a file under {library}")
    return file


@contextlib.contextmanager
def _library(ns: argparse.Namespace) -> Iterator[tuple[Path, list[str], str | None]]:
    """(library, one cold path per round, warm-up path or None)."""
    if ns.library is None:
        with tempfile.TemporaryDirectory(prefix="tiercdn-storm-") as tmp:
            paths = make_library(Path(tmp), ns.seed, max(MIN_SEGMENTS, ns.rounds))
            yield Path(tmp), paths[: ns.rounds], f"/{TITLE}/{WARM_NAME}"
        return
    if len(ns.path) < ns.rounds:
        raise SystemExit("error: each round needs its own cold object: give --path per round")
    yield ns.library, ns.path[: ns.rounds], ns.warm_path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.storm",
        description="N clients ask the edge for one cold segment at once (a miss storm).",
    )
    p.add_argument("--clients", type=int, default=1000, help="concurrent clients (default 1000)")
    p.add_argument("--rounds", type=int, default=3, help="storms, each on a fresh object (3)")
    p.add_argument("--fault-delay", default="200ms", help="origin latency before headers")
    p.add_argument("--fault-rate", default="4MiB", help="origin per-response bandwidth cap")
    p.add_argument("--library", type=Path, help="serve this library instead of a temporary one")
    p.add_argument("--path", action="append", default=[], help="cold object (one per round)")
    p.add_argument("--warm-path", help="with --library: a small object for the warm-up")
    p.add_argument("--connect-concurrency", type=int, default=64, help="connects at once (64)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per phase (default 60)")
    p.add_argument("--target-spread-ms", type=float, default=50.0, help="waiters' p99 - leader")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the random bodies")
    p.add_argument("--json", type=Path, default=Path("reports/storm.json"), help="summary")
    p.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    if ns.clients < 1 or ns.rounds < 1 or ns.connect_concurrency < 1 or ns.timeout <= 0:
        raise SystemExit("error: --clients, --rounds, --connect-concurrency, --timeout > 0")
    load_before = os.getloadavg()
    origin_args = ("--fault-delay", ns.fault_delay, "--fault-rate", ns.fault_rate)
    print(
        f"storm: {ns.clients} clients x {ns.rounds} rounds, origin delay {ns.fault_delay}, "
        f"rate {ns.fault_rate}/s",
        flush=True,
    )
    rows = []
    try:
        with (
            _library(ns) as (library, paths, warm),
            Topology.start(library, tier_args={"origin": origin_args}) as top,
        ):
            for i, path in enumerate(paths, 1):
                spec = ClientSpec(
                    host=top.edge.host,
                    port=top.edge.port,
                    path=path,
                    body_file=str(_on_disk(library, path)),
                    warm_path=warm,
                    warm_file=str(_on_disk(library, warm)) if warm else None,
                    clients=ns.clients,
                    connect_concurrency=ns.connect_concurrency,
                    timeout=ns.timeout,
                )
                row = storm_round(top, spec)
                rows.append(row)
                print(
                    f"  round {i}/{len(paths)} {path}: leader {row['leader_ttfb_ms']} ms, "
                    f"waiters p99 {row['waiters_ttfb_ms']['p99']} ms, errors {row['errors']}",
                    flush=True,
                )
    except (TopologyError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    med = medians(rows)
    goals = targets(rows, med, ns.target_spread_ms)
    print_report(rows, med, goals)
    summary = {
        "scenario": "storm",
        "config": config_of(ns),
        "rounds": rows,
        "medians": med,
        "targets": goals,
        "pass": all(g["pass"] for g in goals),
        "host": host_facts(load_before),
    }
    write_summary(ns.json, summary)
    return 1 if ns.check and not summary["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
