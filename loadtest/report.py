"""What every benchmark's JSON summary carries: its settings, the machine, and where it went."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

__all__ = ["config_of", "host_facts", "write_summary"]


def config_of(ns: argparse.Namespace) -> dict[str, Any]:
    """The parsed flags, JSON-ready."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(ns).items()}


def host_facts(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """Python, cores, and the load average before and after: a noisy machine shows here."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write ``summary`` as indented JSON to ``path`` (making its folder) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {path}")
