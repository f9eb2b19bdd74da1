"""Each tier's settings list only what it uses: edge-only policies are not regional flags."""

from __future__ import annotations

import pytest

import edge.__main__ as edge_cli
import regional.__main__ as regional_cli
from edge.settings import EdgeSettings
from regional.settings import RegionalSettings
from shared.service.settings import CacheSettings

EDGE_ONLY = ("--cors-origin", "--player-dashjs-url", "--prefetch", "--prefetch-concurrency")


def _help(main, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_tier_settings_edge_help_lists_edge_policies(capsys):
    """``tiercdn-edge --help`` lists the edge's own flags and the common ones."""
    text = _help(edge_cli.main, capsys)
    for flag in (*EDGE_ONLY, "--upstream", "--origin-rate"):
        assert flag + " " in text, flag


def test_tier_settings_regional_help_has_no_edge_policies(capsys):
    """``tiercdn-regional --help`` never lists a flag that does nothing there."""
    text = _help(regional_cli.main, capsys)
    assert "--upstream " in text and "--disk-path " in text
    for flag in EDGE_ONLY:
        assert flag + " " not in text, flag


def test_tier_settings_extend_the_common_cache_settings():
    """Both tiers' settings are the engine's settings plus their own."""
    assert issubclass(EdgeSettings, CacheSettings) and issubclass(RegionalSettings, CacheSettings)
    with pytest.raises(TypeError):
        RegionalSettings(upstream=("http://127.0.0.1:9",), prefetch=2)  # type: ignore[call-arg]
    assert EdgeSettings(upstream=("http://127.0.0.1:9",), prefetch=2).prefetch == 2
