"""HLS through the tiers (issue 14, the engine): real edge and regional in front of the
real origin and its sample title, or of a misbehaving loopback upstream. The nodes learn
renditions and segments from the playlists passing through: prefetch of the next listed
segments, shedding by BANDWIDTH, pre-warm of master.m3u8, ``top`` counting the title
once, unreadable playlists still served, one cache object per segment for HLS and DASH,
and LL-HLS blocking playlist reloads coalesced per ``_HLS_msn``/``_HLS_part``."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from shared.dash import parse_mpd, segment_paths
from shared.engine.node import NODE
from shared.engine.prewarm import prewarm, prewarm_top
from shared.hls import MediaPlaylist, parse_playlist
from shared.policy.shedding import Priority, priority_of
from tests.helpers import Arrivals, Tally, shed_while_held, until, url_of

MASTER = "/sample/master.m3u8"
MPLAYLIST = "application/vnd.apple.mpegurl"


async def get(http, url: str) -> tuple[int, bytes, str]:
    async with http.get(url) as r:
        return r.status, await r.read(), r.headers.get("Cache-Status", "")


def listed(sample_library: Path, rep: str) -> list[str]:
    """The init and segments ``media_<rep>.m3u8`` names, as paths."""
    playlist = parse_playlist(
        (sample_library / "sample" / f"media_{rep}.m3u8").read_bytes(), f"/sample/media_{rep}.m3u8"
    )
    assert isinstance(playlist, MediaPlaylist) and playlist.map_uri is not None
    return [playlist.map_uri, *(s.uri for s in playlist.segments)]


@pytest.mark.timeout(30)
async def test_hls_prefetch_brings_the_next_listed_segments(origin_server, start_node, http):
    """After segment 1 named by media_0.m3u8, segments 2 and 3 of that rendition are
    edge hits; no MPD was seen, other renditions are untouched."""
    server = await start_node("edge-1", url_of(origin_server), prefetch=2)
    edge, node = url_of(server), server.app[NODE]
    for path in (MASTER, "/sample/media_0.m3u8", "/sample/chunk-0-00001.m4s"):
        assert (await get(http, edge + path))[0] == 200
    await node.tasks.join()  # the background prefetches
    for n in (2, 3):
        status, _, cache = await get(http, edge + f"/sample/chunk-0-0000{n}.m4s")
        assert status == 200 and cache.startswith("edge-1; hit"), (n, cache)
    assert "/sample/manifest.mpd" not in node.segments
    assert node.store.peek("/sample/chunk-1-00002.m4s") == []
    done = node.metrics.registry.get_sample_value("tiercdn_prefetches_total", {"result": "done"})
    assert done == 2


@pytest.mark.timeout(30)
async def test_hls_prefetch_never_passes_a_live_playlists_edge(upstream_app, start_node, http):
    """A live media playlist (no ENDLIST, no multivariant seen) lists segments 10-12: a
    request for 11 prefetches 12 only; 13, not listed yet, is never asked upstream."""
    asked: collections.Counter[str] = collections.Counter()
    playlist = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n" + "".join(
        f"#EXTINF:2.0,\nseg-{n}.m4s\n" for n in (10, 11, 12)
    )

    async def handler(request: web.Request) -> web.Response:
        asked[request.path] += 1
        if request.path.endswith(".m3u8"):
            return web.Response(
                text=playlist, content_type=MPLAYLIST, headers={"Cache-Control": "max-age=1"}
            )
        return web.Response(body=b"segment", headers={"Cache-Control": "max-age=600"})

    upstream = await upstream_app({"/live/{name}": handler})
    server = await start_node("edge-1", url_of(upstream), prefetch=5)
    edge, node = url_of(server), server.app[NODE]
    assert (await get(http, edge + "/live/v.m3u8"))[0] == 200
    assert (await get(http, edge + "/live/seg-11.m4s"))[0] == 200
    await node.tasks.join()
    assert asked["/live/seg-12.m4s"] == 1
    assert asked["/live/seg-13.m4s"] == 0 and asked["/live/seg-10.m4s"] == 0
    assert node.segments.classify("/live/seg-12.m4s") is None  # no BANDWIDTH known


@pytest.mark.timeout(30)
async def test_hls_high_bandwidth_misses_shed_before_low_and_init(
    upstream_app, start_node, http, sample_library
):
    """Learned from master.m3u8: the highest BANDWIDTH variant is shed first; the lowest
    and the init go on."""
    folder = sample_library / "sample"
    release = asyncio.Event()
    upstream_in = Tally()
    arrived: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)

    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name.endswith(".m3u8"):
            body = (folder / name).read_bytes()
            return web.Response(
                body=body, content_type=MPLAYLIST, headers={"Cache-Control": "max-age=60"}
            )
        upstream_in.add()
        arrived[request.path].set()
        await release.wait()
        return web.Response(body=b"s", headers={"Cache-Control": "max-age=60"})

    server = await upstream_app({"/sample/{name}": handler})
    node_server = await start_node("edge-1", url_of(server), max_fills=4)
    edge, node = url_of(node_server), node_server.app[NODE]
    for rep in ("", "_0", "_1", "_2"):
        name = "master.m3u8" if not rep else f"media{rep}.m3u8"
        assert (await get(http, edge + "/sample/" + name))[0] == 200
    names = ("chunk-0-00001.m4s", "chunk-1-00001.m4s", "chunk-2-00001.m4s", "init-1.mp4")
    ranked = {path: priority_of(path, node.segments.classify("/sample/" + path)) for path in names}
    assert ranked == {
        "chunk-0-00001.m4s": Priority.MEDIA_BASE,
        "chunk-1-00001.m4s": Priority.MEDIA_TOP,
        "chunk-2-00001.m4s": Priority.MEDIA_BASE,  # audio: one rung
        "init-1.mp4": Priority.INIT,
    }
    statuses, held = await shed_while_held(http, edge, upstream_in, arrived)
    assert statuses == {
        "chunk-1-00001.m4s": 503,  # top variant: shed at half the fill cap
        "chunk-0-00003.m4s": "in flight",  # lowest variant: admitted up to the cap
        "init-1.mp4": "in flight",  # init segments last
    }
    release.set()
    for task in held:
        async with await task as r:
            assert r.status == 200


@pytest.mark.timeout(60)
async def test_hls_prewarm_walks_master_playlist(chain, http):
    """prewarm of master.m3u8 warms it, its three media playlists, then every init and
    segment they list, at the edge and through it at the regional; lowest/seconds pick."""
    edge = chain.edge_node
    report = await prewarm(edge, MASTER, concurrency=4)
    assert (report.error, report.failed, report.total, report.fetched) == (None, 0, 17, 17)
    keys = {obj.key for obj in edge.store}
    assert {f"/sample/media_{r}.m3u8" for r in "012"} <= keys
    assert {f"/sample/init-{r}.mp4" for r in "012"} <= keys
    assert {f"/sample/chunk-{r}-0000{n}.m4s" for r in "012" for n in (1, 2, 3)} <= keys
    assert keys <= {obj.key for obj in chain.regional_node.store}
    status, _, cache = await get(http, chain.url("/sample/chunk-1-00003.m4s"))
    assert status == 200 and "edge-1; hit" in cache
    again = await prewarm(edge, MASTER, lowest=1, seconds=2)
    # master.m3u8, media_0 and _2, their inits, what starts before 2 s: 1 video, 2 audio
    assert (again.total, again.skipped, again.fetched) == (8, 8, 0)


@pytest.mark.timeout(60)
async def test_hls_prewarm_of_a_media_playlist_and_of_garbage(chain, upstream_app, start_node):
    """A media playlist URL warms its own init and segments; a playlist that cannot be
    read is a report with an error, never an exception."""
    seen: list[tuple[int, int]] = []
    report = await prewarm(
        chain.edge_node, "/sample/media_1.m3u8", progress=lambda d, t: seen.append((d, t))
    )
    assert (report.error, report.total, report.fetched) == (None, 5, 5)
    assert seen[-1] == (5, 5)

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(
            body=b"#EXTM3\xff\xfe", content_type=MPLAYLIST, headers={"Cache-Control": "max-age=60"}
        )

    upstream = await upstream_app({"/bad/{name}": garbage})
    node = (await start_node("edge-2", url_of(upstream))).app[NODE]
    report = await prewarm(node, "/bad/master.m3u8")
    assert report.error is not None and report.error.startswith("manifest:")
    assert (report.total, report.fetched) == (1, 1)


@pytest.mark.timeout(30)
async def test_hls_top_counts_the_title_once(chain, http):
    """master.m3u8 is a title; the media playlists it names are not (an MPD still is);
    pre-warm of the top titles warms the master playlist."""
    for path in (MASTER, MASTER, *[f"/sample/media_{r}.m3u8" for r in "0122"]):
        assert (await get(http, chain.url(path)))[0] == 200
    assert (await get(http, chain.url("/sample/manifest.mpd")))[0] == 200
    edge = chain.edge_node
    assert edge.top_titles(10) == [(MASTER, 2), ("/sample/manifest.mpd", 1)]
    assert chain.regional_node.top_titles(10) == [(MASTER, 1), ("/sample/manifest.mpd", 1)]
    reports = await prewarm_top(edge, 1, lowest=1, seconds=2)
    assert [(r.manifest, r.error, r.total) for r in reports] == [(MASTER, None, 8)]


PLAYLISTS = {
    "garbage.m3u8": b"\x00\xff\xfe\x01 not a playlist at all",
    "not-utf8.m3u8": b"#EXTM3U\n#EXTINF:2,\n\xff\xfeseg.m4s\n",
    "broken-tags.m3u8": (
        b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\n\n#EXT-X-MAP:URI=\n#EXTINF:nan,\n"
        b"#EXT-X-BYTERANGE:@@\n#EXT-X-MEDIA-SEQUENCE:-\nseg.m4s\n#X-UNKNOWN\n"
    ),
    "empty.m3u8": b"",
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", sorted(PLAYLISTS))
async def test_hls_unreadable_playlist_is_still_served(upstream_app, start_node, http, name):
    """A playlist the nodes cannot read goes through edge and regional unchanged, is
    cached (a hit the second time), and segments next to it are still served."""

    async def handler(request: web.Request) -> web.Response:
        body = PLAYLISTS.get(request.match_info["name"], b"segment")
        return web.Response(
            body=body, content_type=MPLAYLIST, headers={"Cache-Control": "max-age=60"}
        )

    upstream = await upstream_app({"/odd/{name}": handler})
    regional = await start_node("regional-1", url_of(upstream))
    edge = url_of(await start_node("edge-1", url_of(regional), prefetch=2))
    first = await get(http, edge + "/odd/" + name)
    second = await get(http, edge + "/odd/" + name)
    assert first[:2] == second[:2] == (200, PLAYLISTS[name])
    assert "edge-1; hit" in second[2]
    assert (await get(http, edge + "/odd/seg.m4s"))[:2] == (200, b"segment")


@pytest.mark.timeout(60)
async def test_hls_then_dash_segments_are_one_cache_object(chain, http, sample_library):
    """Segments fetched through the edge as media_1.m3u8 names them are hits when
    fetched again as manifest.mpd names them: one cache object per segment."""
    hls = listed(sample_library, "1")
    assert (await get(http, chain.url("/sample/media_1.m3u8")))[0] == 200
    for path in hls:
        status, _, cache = await get(http, chain.url(path))
        assert status == 200 and "edge-1; fwd=uri-miss" in cache, (path, cache)
    status, mpd, _ = await get(http, chain.url("/sample/manifest.mpd"))
    assert status == 200
    presentation = parse_mpd(mpd, "/sample/manifest.mpd")
    dash = [p for p in segment_paths(presentation) if "-1" in p.rsplit("/", 1)[1][:8]]
    assert sorted(dash) == sorted(hls)
    for path in dash:
        status, _, cache = await get(http, chain.url(path))
        assert status == 200 and "edge-1; hit" in cache, (path, cache)


class QueryLog:
    """Middleware: how many requests each path-and-query reached this server with."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen[request.path_qs] += 1
        return await handler(request)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cache_control", ["max-age=1", "no-cache"])
async def test_hls_blocking_playlist_reloads_coalesce(
    aiohttp_server, start_node, http, cache_control
):
    """LL-HLS: 30 clients per distinct _HLS_msn/_HLS_part, all at once, through edge and
    regional, while the origin blocks each reload until its part is published: exactly
    one request per distinct query reaches the regional, and one the origin."""
    queries = ["_HLS_msn=5&_HLS_part=0", "_HLS_msn=5&_HLS_part=1", "_HLS_msn=6&_HLS_part=0"]
    clients = 30  # 90 in all: below the client session's 100 connections
    published = asyncio.Event()

    async def blocking(request: web.Request) -> web.Response:
        await published.wait()  # the part the reload asks for is not there yet
        await asyncio.sleep(0.5)
        msn, part = request.query.get("_HLS_msn", "0"), request.query.get("_HLS_part", "0")
        text = (
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1\n"
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5\n#EXT-X-PART-INF:PART-TARGET=0.5\n"
            + "".join(f"#EXTINF:2.0,\nseg-{n}.m4s\n" for n in range(1, int(msn)))
            + f'#EXT-X-PART:DURATION=0.5,URI="seg-{msn}.{part}.m4s"\n'
        )
        return web.Response(
            text=text, content_type=MPLAYLIST, headers={"Cache-Control": cache_control}
        )

    origin_log, regional_log, arrivals = QueryLog(), QueryLog(), Arrivals()
    app = web.Application(middlewares=[origin_log.middleware])
    app.router.add_get("/ll/v.m3u8", blocking)
    origin = await aiohttp_server(app)
    regional = await start_node("regional-1", url_of(origin), middlewares=[regional_log.middleware])
    edge = url_of(await start_node("edge-1", url_of(regional), middlewares=[arrivals.middleware]))
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(get(http, f"{edge}/ll/v.m3u8?{query}"))
        for query in queries
        for _ in range(clients)
    ]
    await until(arrivals.arrived.reached(len(tasks)), *tasks)  # every client waits on a fill
    published.set()
    answers = await asyncio.gather(*tasks)
    assert all(status == 200 for status, _, _ in answers)
    for i, query in enumerate(queries):
        bodies = {body for _, body, _ in answers[i * clients : (i + 1) * clients]}
        assert len(bodies) == 1 and query.replace("&_HLS_part=", ".")[9:] in bodies.pop().decode()
    wanted = {f"/ll/v.m3u8?{query}": 1 for query in queries}
    assert dict(regional_log.seen) == wanted
    assert dict(origin_log.seen) == wanted
