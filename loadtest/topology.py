"""Load-test helpers around the three-tier topology (``shared.ops.topology``).

Only loopback: every tier listens on ``127.0.0.1`` on ports the OS handed out.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from shared.ops.topology import HOST, Tier, Topology, TopologyError, free_ports

__all__ = [
    "HOST",
    "Tier",
    "Topology",
    "TopologyError",
    "free_ports",
    "metrics",
    "rss_bytes",
]


def rss_bytes(pid: int, field: str = "VmRSS") -> int | None:
    """``VmRSS`` (or ``VmHWM``, the peak) of ``pid`` from ``/proc``, or None if unavailable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    return None


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
