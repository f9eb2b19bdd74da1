"""Printing a benchmark's table: values found by path in its rows, right-aligned cells,
and each target's verdict.

A row is the JSON summary's own dict, so the table shows exactly what the
summary holds: a column names a path into the row (``dig``), a missing value
prints as ``-``, a float with one decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["cell", "dig", "print_targets"]

_VERDICTS = {True: "PASS", False: "FAIL", None: "n/a "}  # None: not judged (did not run)


def dig(row: dict[str, Any], path: Sequence[str]) -> Any:
    """``row[path[0]][path[1]]...``; None where a key is missing or a value is no dict."""
    value: Any = row
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def cell(value: Any, width: int) -> str:
    """``value`` right-aligned in ``width``: ``-`` for None, one decimal for a float."""
    if value is None:
        return f"{'-':>{width}}"
    if isinstance(value, float):
        return f"{value:>{width}.1f}"
    return f"{value!s:>{width}}"


def print_targets(goals: Sequence[dict[str, Any]], target_width: int, goal_width: int) -> None:
    """``targets:`` and a line per goal: PASS, FAIL or n/a, the target, the goal, what was
    seen (each goal a dict with ``target``, ``goal``, ``seen`` and ``pass``)."""
    print("\ntargets:")
    for g in goals:
        target, goal = f"{g['target']:<{target_width}}", f"{g['goal']:<{goal_width}}"
        print(f"  {_VERDICTS[g['pass']]}  {target} {goal} seen {g['seen']}")
