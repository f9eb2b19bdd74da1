"""``tiercdn check-config FILE``: validate a config file without starting anything.

As ``nginx -t``: exit 0 and one ``ok`` line when every tier in the file would
start with it, else exit 1 and one ``error: ...`` line naming the file, the key
and the value. A file is either one service's settings (keys at the top, as its
``--config`` takes; name the tier with ``--tier``) or a table per tier,
``[edge]``, ``[regional]``, ``[origin]`` (as ``tiercdn up --config`` takes).

Each tier is checked as its service builds its settings: the tier's defaults,
then the file. Env vars and flags are not consulted: they are the operator's
overrides at start, not part of the file.
"""

from __future__ import annotations

import sys
import tomllib
from typing import Any

from shared.service.settings import read_config

__all__ = ["TIER_SECTIONS", "add_check_config", "check_config"]

TIER_SECTIONS = ("edge", "regional", "origin")


def add_check_config(verbs: Any) -> None:
    """Register ``check-config`` on ``tiercdn``'s subparsers."""
    p = verbs.add_parser("check-config", help="validate a config file without starting anything")
    p.add_argument("file", metavar="FILE", help="TOML file: one tier's keys, or [edge] etc.")
    p.add_argument("--tier", choices=TIER_SECTIONS, help="the tier to check (default: every one)")


def check_config(path: str, tier: str | None = None) -> int:
    """Check ``path`` (only ``tier``'s part, if given); the process exit code."""
    try:
        checked = _check_file(path, tier)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{path}: ok ({', '.join(checked)})")
    return 0


def _check_file(path: str, tier: str | None) -> list[str]:
    try:
        with open(path, "rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise SystemExit(f"error: {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"error: {path}: not TOML: {exc}") from None
    sections = [name for name in TIER_SECTIONS if isinstance(table.get(name), dict)]
    if not sections:  # one service's file
        if tier is None:
            raise SystemExit(f"error: {path}: no [edge], [regional] or [origin] table; use --tier")
        _check_tier(tier, path, table)
        return [tier]
    for key, value in table.items():
        if key not in sections:
            raise SystemExit(
                f"error: {path}: {key} = {value!r} outside a [edge], [regional] or [origin] table"
            )
    if tier is not None and tier not in sections:
        raise SystemExit(f"error: {path}: no [{tier}] table")
    checked = [tier] if tier else sections
    for name in checked:
        _check_tier(name, f"{path} [{name}]", table[name])
    return checked


def _check_tier(tier: str, where: str, table: dict[str, Any]) -> None:
    cls, defaults = _tier(tier)
    values = {**defaults, **read_config(cls, where, table)}
    try:
        cls(**values)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: {where}: invalid settings: {exc}") from None


def _tier(tier: str) -> tuple[type[Any], dict[str, Any]]:
    """The tier's settings class and the defaults its ``__main__`` passes."""
    if tier == "edge":
        from edge.app import DEFAULTS as EDGE
        from edge.settings import EdgeSettings

        return EdgeSettings, dict(EDGE)
    if tier == "regional":
        from regional.app import DEFAULTS as REGIONAL
        from regional.settings import RegionalSettings

        return RegionalSettings, dict(REGIONAL)
    from origin.settings import OriginSettings

    return OriginSettings, {}
