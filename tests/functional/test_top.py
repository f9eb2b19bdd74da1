"""``tiercdn top --once`` against a real edge and origin (admin apps on test servers)."""

from __future__ import annotations

import asyncio

from origin.app import make_admin_app as make_origin_admin
from shared.ops.cli import main
from shared.service.admin import make_admin_app
from tests.helpers import url_of

DEAD = "http://127.0.0.1:9"  # discard port: nothing listens


async def test_top_once_shows_each_node_and_a_down_row(
    aiohttp_server, origin_server, start_node, http, capsys
):
    """Names, the edge's hit ratio over the interval, and "down" for a dead URL."""
    edge = await start_node("edge-1", url_of(origin_server))
    admin = make_admin_app(edge.app)
    scraped = asyncio.Event()  # top has read the edge's "before" figures

    async def note_scrape(request, response) -> None:
        if request.path == "/metrics":
            scraped.set()

    admin.on_response_prepare.append(note_scrape)
    edge_admin = url_of(await aiohttp_server(admin))
    origin_admin = url_of(await aiohttp_server(make_origin_admin(origin_server.app)))
    for _ in range(2):  # a miss, then a hit
        async with http.get(url_of(edge) + "/sample/init-0.mp4") as r:
            await r.read()

    async def more_requests() -> None:  # inside top's interval, so rates are not zero
        await asyncio.wait_for(scraped.wait(), 10)
        for _ in range(3):
            async with http.get(url_of(edge) + "/sample/init-0.mp4") as r:
                assert r.status == 200
                await r.read()

    # main() is blocking (urllib); run it beside the servers' event loop.
    argv = ["top", "--once", "--interval", "1", edge_admin, origin_admin, DEAD]
    code, _ = await asyncio.gather(asyncio.to_thread(main, argv), more_requests())
    out = capsys.readouterr().out
    assert code == 0
    lines = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "100.0" in lines["edge-1"]  # hit% over the interval: 3 hits of 3
    assert "1 closed" in lines["edge-1"]  # its breaker toward the origin
    assert "origin" in lines
    assert "down" in lines["127.0.0.1:9"]
    assert "Traceback" not in out
