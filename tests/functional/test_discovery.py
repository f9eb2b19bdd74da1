"""Parents and peers from DNS (``--upstream-dns``, ``--peers-dns``), for real.

Names resolve through the system resolver (``localhost``; an ``.invalid`` name
never resolves, RFC 6761), nodes are real and the pool is the node's own.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest

from shared.engine.node import NODE
from shared.service.discovery import Discovery, is_local, resolve, split_name
from shared.service.settings import CacheSettings
from tests.helpers import url_of

NOWHERE = "tiercdn-test.invalid"


def test_names_split_into_host_and_port():
    assert split_name("regional-headless:8081", 80) == ("regional-headless", 8081)
    assert split_name("edge-peers", 8080) == ("edge-peers", 8080)
    assert split_name("edge:x", 8080) == ("edge:x", 8080)


def test_a_local_address_is_recognised_and_a_foreign_one_is_not():
    assert is_local("http://127.0.0.1:8080")
    assert not is_local("http://192.0.2.7:8080")  # TEST-NET-1: never this host's


def test_bad_dns_flags_are_one_line_errors():
    for bad in (":8080", "name:port"):
        with pytest.raises(ValueError, match="--peers-dns takes NAME or NAME:PORT"):
            CacheSettings(upstream=("http://a",), peers_dns=bad)
    with pytest.raises(ValueError, match="--upstream URL \\(or --upstream-dns\\)"):
        CacheSettings(upstream=())
    with pytest.raises(ValueError, match="--dns-refresh"):
        CacheSettings(upstream_dns="regional", dns_refresh=0)


async def test_resolve_gives_one_url_per_address():
    assert "http://127.0.0.1:8081" in await resolve("localhost", 8081)


async def test_an_edge_finds_its_regional_in_dns(start_node, origin_server, http):
    """No --upstream: the parent is every record of ``localhost:PORT``, resolved before
    the first request."""
    regional = await start_node("regional-1", url_of(origin_server))
    port = regional.port
    edge = await start_node("edge-1", [], upstream_dns=f"localhost:{port}")
    assert f"http://127.0.0.1:{port}" in edge.app[NODE].upstream.parents
    async with http.get(url_of(edge) + "/sample/manifest.mpd") as r:
        assert r.status == 200
        assert "regional-1" in r.headers["Cache-Status"]


async def test_a_name_that_stops_resolving_keeps_the_last_answer(
    start_node, origin_server, http, caplog
):
    """A lookup that fails keeps the parents found before (warned once, not per
    lookup), so a DNS outage never empties the routes."""
    regional = await start_node("regional-1", url_of(origin_server))
    port = regional.port
    edge = await start_node("edge-1", [], upstream_dns=f"localhost:{port}", dns_refresh=3600)
    pool = edge.app[NODE].upstream
    settings = edge.app[NODE].settings
    discovery = Discovery(pool, settings)
    await discovery.refresh()
    before = list(pool.parents)
    discovery.settings = dataclasses.replace(settings, upstream_dns=f"{NOWHERE}:{port}")
    with caplog.at_level(logging.WARNING, logger="shared.service.discovery"):
        await discovery.refresh()
        await discovery.refresh()
    assert pool.parents == before
    warnings = [r for r in caplog.records if NOWHERE in r.getMessage()]
    assert len(warnings) == 1
    async with http.get(url_of(edge) + "/sample/init-0.mp4") as r:
        assert r.status == 200


async def test_peers_from_dns_exclude_this_node(start_node, origin_server):
    """The records of ``localhost:PORT`` at this node's own port: this node is the only
    member (a local address), so it has no peers and owns every key."""
    regional = await start_node("regional-1", url_of(origin_server))
    edge = await start_node("edge-1", url_of(regional), peers_dns="localhost:8080")
    pool = edge.app[NODE].upstream
    discovery = Discovery(pool, edge.app[NODE].settings)
    await discovery.refresh()
    assert "http://127.0.0.1:8080" not in pool.peers
    assert pool.self_url == "http://127.0.0.1:8080"
    assert pool.owner("/sample/init-0.mp4") == pool.self_url
