"""Import rules of the layout (DESIGN.md, STYLE.md §1), checked on the source with ``ast``.

- The engine and the packages under it never import the tools around them or a tier:
  ``shared.{engine,store,http,policy,dash,hls,service}`` import nothing from
  ``shared.ops``, ``edge``, ``regional``, ``origin`` or ``loadtest``.
- Pure code (``shared.http``, ``shared.policy``, ``shared.dash``, ``shared.hls``, the engine's
  ``decide``) imports no event loop, HTTP, clock, environment, randomness or threads.
- Stores never speak HTTP: ``shared.store`` never imports aiohttp.

Every import counts: ``import x`` and ``from x import y``, relative ones, those
inside functions and under ``if TYPE_CHECKING:``, and ``importlib.import_module``
/ ``__import__`` with a literal name. One case per (rule, module), so a failure
names both, and the message names the import and its line.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

TIERS_AND_TOOLS = ("shared.ops", "edge", "regional", "origin", "loadtest")
IMPURE = (
    *("asyncio", "aiohttp", "time", "os", "random", "uvloop", "aiofiles"),
    *("prometheus_client", "threading", "concurrent"),
)
HTTP = ("aiohttp",)


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    scope: tuple[str, ...]  # packages and modules the rule covers
    forbidden: tuple[str, ...]  # top names; their submodules are forbidden too


RULES = (
    Rule(
        "below-tiers",
        ("shared.engine", "shared.store", "shared.http", "shared.policy", "shared.dash")
        + ("shared.hls", "shared.service"),
        TIERS_AND_TOOLS,
    ),
    Rule(
        "pure",
        ("shared.http", "shared.policy", "shared.dash", "shared.hls", "shared.engine.decide"),
        IMPURE,
    ),
    Rule("store-no-http", ("shared.store",), HTTP),
)

# Cases that fail today because of code another change is moving: strict, so the
# case fails as soon as the move lands and the mark must go. Key: (rule, module).
KNOWN: dict[tuple[str, str], str] = {}


def path_of(module: str) -> Path | None:
    """The source file of ``module`` (a package's ``__init__.py``), if it exists."""
    base = REPO.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def modules_under(name: str) -> list[str]:
    """``name`` and, for a package, every module below it (sorted dotted names)."""
    path = path_of(name)
    if path is None or path.name != "__init__.py":
        return [name]
    found = []
    for file in sorted(path.parent.rglob("*.py")):
        parts = file.relative_to(REPO).with_suffix("").parts
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def imports(source: str, module: str, *, is_package: bool) -> list[tuple[int, str]]:
    """Every module name ``source`` imports, with its line, relative imports resolved.

    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (``c`` may be a module)."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, base] if base else parent)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and _called(node.func) in ("importlib.import_module", "import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return sorted(found)


def _called(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def is_forbidden(name: str, forbidden: tuple[str, ...]) -> bool:
    """``name`` is a forbidden module or inside one (``time.x`` yes, ``timeit`` no)."""
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def violations(module: str, forbidden: tuple[str, ...]) -> list[str]:
    path = path_of(module)
    assert path is not None, module
    found = imports(path.read_text(), module, is_package=path.name == "__init__.py")
    return [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for line, name in found
        if is_forbidden(name, forbidden)
    ]


def cases() -> list[Any]:
    params = []
    for rule in RULES:
        for scope in rule.scope:
            for module in modules_under(scope):
                reason = KNOWN.get((rule.name, module))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                params.append(pytest.param(rule, module, id=f"{rule.name}:{module}", marks=marks))
    return params


@pytest.mark.parametrize(("rule", "module"), cases())
def test_layout_module_imports_follow_rule(rule: Rule, module: str) -> None:
    """A module imports none of what its layer's rule forbids."""
    if path_of(module) is None:
        pytest.skip(f"{module} does not exist (yet)")
    found = violations(module, rule.forbidden)
    assert not found, f"{module} breaks rule {rule.name!r}: " + "; ".join(found)


def test_layout_rules_cover_existing_packages() -> None:
    """Every package a rule names exists, so no rule silently checks nothing."""
    for rule in RULES:
        for scope in rule.scope:
            if scope != "shared.engine.decide":  # being written; checked once it exists
                assert path_of(scope) is not None, scope
    assert "shared.store.memory" in modules_under("shared.store")


SAMPLE = """
from __future__ import annotations
import os.path
import importlib
from typing import TYPE_CHECKING
from . import sibling
from ..http import cachepolicy
from .. import ops

if TYPE_CHECKING:
    from aiohttp import web

def later():
    import asyncio
    from shared.ops.cli import main
    return importlib.import_module("edge.app"), __import__("random")
"""


def test_layout_finds_every_kind_of_import() -> None:
    """The walker sees imports inside functions, under TYPE_CHECKING, relative and dynamic."""
    names = {name for _, name in imports(SAMPLE, "shared.engine.node", is_package=False)}
    assert {
        "os.path",
        "aiohttp",
        "aiohttp.web",
        "asyncio",
        "shared.ops.cli",
        "shared.engine.sibling",
        "shared.http.cachepolicy",
        "shared.ops",
        "edge.app",
        "random",
    } <= names
    init = {name for _, name in imports("from . import x", "shared.store", is_package=True)}
    assert init == {"shared.store", "shared.store.x"}


@pytest.mark.parametrize(
    ("source", "forbidden", "found"),
    [
        ("import asyncio", IMPURE, True),
        ("import concurrent.futures", IMPURE, True),
        ("from time import monotonic", IMPURE, True),
        ("def f():\n    import os", IMPURE, True),
        ("from shared import ops", TIERS_AND_TOOLS, True),
        ("import loadtest.viewers", TIERS_AND_TOOLS, True),
        ("from aiohttp.web import Response", HTTP, True),
        ("import timeit", IMPURE, False),  # a prefix of a name is not the name
        ("import operator", IMPURE, False),
        ("from shared.engine import origins", TIERS_AND_TOOLS, False),
        ("import edges", TIERS_AND_TOOLS, False),
    ],
)
def test_layout_rule_matches_names_not_prefixes(
    source: str, forbidden: tuple[str, ...], found: bool
) -> None:
    """A forbidden name matches itself and its submodules, nothing that merely starts alike."""
    names = [name for _, name in imports(source, "shared.http.x", is_package=False)]
    assert any(is_forbidden(name, forbidden) for name in names) is found
