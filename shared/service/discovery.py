"""Peers and parents found in DNS: ``--peers-dns`` and ``--upstream-dns``.

A name's A/AAAA records (a Kubernetes headless Service lists its ready pods
this way) are resolved every ``--dns-refresh`` and become URLs
``http://ADDRESS:PORT``; the node's pool then takes the static lists plus
these (``UpstreamPool.repeer`` / ``reroute``), only when something changed.
Rendezvous hashing keeps every key whose owner stayed where it was.

Faults stay small: a failed lookup keeps the last answer (one warning per
change of state, not per lookup); an empty answer for peers means no peers
(every miss goes to the parents), never a request nowhere.

Which record is this node: ``--peer-url`` when given, else the record whose
address is one of this host's (a socket binds to it), at the peers' port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence

from shared.engine.upstream import UpstreamPool
from shared.service.settings import CacheSettings

__all__ = ["Discovery", "is_local", "resolve", "split_name"]

log = logging.getLogger(__name__)


def split_name(name: str, default_port: int) -> tuple[str, int]:
    """``NAME[:PORT]`` as (NAME, PORT)."""
    host, colon, port = name.rpartition(":")
    if not colon or not port.isdigit():
        return name, default_port
    return host, int(port)


async def resolve(name: str, port: int) -> list[str]:
    """``http://ADDRESS:PORT`` for each A/AAAA record of ``name``, sorted, deduplicated."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    urls = set()
    for family, _, _, _, address in infos:
        host = address[0]
        urls.add(
            f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
        )
    return sorted(urls)


def is_local(url: str) -> bool:
    """Does ``url``'s address belong to this host (can a socket bind to it)?"""
    host = url.split("//", 1)[-1].rsplit(":", 1)[0].strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return True
    return False


class Discovery:
    """Keeps ``pool``'s peers and parents in step with DNS, as ``settings`` name them."""

    def __init__(self, pool: UpstreamPool, settings: CacheSettings) -> None:
        self.pool, self.settings = pool, settings
        self.peers: list[str] = []  # from --peers-dns, last good answer
        self.parents: list[str] = []  # from --upstream-dns, last good answer
        self._failing: set[str] = set()  # names whose last lookup failed (warned once)

    async def run(self) -> None:
        """Resolve now and every ``--dns-refresh`` until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.settings.dns_refresh)

    async def refresh(self) -> None:
        s = self.settings
        if s.peers_dns:
            found = await self._lookup(s.peers_dns, s.port)
            if found is not None and found != self.peers:
                self.peers = found
                self.pool.repeer([*s.peer, *found], self.own_url(found))
                log.info("peers from %s: %s", s.peers_dns, ", ".join(found) or "none")
        if s.upstream_dns:
            found = await self._lookup(s.upstream_dns, 80)
            if found is not None and found != self.parents:
                self.parents = found
                self.pool.reroute([*s.upstream, *found], s.fallback)
                log.info("parents from %s: %s", s.upstream_dns, ", ".join(found) or "none")

    def own_url(self, records: Sequence[str]) -> str:
        """This node among ``records``: ``--peer-url``, else a record of a local address."""
        if self.settings.peer_url:
            return self.settings.peer_url
        return next((url for url in records if is_local(url)), self.settings.own_url)

    async def _lookup(self, name: str, default_port: int) -> list[str] | None:
        host, port = split_name(name, default_port)
        try:
            found = await resolve(host, port)
        except OSError as exc:
            if name not in self._failing:
                self._failing.add(name)
                log.warning("cannot resolve %s (%s): keeping the last answer", name, exc)
            return None
        if name in self._failing:
            self._failing.discard(name)
            log.info("%s resolves again", name)
        return found
