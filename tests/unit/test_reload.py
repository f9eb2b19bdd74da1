"""``shared.service.reload.apply``: what a reload changes live, and what it keeps."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from shared.engine.node import Node
from shared.service.reload import apply
from tests.helpers import edge_settings

UP = "http://parent-a:8080"


def node(upstream: str | list[str] = UP, **kw: Any) -> Node:
    return Node(edge_settings("edge-1", upstream, **kw))


def test_nothing_changed_is_an_empty_list() -> None:
    n = node()
    assert apply(n, n.settings) == []


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        ("max_fills", 7, lambda n: n.shedder.max_fills == 7),
        ("max_requests", 9, lambda n: n.shedder.max_requests == 9),
        ("origin_rate", 5.0, lambda n: n.budget.bucket.rate == 5.0 and n.driver._limited),
        ("origin_concurrency", 3, lambda n: n.budget.concurrency == 3),
        ("origin_wait", 2.0, lambda n: n.budget.max_wait == 2.0),
        ("stale_if_busy", 9.0, lambda n: n.policy.stale_if_busy == 9.0),
        ("stale_if_error", 8.0, lambda n: n.driver._policy.stale_if_error == 8.0),
        ("heuristic_max_age", 60.0, lambda n: n.fetcher.heuristic_max_age == 60.0),
        ("pass_ttl", 3.0, lambda n: n.fetcher.pass_marks.ttl == 3.0),
        ("negative_ttl", ("404=2s",), lambda n: n.fetcher.negative_ttl == {404: 2.0}),
        ("targeted_cache_control", "Edge-CC", lambda n: n.fetcher.targets[0] == "Edge-CC"),
        ("admin_token", "s3cret", lambda n: n.settings.admin_token == "s3cret"),
        ("retry_after", 4.0, lambda n: n.settings.retry_after == 4.0),
    ],
)
def test_live_settings_are_applied(field: str, value: Any, check: Any) -> None:
    n = node()
    new = dataclasses.replace(n.settings, **{field: value})
    assert apply(n, new) == ["--" + field.replace("_", "-")]
    assert check(n)
    assert getattr(n.settings, field) == value


def test_restart_settings_are_named_and_kept_while_the_rest_applies() -> None:
    n = node()
    old = n.settings
    new = dataclasses.replace(old, port=1234, upstream_connections=8, max_fills=5)
    changes = apply(n, new)
    assert set(changes) == {
        "--port (needs a restart)",
        "--upstream-connections (needs a restart)",
        "--max-fills",
    }
    assert n.settings.port == old.port
    assert n.settings.upstream_connections == old.upstream_connections
    assert n.settings.max_fills == n.shedder.max_fills == 5


def test_breakers_keep_their_state_and_take_the_new_thresholds() -> None:
    n = node([UP, "http://parent-b:8080"])
    kept = n.upstream.breakers[UP]
    kept.record(False, 0.0)
    new = dataclasses.replace(
        n.settings, breaker_min_requests=3, upstream=(UP, "http://parent-c:8080")
    )
    assert apply(n, new) == ["--upstream", "--breaker-min-requests"]
    assert n.upstream.parents == [UP, "http://parent-c:8080"]
    assert n.upstream.breakers[UP] is kept and kept.rate(0.0) == (1, 1)
    assert kept.min_requests == 3
    assert n.upstream.breakers["http://parent-c:8080"].min_requests == 3
    assert "http://parent-b:8080" not in n.upstream.breakers


def test_log_level_is_applied_to_the_root_logger() -> None:
    n = node()
    root = logging.getLogger()
    before = root.level
    try:
        apply(n, dataclasses.replace(n.settings, log_level="ERROR"))
        assert root.level == logging.ERROR
    finally:
        root.setLevel(before)


def test_a_second_reload_diffs_against_what_the_node_runs() -> None:
    n = node()
    new = dataclasses.replace(n.settings, port=1234, max_fills=5)
    apply(n, new)
    assert apply(n, new) == ["--port (needs a restart)"]  # still not applied, still said
