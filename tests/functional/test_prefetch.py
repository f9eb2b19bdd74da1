"""Edge prefetch: segment n brings n+1..n+k into the cache, learned from the MPD."""

from __future__ import annotations

from shared.engine.node import NODE
from shared.engine.outcome import Outcome
from tests.helpers import url_of


async def test_prefetch_turns_next_segments_into_hits(origin_server, start_node, http):
    """After segment 1 of a representation, segments 2 and 3 are already at the edge."""
    server = await start_node("edge-1", url_of(origin_server), prefetch=2)
    edge, node = url_of(server), server.app[NODE]
    async with http.get(edge + "/sample/manifest.mpd") as r:
        assert r.status == 200
    async with http.get(edge + "/sample/chunk-0-00001.m4s") as r:
        assert r.status == 200
    await node.tasks.join()  # the background prefetches
    for n in (2, 3):
        async with http.get(edge + f"/sample/chunk-0-0000{n}.m4s") as r:
            assert r.status == 200
            assert r.headers["Cache-Status"].startswith("edge-1; hit"), n
    done = node.metrics.registry.get_sample_value("tiercdn_prefetches_total", {"result": "done"})
    assert done == 2
    assert node.store.peek("/sample/chunk-1-00002.m4s") == []  # other renditions untouched


async def test_prefetch_stops_at_the_last_segment_and_is_off_by_default(
    origin_server, start_node, http
):
    """No prefetch past a static presentation's end; none at all without --prefetch."""
    server = await start_node("edge-1", url_of(origin_server), prefetch=5)
    node = server.app[NODE]
    async with http.get(url_of(server) + "/sample/manifest.mpd") as r:
        assert r.status == 200
    async with http.get(url_of(server) + "/sample/chunk-0-00002.m4s") as r:
        assert r.status == 200
    await node.tasks.join()
    assert node.store.peek("/sample/chunk-0-00003.m4s")
    assert not node.store.peek("/sample/chunk-0-00004.m4s")  # 6 s of 2 s segments: 3
    plain = await start_node("edge-2", url_of(origin_server))
    async with http.get(url_of(plain) + "/sample/manifest.mpd") as r:
        assert r.status == 200
    async with http.get(url_of(plain) + "/sample/chunk-0-00001.m4s") as r:
        assert r.status == 200
    assert len(plain.app[NODE].tasks) == 0


async def test_warm_fills_once_and_reports_hits(origin_server, start_node):
    """Node.warm leads one fill per key, then reports HIT without asking upstream."""
    server = await start_node("edge-1", url_of(origin_server))
    node = server.app[NODE]
    assert await node.warm("/sample/init-0.mp4") is Outcome.MISS
    assert await node.warm("/sample/init-0.mp4") is Outcome.HIT
    assert await node.warm("/sample/nope.m4s") is Outcome.ERROR  # a 404
    assert node.purge(prefix="/sample/") == 1
    assert await node.warm("/sample/init-0.mp4") is Outcome.MISS
