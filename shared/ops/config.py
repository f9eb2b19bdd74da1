"""``tiercdn check-config FILE``: validate a config file without starting anything.

As ``nginx -t``: exit 0 and one ``ok`` line when every tier in the file would
start with it, else exit 1 and one ``error: ...`` line naming the file, the key
and the value. A file is either one service's settings (keys at the top, as its
``--config`` takes; name the tier with ``--tier``) or a table per tier,
``[edge]``, ``[regional]``, ``[origin]`` (as ``tiercdn up --config`` takes, with
an optional ``[up]`` table of ``tiercdn up``'s own flags).

Each tier is checked as its service builds its settings: the tier's defaults,
then the file. Env vars and flags are not consulted: they are the operator's
overrides at start, not part of the file.

``read_up_config`` is ``tiercdn up``'s reader: the same checks, and a tier key
that ``up`` sets itself (``UP_OWNED``: ports, upstreams, library...) is refused,
since ``up`` decides the topology.
"""

from __future__ import annotations

import sys
import tomllib
from typing import Any

from shared.service.settings import read_config

__all__ = ["TIER_SECTIONS", "UP_OWNED", "add_check_config", "check_config", "read_up_config"]

TIER_SECTIONS = ("edge", "regional", "origin")
_UP = "up"  # the optional table of ``tiercdn up``'s own flags

# Settings ``tiercdn up`` gives each tier itself (its flags --*-port, --host,
# --admin-offset, --library, --cache-dir): a tier's table may not set them.
_OWNED_BY_ALL = ("host", "port", "admin_port")
UP_OWNED: dict[str, tuple[str, ...]] = {
    "origin": (*_OWNED_BY_ALL, "library"),
    "regional": (*_OWNED_BY_ALL, "name", "upstream", "disk_path"),
    "edge": (*_OWNED_BY_ALL, "name", "upstream", "fallback"),
}


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


def read_up_config(path: str) -> dict[str, dict[str, Any]]:
    """``tiercdn up --config``'s file, checked whole: ``{"edge": {...}, ..., "up": {...}}``
    (a missing table is ``{}``), keys as written; a bad one ends the program with one
    line naming the file, the key and the value."""
    table = _load(path)
    if not any(isinstance(table.get(name), dict) for name in TIER_SECTIONS):
        raise SystemExit(f"error: {path}: no [edge], [regional] or [origin] table")
    _check_file(path, None, table)
    for tier, owned in UP_OWNED.items():
        for key, value in table.get(tier, {}).items():
            if key.replace("-", "_") in owned:
                raise SystemExit(
                    f"error: {path} [{tier}]: {key} = {value!r} is set by tiercdn up itself"
                    " (use its flags: --*-port, --host, --admin-offset, --library, --cache-dir)"
                )
    return {name: dict(table.get(name, {})) for name in (*TIER_SECTIONS, _UP)}


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise SystemExit(f"error: {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SystemExit(f"error: {path}: not TOML: {exc}") from None


def _check_file(path: str, tier: str | None, table: dict[str, Any] | None = None) -> list[str]:
    table = _load(path) if table is None else table
    sections = [name for name in TIER_SECTIONS if isinstance(table.get(name), dict)]
    if not sections:  # one service's file
        if tier is None:
            raise SystemExit(f"error: {path}: no [edge], [regional] or [origin] table; use --tier")
        _check_tier(tier, path, table)
        return [tier]
    if isinstance(table.get(_UP), dict):
        _check_tier(_UP, f"{path} [{_UP}]", table[_UP])
    for key, value in table.items():
        if key not in sections and not (key == _UP and isinstance(value, dict)):
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
    if tier == _UP:
        from shared.ops.up import UpSettings  # up imports this module

        return UpSettings, {}
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
