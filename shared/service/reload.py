"""Reload (SIGHUP): apply a cache node's new settings to it while it serves.

``apply`` compares the node's settings with new ones and changes, field by
field, what can change live: store budgets (memory and disk), the admission
policy and the largest stored object, shedding caps, the origin budget,
breaker thresholds, stale windows and the heuristic, upstreams and fallback,
pass and negative TTLs, the targeted field, log level, admin token and
Retry-After. Every other changed field needs a new listener, store or process
(ports, hosts, the disk path, the event loop...): it is named
"needs a restart" and keeps its old value in ``node.settings``, so
``node.settings`` always describes what the node runs.

Nothing in flight is cut: a fill keeps its parent and its budget slot, an
admitted miss keeps running under the old caps, a smaller store evicts by its
own order but a body being sent (bytes, or a file already open) is sent whole,
and a fill over a smaller ``max_object_bytes`` streams on instead of storing.
``reload`` is the SIGHUP path: read the settings again the way the node started
(``load``), refuse an invalid file with one ERROR line, else ``apply`` and log
what changed. ``diff`` and ``reload_with`` are that path for any service's
settings (the origin reloads with them too).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import TypeVar

from cachetools import TTLCache

from shared.engine.node import Node
from shared.http import target_list
from shared.policy.breaker import CircuitBreaker
from shared.service.settings import CacheSettings
from shared.store import TieredStore

__all__ = ["LIVE", "apply", "diff", "reload", "reload_with"]

log = logging.getLogger(__name__)
S = TypeVar("S")

_STORE = ("cache_bytes", "disk_bytes", "admission", "max_object_bytes", "disk_max_object_bytes")
_SHEDDING = ("max_requests", "max_fills")
_BUDGET = ("origin_rate", "origin_burst", "origin_concurrency", "origin_wait")
_BREAKER = ("breaker_min_requests", "breaker_error_rate", "breaker_window", "breaker_cooldown")
_POLICY = ("heuristic_max_age", "stale_if_error", "stale_if_busy")
_ROUTES = ("upstream", "fallback", "peer", "peer_url")
_FETCHER = ("pass_ttl", "negative_ttl", "targeted_cache_control")
_READ_ONLY = ("log_level", "admin_token", "retry_after")  # read from node.settings or logging
LIVE = frozenset(
    _STORE + _SHEDDING + _BUDGET + _BREAKER + _POLICY + _ROUTES + _FETCHER + _READ_ONLY
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def diff(old: S, new: S, live: frozenset[str]) -> tuple[S, set[str], list[str]]:
    """What ``new`` changes in ``old`` (any service's settings): the settings to run
    (``new`` with old values where a changed field is not in ``live``), the live
    fields that changed, and every changed field as a flag, those not applied marked
    ``"--port (needs a restart)"``."""
    changed = [
        f.name
        for f in dataclasses.fields(new)  # type: ignore[arg-type]
        if getattr(new, f.name) != getattr(old, f.name, None)
    ]
    applied = {name for name in changed if name in live}
    kept = {name: getattr(old, name) for name in changed if name not in live}
    s: S = dataclasses.replace(new, **kept)  # type: ignore[type-var]
    flags = [_flag(n) if n in applied else f"{_flag(n)} (needs a restart)" for n in changed]
    return s, applied, flags


def apply(node: Node, new: CacheSettings) -> list[str]:
    """Apply ``new`` to ``node``; the changed fields as flags, those not applied
    marked ``"--port (needs a restart)"``. Unchanged settings are not touched."""
    s, live, changes = diff(node.settings, new, LIVE)  # s: what the node will run
    if live & set(_STORE):
        node.store.reconfigure(memory=s.cache_bytes, disk=s.disk_bytes, policy=s.admission)
        node.fetcher.max_object_bytes = s.stored_object_bytes  # read per chunk by fills
        if isinstance(node.store, TieredStore):
            node.store.promote_limit = s.max_object_bytes
            node.store.disk_limit = s.disk_max_object_bytes
    if live & set(_SHEDDING):
        node.shedder.resize(s.max_requests, s.max_fills)
    if live & set(_BUDGET):
        node.budget.reconfigure(
            rate=s.origin_rate,
            burst=s.origin_burst,
            concurrency=s.origin_concurrency,
            max_wait=s.origin_wait,
        )
    if live & set(_BREAKER):
        node.upstream.retune_breakers(_breakers(s))
    if live & set(_ROUTES):
        found = node.discovery
        if found is not None:
            found.settings = s
        node.upstream.reroute([*s.upstream, *(found.parents if found else ())], s.fallback)
        peers = [*s.peer, *(found.peers if found else ())]
        node.upstream.repeer(peers, found.own_url(found.peers) if found else s.own_url)
    fetcher = node.fetcher
    fetcher.heuristic_max_age, fetcher.stale_if_error = s.heuristic_max_age, s.stale_if_error
    if "pass_ttl" in live:  # marks so far go: a URL gets one more fill attempt at worst
        fetcher.pass_marks = TTLCache(fetcher.pass_marks.maxsize, ttl=s.pass_ttl, timer=node.clock)
    fetcher.negative_ttl = s.negative_ttls()
    fetcher.targets = target_list(s.targeted_cache_control)
    if "log_level" in live:
        logging.getLogger().setLevel(s.log_level.upper())
    policy = dataclasses.replace(
        node.policy,
        heuristic_max_age=s.heuristic_max_age,
        stale_if_error=s.stale_if_error,
        stale_if_busy=s.stale_if_busy,
    )
    node.swap(s, policy)
    return changes


def _breakers(s: CacheSettings) -> Callable[[], CircuitBreaker]:
    return lambda: CircuitBreaker(
        min_requests=s.breaker_min_requests,
        error_rate=s.breaker_error_rate,
        window=s.breaker_window,
        cooldown=s.breaker_cooldown,
    )


async def reload(node: Node, read: Callable[[], CacheSettings]) -> list[str] | None:
    """Read the settings again (``read``: the node's own ``load`` call) and apply them;
    None when they are invalid (one ERROR line, the old settings kept)."""
    return await reload_with(node.name, read, lambda new: apply(node, new))


async def reload_with(
    name: str, read: Callable[[], S], apply: Callable[[S], list[str]]
) -> list[str] | None:
    """Any service's SIGHUP: ``read`` its settings again (in a thread: it reads a
    file), ``apply`` them and log what changed (INFO) and what needs a restart
    (WARNING); None when ``read`` refuses them (one ERROR line, nothing applied)."""
    try:
        new = await asyncio.to_thread(read)
    except SystemExit as exc:  # load's way to report a bad file, flag or env value
        code = exc.code
        reason = code.removeprefix("error: ") if isinstance(code, str) else "invalid settings"
        log.error("%s reload refused, old settings kept: %s", name, reason)
        return None
    changes = apply(new)
    applied = [c for c in changes if not c.endswith("(needs a restart)")]
    restart = [c.split()[0] for c in changes if c.endswith("(needs a restart)")]
    log.info("%s reloaded: %s", name, ", ".join(applied) or "nothing changed")
    if restart:
        log.warning("%s reload: %s changed but needs a restart", name, ", ".join(restart))
    return changes
