"""Table-driven tests for shared.http.targeted (RFC 9213 targeted cache control)."""

from __future__ import annotations

import pytest

from shared.http import targeted
from shared.http.cachepolicy import Storable, stale_rules, storable
from shared.http.freshness import freshness_lifetime
from shared.service.settings import CacheSettings
from tests.helpers import date, hdrs

CDN = ("CDN-Cache-Control",)
OWN = ("Edge-Cache-Control", "CDN-Cache-Control")
BASE = ("Cache-Control: max-age=0, must-revalidate", f"Date: {date(0)}", f"Expires: {date(30)}")


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        pytest.param("", CDN, id="s2.2-cdn-only"),
        pytest.param("Edge-Cache-Control", OWN, id="s2.2-own-first"),
        pytest.param("  ", CDN, id="blank-is-none"),
    ],
)
def test_target_list(own, expected):
    """A node's own field comes before CDN-Cache-Control (RFC 9213 §2.2)."""
    assert targeted.target_list(own) == expected


@pytest.mark.parametrize(
    ("fields", "targets", "cache_control"),
    [
        # §2.2: the first valid field stands in for Cache-Control
        pytest.param(("CDN-Cache-Control: max-age=60",), CDN, "max-age=60", id="s2.2-cdn"),
        pytest.param(
            ("CDN-Cache-Control: max-age=60", "Edge-Cache-Control: max-age=5"),
            OWN,
            "max-age=5",
            id="s2.2-own-first",
        ),
        pytest.param(
            ("CDN-Cache-Control: max-age=60", "Edge-Cache-Control: Max-Age=5"),
            OWN,
            "max-age=60",
            id="s2.1-invalid-own-falls-back",
        ),
        pytest.param(
            ("Edge-Cache-Control: max-age=5",), CDN, None, id="s2.2-not-on-list-no-effect"
        ),
        # §2.1: a Structured Fields Dictionary; empty or invalid is ignored
        pytest.param(("CDN-Cache-Control: ",), CDN, None, id="s2.1-empty"),
        pytest.param(("CDN-Cache-Control: max-age=60,",), CDN, None, id="s2.1-trailing-comma"),
        pytest.param(("CDN-Cache-Control: max-age=60 x",), CDN, None, id="s2.1-junk"),
        pytest.param(("CDN-Cache-Control: MAX-AGE=60",), CDN, None, id="s2.1-uppercase-key"),
        pytest.param(('CDN-Cache-Control: max-age="60',), CDN, None, id="s2.1-open-string"),
        pytest.param(
            ("CDN-Cache-Control: no-store, max-age=60",), CDN, "no-store, max-age=60", id="bare"
        ),
        pytest.param(
            ("CDN-Cache-Control: max-age=1", "CDN-Cache-Control: max-age=2"),
            CDN,
            "max-age=2",
            id="rfc8941-lines-joined-last-wins",
        ),
        pytest.param(
            ('CDN-Cache-Control: private="a, b";p=1, max-age=3',),
            CDN,
            'private="a, b", max-age=3',
            id="rfc8941-string-params-ignored",
        ),
        pytest.param(
            ("CDN-Cache-Control: no-store=?0, no-cache=?1, x=(a b)",),
            CDN,
            "no-cache",
            id="rfc8941-booleans-inner-list",
        ),
        pytest.param(
            ("CDN-Cache-Control: stale-while-revalidate=30, stale-if-error=60, s-maxage=9",),
            CDN,
            "stale-while-revalidate=30, stale-if-error=60, s-maxage=9",
            id="s2.2-every-directive",
        ),
    ],
)
def test_cache_headers(fields, targets, cache_control):
    """The view replaces Cache-Control and drops Expires, or is the headers unchanged."""
    headers = hdrs(*BASE, *fields)
    view = targeted.cache_headers(headers, targets)
    if cache_control is None:
        assert view is headers
    else:
        assert view.getall("Cache-Control") == [cache_control]
        assert "Expires" not in view
        assert view["Date"] == headers["Date"]
        assert all(view.getall(f.split(":")[0]) for f in fields)  # forwarded, not consumed


@pytest.mark.parametrize(
    ("cdn", "verdict", "lifetime", "forbidden"),
    [
        pytest.param("max-age=60", Storable.YES, 60.0, False, id="s2.2-max-age"),
        pytest.param("no-store", Storable.NO_STORE, 0.0, False, id="s2.2-no-store"),
        pytest.param("private, max-age=60", Storable.PRIVATE, 60.0, False, id="s2.2-private"),
        pytest.param("no-cache, max-age=60", Storable.YES, 60.0, True, id="s2.2-no-cache"),
        pytest.param("max-age=60, must-revalidate", Storable.YES, 60.0, True, id="s2.2-must-rev"),
        pytest.param("s-maxage=20, max-age=60", Storable.YES, 20.0, True, id="s2.2-s-maxage"),
        pytest.param("x-unknown", Storable.NOT_FRESH, 0.0, False, id="s2.2-extension-ignored"),
    ],
)
def test_policy_read_through_the_view(cdn, verdict, lifetime, forbidden):
    """Storage, lifetime and stale rules obey CDN-Cache-Control over Cache-Control:
    public, max-age=600 (RFC 9213 §2.2); Expires is ignored."""
    headers = hdrs("Cache-Control: public, max-age=600", f"CDN-Cache-Control: {cdn}", *BASE[1:])
    view = targeted.cache_headers(headers, CDN)
    assert storable("GET", 200, hdrs(), view, heuristic_max_age=3600) is verdict
    assert freshness_lifetime(200, view, heuristic_max_age=3600) == lifetime
    assert stale_rules(view).forbidden is forbidden


@pytest.mark.parametrize(
    "name", ["Edge Cache", "Cache-Control", "a,b", "Ed\u00e9-Cache-Control"], ids=str
)
def test_settings_reject_a_bad_targeted_field_name(name):
    """--targeted-cache-control must be a field name other than Cache-Control."""
    with pytest.raises(ValueError, match="--targeted-cache-control"):
        CacheSettings(upstream=("http://x",), targeted_cache_control=name)
