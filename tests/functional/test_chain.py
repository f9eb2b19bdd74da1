"""The whole chain on loopback: real origin serving real DASH, regional and edge in front."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from origin.app import make_admin_app as make_origin_admin
from origin.app import make_app as make_origin_app
from shared.engine.node import NODE
from tests.helpers import Chain, url_of

NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}


def title_files(library: Path) -> list[str]:
    """URL paths of the MPD, every init segment, and every media segment of reps 0 and 2."""
    title = library / "sample"
    root = ET.parse(title / "manifest.mpd").getroot()
    paths = ["/sample/manifest.mpd"]
    for rep in root.iterfind(".//d:Representation", NS):
        paths.append(f"/sample/init-{rep.get('id')}.mp4")
    for rep_id in ("0", "2"):  # one video representation and the audio
        paths += sorted(f"/sample/{p.name}" for p in title.glob(f"chunk-{rep_id}-*.m4s"))
    return paths


async def origin_requests(http, admin_url: str) -> float:
    async with http.get(admin_url + "/metrics") as r:
        text = await r.text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "tiercdn_origin_requests":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


@pytest.fixture
async def long_mpd_chain(aiohttp_server, start_node, origin_settings) -> tuple[Chain, str]:
    """A chain whose MPD stays fresh for the whole test, with the origin's admin listener."""
    settings = dataclasses.replace(origin_settings, manifest_max_age=600.0)
    app = make_origin_app(settings)
    origin = await aiohttp_server(app)
    admin = await aiohttp_server(make_origin_admin(app))
    regional = await start_node("regional-1", url_of(origin))
    edge = await start_node("edge-1", url_of(regional))
    return Chain(origin, regional, edge), url_of(admin)


async def test_chain_whole_title_byte_identical_then_all_edge_hits(
    long_mpd_chain, sample_library, http
):
    """Every file of a title through the edge equals the disk; a second pass is all edge hits."""
    chain, origin_admin = long_mpd_chain
    paths = title_files(sample_library)
    assert len(paths) >= 8
    for path in paths:
        async with http.get(chain.url(path)) as r:
            assert r.status == 200, path
            assert await r.read() == (sample_library / path.lstrip("/")).read_bytes(), path
            assert r.headers["Cache-Status"] == (
                "regional-1; fwd=uri-miss; fwd-status=200; stored, "
                "edge-1; fwd=uri-miss; fwd-status=200; stored"
            )
            assert r.headers["Via"] == "1.1 regional-1, 1.1 edge-1"
    for path in paths:
        async with http.get(chain.url(path)) as r:
            assert await r.read() == (sample_library / path.lstrip("/")).read_bytes()
            assert r.headers["Cache-Status"].split(", ")[-1].startswith("edge-1; hit; ttl=")
    assert await origin_requests(http, origin_admin) == len(paths)
    assert chain.edge_node.counts.total() == 2 * len(paths)


async def test_chain_content_types_and_cache_control_pass_through(chain, http):
    """Origin headers (type, ETag, Last-Modified, Cache-Control) arrive unchanged at the player."""
    async with http.get(chain.url("/sample/chunk-0-00001.m4s")) as r:
        assert r.headers["Content-Type"] == "video/iso.segment"
        assert "immutable" in r.headers["Cache-Control"]
        assert r.headers["ETag"].startswith('"') and "Last-Modified" in r.headers
    async with http.get(chain.url("/sample/manifest.mpd")) as r:
        assert r.headers["Content-Type"].startswith("application/dash+xml")
    async with http.get(chain.url("/sample/init-2.mp4")) as r:
        assert r.headers["Content-Type"] == "audio/mp4"


async def test_chain_concurrent_cold_requests_reach_origin_once(chain, sample_library, http):
    """Concurrent cold requests at the edge are one fill per tier; bodies all identical."""
    path = "/sample/chunk-1-00002.m4s"
    expected = (sample_library / path.lstrip("/")).read_bytes()

    async def fetch() -> bytes:
        async with http.get(chain.url(path)) as r:
            return await r.read()

    bodies = await asyncio.gather(*[fetch() for _ in range(50)])
    assert all(b == expected for b in bodies)
    assert chain.regional_node.counts.total() == 1
    outcomes = collections.Counter(o.value for o in chain.edge_node.counts.elements())
    assert (
        outcomes["miss"] == 1 and outcomes["miss"] + outcomes["coalesced"] + outcomes["hit"] == 50
    )


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
async def test_chain_range_head_and_304(chain, sample_library, http, warm):
    """Range, HEAD and conditional GETs work through both tiers, cold and warm."""
    path = "/sample/chunk-0-00002.m4s"
    data = (sample_library / path.lstrip("/")).read_bytes()
    if warm:
        async with http.get(chain.url(path)) as r:
            await r.read()
    async with http.get(chain.url(path), headers={"Range": "bytes=100-199"}) as r:
        assert r.status == 206 and await r.read() == data[100:200]
        assert r.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
        etag = r.headers["ETag"]
    async with http.head(chain.url(path)) as r:
        assert r.status == 200 and int(r.headers["Content-Length"]) == len(data)
    async with http.get(chain.url(path), headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    async with http.get(chain.url(path), headers={"Range": f"bytes={len(data)}-"}) as r:
        assert r.status == 416
    assert chain.regional_node.counts.total() == 1


async def test_chain_vary_and_uncacheable_through_both_tiers(upstream_app, start_node, http):
    """Vary variants and no-store/private/Authorization rules hold at every tier."""
    hits: collections.Counter[str] = collections.Counter()

    async def vary(request: web.Request) -> web.Response:
        lang = request.headers.get("Accept-Language", "-")
        hits["vary:" + lang] += 1
        return web.Response(
            text=f"hello {lang}", headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"}
        )

    def fixed(cc: str):
        async def handler(request: web.Request) -> web.Response:
            hits[request.path] += 1
            return web.Response(text="x", headers={"Cache-Control": cc})

        return handler

    origin = await upstream_app(
        {
            "/v": vary,
            "/nostore": fixed("no-store"),
            "/private": fixed("private, max-age=60"),
            "/auth": fixed("max-age=60"),
        }
    )
    regional = await start_node("regional-1", url_of(origin))
    edge = url_of(await start_node("edge-1", url_of(regional)))
    for lang in ("en", "fr", "en", "fr"):
        async with http.get(edge + "/v", headers={"Accept-Language": lang}) as r:
            assert await r.text() == f"hello {lang}"
    for path, headers in (("/nostore", {}), ("/private", {}), ("/auth", {"Authorization": "x"})):
        for _ in range(2):
            async with http.get(edge + path, headers=headers) as r:
                assert r.status == 200
    assert hits == {"vary:en": 1, "vary:fr": 1, "/nostore": 2, "/private": 2, "/auth": 2}


async def test_chain_post_invalidates_every_tier(upstream_app, start_node, http):
    """A POST through the edge invalidates the URL at the edge and at the regional."""
    count: collections.Counter[str] = collections.Counter()

    async def handler(request: web.Request) -> web.Response:
        count[request.method] += 1
        return web.Response(text=f"v{count['POST']}", headers={"Cache-Control": "max-age=60"})

    origin = await upstream_app({"/doc": handler})
    regional = await start_node("regional-1", url_of(origin))
    edge = url_of(await start_node("edge-1", url_of(regional)))
    async with http.get(edge + "/doc") as r:
        assert await r.text() == "v0"
    async with http.post(edge + "/doc", data=b"new") as r:
        assert r.status == 200
    async with http.get(edge + "/doc") as r:
        assert await r.text() == "v1"
    assert count == {"GET": 2, "POST": 1}


async def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` exactly as written (no client-side normalisation)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "target",
    [
        "/../etc/passwd",
        "/sample/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/sample/%2E%2E%2f%2E%2E%2fetc/passwd",
        "/sample%2f..%2f..%2fetc%2fpasswd",
        "/sample/..%5c..%5cetc%5cpasswd",
        "//etc/passwd",
        "/sample/manifest.mpd%00.m4s",
        "/sample/",
        "/sample",
        "/escape/secret.txt",
    ],
)
async def test_chain_path_traversal_refused_through_edge(
    target, aiohttp_server, start_node, sample_library, tmp_path, origin_settings
):
    """Traversal attempts sent to the edge get 400/404 from the origin, never outside bytes."""
    library = tmp_path / "lib"
    library.mkdir()
    (library / "sample").symlink_to(sample_library / "sample")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET")
    (library / "escape").symlink_to(outside)
    settings = dataclasses.replace(origin_settings, library=str(library))
    origin = await aiohttp_server(make_origin_app(settings))
    regional = await start_node("regional-1", url_of(origin))
    edge = await start_node("edge-1", url_of(regional))
    status, body = await raw_get(url_of(edge), target)
    assert status in (400, 404), (target, status)
    assert b"TOP-SECRET" not in body and b"root:" not in body
    assert len(edge.app[NODE].store) == 0
