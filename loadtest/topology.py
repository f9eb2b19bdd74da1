"""Load-test helpers around the three-tier topology (``shared.ops.topology``): what a
tier says about itself (``/metrics``, ``/stats``) and a plain GET through it.

Only loopback: every tier listens on ``127.0.0.1`` on ports the OS handed out.
Metric samples are keyed ``name{label="value",...}`` as ``metrics`` returns
them; a counter that goes down means its tier was restarted.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from shared.ops.topology import HOST, Tier, Topology, TopologyError, free_ports

__all__ = [
    "EDGE_HIT",
    "EDGE_NAME",
    "HOST",
    "ORIGIN_REQUESTS",
    "REQUESTS",
    "Tier",
    "Topology",
    "TopologyError",
    "by_label",
    "counter_total",
    "free_ports",
    "get",
    "metrics",
    "request_counts",
    "stats",
]

REQUESTS = "tiercdn_requests_total"  # an edge's or a regional's requests, by outcome
ORIGIN_REQUESTS = "tiercdn_origin_requests_total"  # the origin's, by kind and status class
EDGE_NAME = "edge-1"  # the edge's name in Cache-Status (its default node name)
EDGE_HIT = f"{EDGE_NAME}; hit"  # its member of Cache-Status on a hit


def metrics(admin_url: str, timeout: float = 5.0) -> dict[str, float]:
    """Every sample of ``<admin_url>/metrics``, keyed ``name{label="value",...}``."""
    with urllib.request.urlopen(admin_url.rstrip("/") + "/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def by_label(samples: dict[str, float], name: str) -> dict[str, float]:
    """``{label value: sample}`` of a one-label family ``name`` in a ``metrics`` dict."""
    return {k.split('"')[1]: v for k, v in samples.items() if k.startswith(name + "{")}


def counter_total(samples: dict[str, float], name: str) -> float:
    """The samples of ``name`` summed over all their labels."""
    return sum(v for k, v in samples.items() if k.startswith(name))


def request_counts(
    admins: dict[str, str], timeout: float = 5.0
) -> dict[str, dict[str, float] | None]:
    """Each tier's requests so far, from its admin URL in ``admins``: the origin's as
    ``{"requests": n}``, the others' by outcome; None for a tier that did not answer."""
    found: dict[str, dict[str, float] | None] = {}
    for tier, url in admins.items():
        try:
            got = metrics(url, timeout=timeout)
        except (OSError, ValueError):
            found[tier] = None
            continue
        if tier == "origin":
            found[tier] = {"requests": counter_total(got, ORIGIN_REQUESTS)}
        else:
            found[tier] = by_label(got, REQUESTS)
    return found


def stats(admin_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """``<admin_url>/stats``: what the tier's store holds (objects, bytes, ...)."""
    with urllib.request.urlopen(admin_url + "/stats", timeout=timeout) as resp:
        data: dict[str, Any] = json.load(resp)
    return data


def get(url: str, timeout: float = 10.0) -> tuple[bytes, str]:
    """The body of ``GET url`` and its ``Cache-Status`` ("" if none); raises on a 4xx/5xx."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body, resp.headers.get("Cache-Status", "")
