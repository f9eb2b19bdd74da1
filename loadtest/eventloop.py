"""The event loop a load generator runs on: uvloop where it is installed.

A load generator is measured as much as the CDN is: uvloop makes the client
side cheaper per request, so the client is less often the bottleneck. Each
run is one ``asyncio.run``-style loop, closed when the coroutine returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_loop"]

T = TypeVar("T")


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop (uvloop when installed); its result."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result
