"""libCacheSim's policies on the benchmark's traces, through its Python bindings.

libCacheSim [Yang et al.; the ``libcachesim`` package] is the reference cache
simulator of the S3-FIFO (SOSP 2023) and SIEVE (NSDI 2024) papers. This module
replays one trace through a named policy of it and answers, per request,
whether it hit: the caller turns that into object and byte hit ratios exactly
as it does for tiercdn's own store, so every figure is counted the same way.

Fair comparison: each object is charged the same bytes as in tiercdn's store
(body + the per-object overhead the benchmark measured), the cache gets the
same byte budget, object metadata is not charged on top
(``consider_obj_metadata=False``). BeladySize is an oracle (it reads each
request's next access time), not an online policy: it is reported, never a
target to beat.

A benchmark extra (``pip install 'tiercdn[benchmark]'``), never a runtime
dependency: ``available()`` says whether it is installed, and nothing is
imported from it until a trace is replayed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

__all__ = ["ONLINE", "ORACLES", "available", "hits"]

ONLINE = ("LRU", "WTinyLFU", "S3FIFO", "Sieve", "ARC", "LHD", "GDSF")
ORACLES = ("BeladySize",)
_HASHPOWER = 18  # hash table of 2^18 buckets: the traces hold < 100k objects (default 2^24)
_NEVER = 1 << 62  # next access time of a request whose object is never asked for again


def available() -> bool:
    """Is the ``libcachesim`` package installed?"""
    return importlib.util.find_spec("libcachesim") is not None


def hits(
    name: str, trace: Sequence[int], sizes: Sequence[int], overhead: int, capacity: int
) -> list[bool]:
    """Replay ``trace`` (object ids) through libCacheSim's ``name`` with ``capacity``
    bytes, each object charged ``sizes[id] + overhead``: hit or miss per request."""
    import libcachesim as lcs  # type: ignore[import-untyped,import-not-found,unused-ignore]

    if name not in ONLINE + ORACLES:
        raise ValueError(f"unknown libCacheSim policy {name!r}")
    cache = getattr(lcs, name)(capacity, hashpower=_HASHPOWER)
    following = _next_uses(trace) if name in ORACLES else None
    get, request, op = cache.get, lcs.Request, lcs.ReqOp.OP_GET
    out = []
    for i, oid in enumerate(trace):
        nxt = following[i] if following is not None else -2  # -2: libCacheSim's "unknown"
        req = request(
            obj_size=sizes[oid] + overhead,
            obj_id=oid + 1,  # 0 is not a valid id there
            clock_time=i,
            next_access_vtime=nxt,
            op=op,
        )
        out.append(bool(get(req)))
    return out


def _next_uses(trace: Sequence[int]) -> list[int]:
    """For each request, the virtual time (1-based index) of its object's next request."""
    following = [_NEVER] * len(trace)
    last: dict[int, int] = {}
    for i in range(len(trace) - 1, -1, -1):
        following[i] = last.get(trace[i], _NEVER)
        last[trace[i]] = i + 1
    return following
