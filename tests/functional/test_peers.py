"""Owner routing between the nodes of a point of presence (``--peer``), for real.

Two edges name each other as peers in front of one regional that records every
request it gets; each object has one owner (rendezvous hashing), and a miss at
the other edge is asked of the owner, so the regional sees one request per
object whichever edge the clients asked. A dead owner is skipped, a peer's
request is never forwarded again, and the peer mark never leaves the PoP.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from shared.engine.node import NODE
from shared.engine.node import make_app as make_node_app
from shared.engine.upstream import PEER_HEADER
from tests.helpers import node_settings, url_of


class Recorder:
    """Middleware: each request's path, and whether it carried the peer mark."""

    def __init__(self) -> None:
        self.paths: collections.Counter[str] = collections.Counter()
        self.marked = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        self.paths[request.path] += 1
        self.marked += PEER_HEADER in request.headers
        return await handler(request)


@pytest.fixture
async def pop(start_node, origin_server, sample_library: Path):
    """(edge A, edge B, their recorders, the regional's recorder, segment paths)."""
    regional_log = Recorder()
    regional = await start_node(
        "regional-1", url_of(origin_server), middlewares=[regional_log.middleware]
    )
    logs = [Recorder(), Recorder()]
    edges = [
        await start_node(f"edge-{i}", url_of(regional), middlewares=[logs[i].middleware])
        for i in range(2)
    ]
    urls = [url_of(e) for e in edges]
    for edge, me, other in zip(edges, urls, reversed(urls), strict=True):
        edge.app[NODE].upstream.repeer([other], me)
    paths = every_file(sample_library)
    return edges, logs, regional_log, paths


def every_file(library: Path) -> list[str]:
    """The sample's paths (manifests, playlists, inits, segments): enough that each of
    two or four owners owns some, whatever ports the test got (2**-17 that one owns none)."""
    paths = sorted(f"/sample/{p.name}" for p in (library / "sample").iterdir())
    assert len(paths) >= 16
    return paths


async def get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, str]:
    async with http.get(url, headers=headers) as r:
        await r.read()
        return r.status, r.headers.get("Cache-Status", "")


async def test_each_object_reaches_the_regional_once_whichever_edge_is_asked(pop, http):
    """Every segment asked at both edges at once, twice: one regional request per
    segment; a segment the other edge owns is served through it (its Cache-Status
    member first), and the edge that asked may keep its own copy."""
    edges, logs, regional_log, paths = pop
    a, b = (url_of(e) for e in edges)
    for _ in range(2):
        answers = await asyncio.gather(*(get(http, e + p) for p in paths for e in (a, b)))
        assert all(status == 200 for status, _ in answers)
    assert {p: regional_log.paths[p] for p in paths} == dict.fromkeys(paths, 1)
    assert regional_log.marked == 0  # the mark stays inside the point of presence
    pool = edges[0].app[NODE].upstream
    owned_by_b = [p for p in paths if pool.owner(p) == b]
    assert owned_by_b and len(owned_by_b) < len(paths)  # both own some
    status, cache_status = await get(http, a + owned_by_b[0])
    assert status == 200
    assert logs[1].paths[owned_by_b[0]] >= 1  # A asked B, the owner
    assert "edge-1" in cache_status and "edge-0" in cache_status


async def test_a_storm_at_both_edges_is_one_regional_request(pop, http):
    """60 clients split over both edges ask for one cold segment at once: one request
    reaches the regional."""
    edges, _, regional_log, paths = pop
    target = paths[-1]
    urls = [url_of(e) + target for e in edges]
    answers = await asyncio.gather(*(get(http, urls[i % 2]) for i in range(60)))
    assert [s for s, _ in answers] == [200] * 60
    assert regional_log.paths[target] == 1


async def test_a_dead_owner_is_skipped_and_the_live_edge_serves(pop, http):
    """B is stopped: A serves every segment, going to the regional itself for B's,
    at once (a refused connection), and keeps serving afterwards."""
    edges, _, regional_log, paths = pop
    a = url_of(edges[0])
    owned_by_b = [p for p in paths if edges[0].app[NODE].upstream.owner(p) != a]
    await edges[1].close()
    async with asyncio.timeout(10):
        answers = await asyncio.gather(*(get(http, a + p) for p in owned_by_b))
    assert [s for s, _ in answers] == [200] * len(owned_by_b)
    assert all(regional_log.paths[p] == 1 for p in owned_by_b)
    assert (await get(http, a + paths[0]))[0] == 200


async def test_a_peers_request_is_never_forwarded_again(pop, http):
    """A request marked as a peer's at A, for a segment B owns, goes to the regional,
    not to B: no loop between owners that disagree."""
    edges, logs, regional_log, paths = pop
    a = url_of(edges[0])
    owned_by_b = next(p for p in paths if edges[0].app[NODE].upstream.owner(p) != a)
    status, _ = await get(http, a + owned_by_b, **{PEER_HEADER: "http://127.0.0.1:9"})
    assert status == 200
    assert logs[1].paths[owned_by_b] == 0
    assert regional_log.paths[owned_by_b] == 1
    assert regional_log.marked == 0


async def test_two_machines_of_two_workers_ask_the_regional_once_per_object(
    start_node, origin_server, sample_library: Path, http
):
    """Machines A and B of two workers each (a machine's address is its first
    worker's here): clients at all four nodes ask for every segment at once; each
    segment has one owning machine and there one owning worker, so the regional sees
    one request per segment, and a request marked by another machine is still passed
    to the owning worker (never back to a machine)."""
    regional_log = Recorder()
    regional = await start_node(
        "regional-1", url_of(origin_server), middlewares=[regional_log.middleware]
    )
    logs = [Recorder() for _ in range(4)]
    nodes = [
        await start_node(f"edge-{i}", url_of(regional), middlewares=[logs[i].middleware])
        for i in range(4)
    ]
    urls = [url_of(n) for n in nodes]
    machines = [(0, 1), (2, 3)]
    for m, members in enumerate(machines):
        other_machine = urls[machines[1 - m][0]]
        for i in members:
            pool = nodes[i].app[NODE].upstream
            pool.repeer([other_machine], urls[members[0]])
            pool.resibling([urls[j] for j in members if j != i], urls[i])
    paths = every_file(sample_library)
    answers = await asyncio.gather(*(get(http, u + p) for p in paths for u in urls for _ in "ab"))
    assert all(status == 200 for status, _ in answers)
    assert {p: regional_log.paths[p] for p in paths} == dict.fromkeys(paths, 1)

    # keys are owned by all four workers
    def owning_worker(path: str) -> str:
        machine = 0 if nodes[0].app[NODE].upstream.owner(path) == urls[0] else 1
        return nodes[machines[machine][0]].app[NODE].upstream.sibling_owner(path)

    assert len({owning_worker(f"/sample/{i}.m4s") for i in range(400)}) == 4
    # a machine-marked request at a non-owning worker goes to its sibling owner
    path = next(p for p in paths if nodes[0].app[NODE].upstream.sibling_owner(p) == urls[1])
    nodes[0].app[NODE].purge(url=path)  # cold at worker 0 again
    before = logs[1].paths[path]
    status, _ = await get(http, urls[0] + path, **{PEER_HEADER: "machine"})
    assert status == 200 and logs[1].paths[path] == before + 1


@contextlib.contextmanager
def unresponsive_peer() -> Iterator[str]:
    """A loopback address whose connects never complete: a listener that accepts nothing,
    its queue filled, so the kernel drops further SYNs (a vanished pod's address)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(server.getsockname())
        fillers.append(filler)
    try:
        yield url
    finally:
        for sock in [*fillers, server]:
            sock.close()


async def test_an_owner_that_never_answers_a_connect_is_skipped_in_half_a_second(
    start_node, origin_server, sample_library: Path, http
):
    """Objects owned by a peer whose connects hang are served from the regional after
    the peer connect timeout (0.5 s), well within the node's own connect timeout (2 s)."""
    regional = await start_node("regional-1", url_of(origin_server))
    edge = await start_node("edge-0", url_of(regional))
    with unresponsive_peer() as dead:
        pool = edge.app[NODE].upstream
        pool.repeer([dead], url_of(edge))
        owned = next(p for p in every_file(sample_library) if pool.owner(p) == dead)
        started = time.monotonic()
        status, cache_status = await get(http, url_of(edge) + owned)
        waited = time.monotonic() - started
    assert status == 200 and "regional-1" in cache_status
    assert 0.4 < waited < 1.9, waited  # the peer's connect timeout, not the parent's


async def test_a_clients_own_peer_mark_is_dropped(
    aiohttp_server, start_node, origin_server, sample_library: Path, http
):
    """Only a member's address may mark a request as a peer's: A's peer B listens on
    127.0.0.2, so a client on 127.0.0.1 sending ``Tiercdn-Peer`` is routed as any
    client (to B, the owner) and its mark never leaves A, while B trusts A's mark."""
    regional_log = Recorder()
    regional = await start_node(
        "regional-1", url_of(origin_server), middlewares=[regional_log.middleware]
    )
    b_log = Recorder()
    b_app = make_node_app(node_settings("edge-b", url_of(regional)))
    b_app.middlewares.append(b_log.middleware)
    b = await aiohttp_server(b_app, host="127.0.0.2")
    a = await start_node("edge-a", url_of(regional))
    a.app[NODE].upstream.repeer([url_of(b)], url_of(a))
    b.app[NODE].upstream.repeer([url_of(a)], url_of(b))
    pool = a.app[NODE].upstream
    owned_by_b = next(p for p in every_file(sample_library) if pool.owner(p) == url_of(b))
    status, _ = await get(http, url_of(a) + owned_by_b, **{PEER_HEADER: "worker"})
    assert status == 200
    assert b_log.paths[owned_by_b] == 1  # routed to the owner all the same
    assert regional_log.paths[owned_by_b] == 1 and regional_log.marked == 0
