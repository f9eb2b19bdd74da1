"""The admin listener of a cache node: /metrics, /stats, /healthz; token checks that
never fail on the bytes sent and lock out an address that keeps guessing."""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from regional.app import DEFAULTS as REGIONAL_DEFAULTS
from regional.app import make_app as make_regional_app
from shared.service.admin import FAILURE_BURST, FAILURE_RATE, make_admin_app
from shared.service.run import open_listeners
from tests.helpers import Clock, regional_settings, url_of


def samples(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


async def test_admin_metrics_stats_and_health(aiohttp_server, origin_server, http):
    """After a miss and a hit, metrics, stats and health report them."""
    settings = regional_settings("regional-1", url_of(origin_server))
    app = make_regional_app(settings)
    node = url_of(await aiohttp_server(app))
    admin = url_of(await aiohttp_server(make_admin_app(app)))
    for _ in range(2):
        async with http.get(node + "/sample/init-0.mp4") as r:
            body = await r.read()
    async with http.get(admin + "/metrics") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        m = samples(await r.text())
    assert m['tiercdn_requests_total{outcome="hit"}'] == 1
    assert m['tiercdn_requests_total{outcome="miss"}'] == 1
    assert m['tiercdn_response_bytes_total{source="cache"}'] == len(body)
    assert m['tiercdn_response_bytes_total{source="upstream"}'] == len(body)
    parent = url_of(origin_server)
    assert m[f'tiercdn_upstream_requests_total{{parent="{parent}",result="2xx"}}'] == 1
    assert m[f'tiercdn_breaker_state{{parent="{parent}"}}'] == 0
    assert m["tiercdn_upstream_bytes_total"] == len(body)
    assert m["tiercdn_store_objects"] == 1 and m["tiercdn_store_bytes"] > len(body)
    assert m["tiercdn_fills_in_flight"] == 0 and m["tiercdn_misses_in_flight"] == 0
    assert m['tiercdn_admission_total{decision="reject"}'] == 0
    assert m['tiercdn_first_byte_seconds_count{outcome="hit"}'] == 1
    async with http.get(admin + "/stats") as r:
        stats = await r.json()
    assert stats["name"] == "regional-1" and stats["objects"] == 1
    assert stats["hit_ratio"] == 0.5
    assert stats["requests"]["hit"] == 1
    assert stats["upstreams"] == {url_of(origin_server): "closed"}
    async with http.get(admin + "/healthz") as r:
        assert r.status == 200 and await r.text() == "ok\n"


def test_regional_defaults_point_at_the_origin():
    """The regional's defaults are the shield's: its own name, ports and bigger budget."""
    assert REGIONAL_DEFAULTS["name"] == "regional-1"
    assert REGIONAL_DEFAULTS["upstream"] == ("http://127.0.0.1:8082",)
    assert REGIONAL_DEFAULTS["cache_bytes"] == 2**30


# -- token checks: any bytes, and a lockout per address ------------------------------

TOKEN = "s3cret-tøken"  # not ASCII: sent as its UTF-8 bytes
NOWHERE = "http://127.0.0.1:9"  # these tests never go upstream


@dataclasses.dataclass
class Admin:
    url: str
    clock: Clock


@pytest.fixture
async def admin(start_node, aiohttp_server) -> Admin:
    """A node with ``TOKEN`` and a hand-moved clock, and its admin listener."""
    clock = Clock()
    node = await start_node("edge-1", NOWHERE, clock=clock, admin_token=TOKEN)
    return Admin(url_of(await aiohttp_server(make_admin_app(node.app))), clock)


async def raw_purge(base: str, field: bytes) -> tuple[int, dict[str, str]]:
    """POST /purge with one raw header line ``field`` (any bytes, as a client may send);
    the status and headers of the answer."""
    url = URL(base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(
            b"POST /purge HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: 13\r\n"
            + field
            + b'\r\n\r\n{"all": true}'
        )
        head = (await reader.read()).partition(b"\r\n\r\n")[0].decode("latin-1")
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, *lines = head.split("\r\n")
    headers = {name.lower(): value for name, _, value in (h.partition(": ") for h in lines)}
    return int(status_line.split()[1]), headers


async def failures(http, base: str) -> dict[str, float]:
    async with http.get(base + "/metrics") as r:
        m = samples(await r.text())
    prefix = "tiercdn_admin_auth_failures_total"
    return {k[len(prefix) :]: v for k, v in m.items() if k.startswith(prefix)}


@pytest.mark.parametrize(
    ("field", "status"),
    [
        pytest.param(b"Authorization: Bearer \xff", 403, id="not-utf8"),  # was a 500
        pytest.param(b"Authorization: Bearer \xff\xfe\x80s3cret", 403, id="not-utf8-long"),
        pytest.param(b"X-Tiercdn-Token: " + TOKEN.encode()[:9], 403, id="cut-inside-a-char"),
        pytest.param(b"Authorization: Bearer " + b"\xff" * 8000, 403, id="8000-bytes"),
        pytest.param(b"Authorization: Bearer wrong", 403, id="wrong"),
        pytest.param(b"X-Tiercdn-Token: " + TOKEN.encode("latin-1"), 403, id="latin-1"),
        pytest.param(b"Authorization: Bearer ", 401, id="empty-bearer"),
        pytest.param(b"Authorization: Bearer", 401, id="bare-bearer"),
        pytest.param(b"X-Tiercdn-Token: ", 401, id="empty-x-token"),
        pytest.param(b"Authorization: Bearer " + TOKEN.encode(), 200, id="right-bearer"),
        pytest.param(b"X-Tiercdn-Token: " + TOKEN.encode(), 200, id="right-x-token"),
    ],
)
async def test_admin_token_of_any_bytes_gets_401_or_403_never_500(admin, http, field, status):
    """Whatever bytes the token is, the check answers 401 (none), 403 (wrong) or 200."""
    got, headers = await raw_purge(admin.url, field)
    assert got == status
    if status == 401:
        assert headers["www-authenticate"] == "Bearer"
    refused = {401: "missing", 403: "wrong"}.get(status)
    counted = await failures(http, admin.url)
    assert sum(counted.values()) == (refused is not None)
    if refused:
        assert counted[f'{{result="{refused}"}}'] == 1


async def test_admin_huge_token_never_reaches_500():
    """A 64 KiB token on the admin listener ``serve`` runs: judged by the token check
    (403), not refused by the parser; an empty one is missing (401)."""
    app = make_regional_app(regional_settings("regional-1", NOWHERE, admin_token=TOKEN))
    listeners = await open_listeners(app, "127.0.0.1", 0, make_admin_app(app), "127.0.0.1", 0)
    try:
        admin = f"http://127.0.0.1:{listeners[1].port}"
        field = b"Authorization: Bearer " + b"\xff" * 64 * 1024
        assert (await raw_purge(admin, field))[0] == 403
        assert (await raw_purge(admin, b"Authorization: Bearer "))[0] == 401
    finally:
        for listener in reversed(listeners):
            await listener.stop()


async def purge(http, base: str, token: str) -> aiohttp.ClientResponse:
    async with http.post(
        base + "/purge", json={"all": True}, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        await r.read()
        return r


async def test_admin_failed_guesses_are_rate_limited_then_the_token_works(admin, http):
    """100 wrong guesses from one address: the first ``FAILURE_BURST`` get 403, the
    rest 429 with Retry-After, and so does the right token while locked out. Once
    Retry-After has passed the right token works, and successes are never limited."""
    statuses = [(await purge(http, admin.url, f"guess-{i}")).status for i in range(100)]
    assert statuses == [403] * FAILURE_BURST + [429] * (100 - FAILURE_BURST)
    locked = await purge(http, admin.url, TOKEN)
    assert locked.status == 429 and locked.headers["Retry-After"] == "1"
    assert await failures(http, admin.url) == {
        '{result="disabled"}': 0,
        '{result="limited"}': 100 - FAILURE_BURST + 1,
        '{result="missing"}': 0,
        '{result="wrong"}': FAILURE_BURST,
    }

    admin.clock.now += 1 / FAILURE_RATE  # one more failure allowed: it is the right token
    assert [(await purge(http, admin.url, TOKEN)).status for _ in range(30)] == [200] * 30
    assert (await purge(http, admin.url, "guess")).status == 403  # that failure took it
    assert (await purge(http, admin.url, TOKEN)).status == 429

    admin.clock.now += FAILURE_BURST / FAILURE_RATE  # full again: forgotten
    statuses = [(await purge(http, admin.url, f"again-{i}")).status for i in range(11)]
    assert statuses == [403] * FAILURE_BURST + [429]


async def test_admin_lockout_is_per_address(admin, http):
    """An address locked out by its guesses does not lock out another one
    (127.0.0.2 is loopback too)."""
    for i in range(FAILURE_BURST):
        assert (await purge(http, admin.url, f"guess-{i}")).status == 403
    assert (await purge(http, admin.url, TOKEN)).status == 429
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as other:
        assert (await purge(other, admin.url, TOKEN)).status == 200
        assert (await purge(other, admin.url, "guess")).status == 403
    assert (await purge(http, admin.url, TOKEN)).status == 429


async def test_admin_stats_origin_budget_is_numbers(aiohttp_server, origin_server, http):
    """/stats is plain JSON all the way down: the origin budget is a dict of numbers."""
    settings = dataclasses.replace(
        regional_settings("regional-1", url_of(origin_server)), origin_rate=5.0, origin_burst=7
    )
    app = make_regional_app(settings)
    admin = url_of(await aiohttp_server(make_admin_app(app)))
    async with http.get(admin + "/stats") as r:
        budget = (await r.json())["origin_budget"]
    assert budget["rate"] == 5.0 and budget["burst"] == 7 and budget["rejected"] == 0
    assert set(budget) == {
        *("rate", "burst", "tokens", "concurrency", "in_flight", "waiting", "rejected")
    }
