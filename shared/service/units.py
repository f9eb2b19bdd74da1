"""Human units for sizes and durations (``512MiB``, ``2s``, ``250ms``).

Pure: no I/O. Both parsers accept plain numbers (bytes, seconds) and raise
``ValueError`` with a message naming the bad value.
"""

from __future__ import annotations

import re
from typing import TypeVar

__all__ = ["format_size", "parse_duration", "parse_size"]

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "m": 60.0, "min": 60.0, "h": 3600.0}
_N = TypeVar("_N", int, float)
_NUMBER_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes from ``"512MiB"``, ``"4MB"``, ``"1024"`` or an int."""
    if isinstance(text, int):
        return _non_negative(text, text)
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r} (try 512MiB, 4MB or 1048576)")
    return _non_negative(int(float(match.group(1)) * _SIZE_UNITS[unit]), text)


def parse_duration(text: str | float) -> float:
    """Seconds from ``"2s"``, ``"250ms"``, ``"1.5"``, ``"5m"`` or a number."""
    if isinstance(text, int | float):
        return float(_non_negative(text, text))
    match = _NUMBER_UNIT.match(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(f"not a duration: {text!r} (try 2s, 250ms or 1.5)")
    return float(_non_negative(float(match.group(1)) * _DURATION_UNITS[unit], text))


def format_size(n: int) -> str:
    """``1536`` → ``"1.5KiB"``: for logs and progress output."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _non_negative(value: _N, text: object) -> _N:
    if value < 0:
        raise ValueError(f"must not be negative: {text!r}")
    return value
