"""The admin listener of a cache node: /metrics, /stats, /healthz."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from regional.app import DEFAULTS as REGIONAL_DEFAULTS
from regional.app import make_app as make_regional_app
from shared.service.admin import make_admin_app
from tests.helpers import regional_settings, url_of


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
