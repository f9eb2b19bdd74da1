"""Admin purge, pre-warm and top titles on real nodes: origin → regional → edge."""

from __future__ import annotations

import dataclasses

import pytest

from origin.app import METRICS_KEY
from shared.engine.prewarm import prewarm as run_prewarm
from shared.service.admin import make_admin_app
from tests.helpers import Chain, url_of

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MPD = "/sample/manifest.mpd"


@dataclasses.dataclass
class Admins(Chain):
    """A chain whose regional and edge take ``TOKEN``, with their admin listeners."""

    regional_admin: str = ""
    edge_admin: str = ""

    def origin_requests(self) -> int:
        return int(self.origin.app[METRICS_KEY].stats()["requests"])


@pytest.fixture
async def tc(origin_server, start_node, aiohttp_server) -> Admins:
    regional = await start_node("regional-1", url_of(origin_server), admin_token=TOKEN)
    edge = await start_node("edge-1", url_of(regional), admin_token=TOKEN)
    regional_admin = await aiohttp_server(make_admin_app(regional.app))
    edge_admin = await aiohttp_server(make_admin_app(edge.app))
    return Admins(origin_server, regional, edge, url_of(regional_admin), url_of(edge_admin))


async def get(http, url: str) -> str:
    """GET ``url`` to the end; its Cache-Status."""
    async with http.get(url) as r:
        assert r.status == 200, url
        await r.read()
        return r.headers["Cache-Status"]


def is_edge_hit(cache_status: str) -> bool:
    return cache_status.split(", ")[-1].startswith("edge-1; hit")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 403),
        ({"Authorization": "Basic czNjcmV0"}, 401),
        ({"X-Tiercdn-Token": "nope"}, 403),
        ({"X-Tiercdn-Token": TOKEN}, 200),
        (AUTH, 200),
    ],
)
async def test_admin_purge_needs_the_token(tc, http, headers, status):
    """No token: 401 with a Bearer challenge; wrong: 403; right (either header): 200."""
    async with http.post(tc.edge_admin + "/purge", json={"all": True}, headers=headers) as r:
        assert r.status == status
        body = await r.json()
    if status == 401:
        assert r.headers["WWW-Authenticate"] == "Bearer"
    if status == 200:
        assert body == {"node": "edge-1", "purged": 0}
    else:
        assert body["error"]


async def test_admin_mutating_routes_off_without_a_configured_token(chain, aiohttp_server, http):
    """A node with no --admin-token refuses purge and prewarm to everyone; /top stays open."""
    admin = url_of(await aiohttp_server(make_admin_app(chain.edge.app)))
    for route, body in (("/purge", {"all": True}), ("/prewarm", {"manifest": MPD})):
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer x"}):
            async with http.post(admin + route, json=body, headers=headers) as r:
                assert r.status == 403
                assert "admin token not configured" in (await r.json())["error"]
    async with http.get(admin + "/top") as r:
        assert r.status == 200 and await r.json() == {"node": "edge-1", "titles": []}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b"{}", "body must be"),
        (b'{"url": "no-slash"}', "body must be"),
        (b'{"all": "yes"}', "body must be"),
    ],
)
async def test_admin_purge_rejects_bad_bodies(tc, http, data, message):
    """A malformed body or none of url / prefix / all is a 400 that says why."""
    async with http.post(tc.edge_admin + "/purge", data=data, headers=AUTH) as r:
        assert r.status == 400
        assert message in (await r.json())["error"]


async def purge(http, admin: str, body: dict[str, object]) -> int:
    async with http.post(admin + "/purge", json=body, headers=AUTH) as r:
        assert r.status == 200
        return int((await r.json())["purged"])


@pytest.mark.parametrize(
    ("body", "gone", "kept"),
    [
        ({"url": "/sample/init-0.mp4"}, ["/sample/init-0.mp4"], ["/sample/chunk-0-00001.m4s"]),
        (
            {"prefix": "/sample/chunk-0-"},
            ["/sample/chunk-0-00001.m4s", "/sample/chunk-0-00002.m4s"],
            ["/sample/init-0.mp4"],
        ),
        ({"all": True}, ["/sample/init-0.mp4", "/sample/chunk-0-00002.m4s"], []),
    ],
)
async def test_admin_purge_refetches_through_the_whole_chain(tc, http, body, gone, kept):
    """Purged at regional then edge: the next GET misses at both and reaches the origin."""
    paths = ["/sample/init-0.mp4", "/sample/chunk-0-00001.m4s", "/sample/chunk-0-00002.m4s"]
    for path in paths:
        await get(http, tc.url(path))
    before = tc.origin_requests()
    assert before == len(paths)
    purged = [await purge(http, admin, body) for admin in (tc.regional_admin, tc.edge_admin)]
    assert purged == [len(gone) if "all" not in body else len(paths)] * 2
    for path in gone:
        status = await get(http, tc.url(path))
        assert "regional-1; fwd=uri-miss" in status and "edge-1; fwd=uri-miss" in status
    for path in kept:
        assert is_edge_hit(await get(http, tc.url(path)))
    assert tc.origin_requests() == before + len(gone)


async def prewarm(http, admin: str, body: dict[str, object], status: int = 200) -> dict:
    async with http.post(admin + "/prewarm", json=body, headers=AUTH) as r:
        assert r.status == status, await r.text()
        return await r.json()


WANTED = [
    MPD,
    "/sample/init-0.mp4",
    "/sample/init-2.mp4",
    "/sample/chunk-0-00001.m4s",
    "/sample/chunk-0-00002.m4s",
    "/sample/chunk-2-00001.m4s",
    "/sample/chunk-2-00002.m4s",
]


async def test_admin_prewarm_fills_exactly_what_was_asked(tc, http):
    """lowest=1, seconds=4 warms the MPD, two inits and two segments of each; then skips them."""
    body = {"manifest": MPD, "lowest": 1, "seconds": 4, "concurrency": 3}
    report = await prewarm(http, tc.edge_admin, body)
    assert report == {
        "node": "edge-1",
        "manifest": MPD,
        "total": 7,
        "fetched": 7,
        "skipped": 0,
        "failed": 0,
        "seconds": report["seconds"],
        "failures": [],
        "error": None,
    }
    for node in (tc.edge_node, tc.regional_node):  # an edge pre-warm fills its parent too
        assert sorted(obj.key for obj in node.store) == sorted(WANTED)
    assert tc.origin_requests() == len(WANTED)
    for path in WANTED[1:]:
        assert is_edge_hit(await get(http, tc.url(path)))
    for path in ("/sample/init-1.mp4", "/sample/chunk-0-00003.m4s", "/sample/chunk-1-00001.m4s"):
        assert "edge-1; fwd=uri-miss" in await get(http, tc.url(path))
    again = await prewarm(http, tc.edge_admin, body)
    assert (again["fetched"], again["skipped"], again["failed"]) == (0, 7, 0)


async def test_admin_prewarm_top_warms_the_most_requested_titles(tc, http):
    """`top` warms the titles this node was asked for most; /top lists them."""
    await get(http, tc.url(MPD))
    await get(http, tc.url(MPD))
    async with http.get(tc.edge_admin + "/top?n=5") as r:
        assert await r.json() == {"node": "edge-1", "titles": [{"manifest": MPD, "requests": 2}]}
    answer = await prewarm(http, tc.edge_admin, {"top": 5, "lowest": 1, "seconds": 2})
    [report] = answer["titles"]
    assert report["manifest"] == MPD and report["total"] == 5
    assert (report["skipped"], report["fetched"]) == (1, 4)  # the MPD was already cached
    assert "/sample/chunk-2-00001.m4s" in {obj.key for obj in tc.edge_node.store}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"manifest": "sample/manifest.mpd"}, "starting with"),
        ({}, "starting with"),
        ({"manifest": MPD, "lowest": 0}, "lowest"),
        ({"manifest": MPD, "seconds": -1}, "seconds"),
        ({"manifest": MPD, "concurrency": 10_000}, "concurrency"),
        ({"top": "many"}, "top"),
    ],
)
async def test_admin_prewarm_rejects_bad_input(tc, http, body, message):
    """Bad input is a 400 naming the field."""
    answer = await prewarm(http, tc.edge_admin, body, status=400)
    assert message in answer["error"]


async def test_admin_prewarm_of_a_missing_title_reports_502(tc, http):
    """A manifest the origin does not have: 502 with a report saying so."""
    report = await prewarm(http, tc.edge_admin, {"manifest": "/nope/manifest.mpd"}, status=502)
    assert report["failed"] == 1 and report["failures"] == ["/nope/manifest.mpd"]
    assert "could not be fetched" in report["error"]


async def test_admin_top_rejects_a_bad_n(tc, http):
    """?n= must be a positive integer."""
    for n in ("abc", "0", "-3"):
        async with http.get(tc.edge_admin + f"/top?n={n}") as r:
            assert r.status == 400


async def test_admin_prewarm_of_a_non_manifest_reports_502(tc, http):
    """A path that is not an MPD: 502, the report says why."""
    report = await prewarm(http, tc.edge_admin, {"manifest": "/sample/init-0.mp4"}, status=502)
    assert report["error"].startswith("manifest: not XML")
    assert (report["fetched"], report["total"]) == (1, 1)


async def test_prewarm_in_process_reports_progress_and_checks_arguments(chain):
    """The progress callback sees every step up to the total; bad arguments raise."""
    seen: list[tuple[int, int]] = []
    report = await run_prewarm(
        chain.edge_node, MPD, lowest=2, concurrency=4, progress=lambda d, t: seen.append((d, t))
    )
    assert report.total == 13 and report.fetched == 13
    assert [d for d, _ in seen] == list(range(1, 14)) and {t for _, t in seen} == {13}
    assert report.to_json()["failures"] == []
    for concurrency in (0, 65):
        with pytest.raises(ValueError, match="concurrency"):
            await run_prewarm(chain.edge_node, MPD, concurrency=concurrency)
    with pytest.raises(ValueError, match="starting with"):
        await run_prewarm(chain.edge_node, "sample/manifest.mpd")
