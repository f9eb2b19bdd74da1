"""The README's settings reference names every flag there is (it cannot silently rot)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge.settings import EdgeSettings
from origin.settings import OriginSettings
from shared.ops.up import UpSettings
from shared.service.settings import CacheSettings, env_name

README = (Path(__file__).parents[2] / "README.md").read_text()


@pytest.mark.parametrize("cls", [CacheSettings, EdgeSettings, OriginSettings, UpSettings])
def test_readme_lists_every_flag_and_env_var(cls):
    """Every settings field appears as a flag and as its TIERCDN_ variable."""
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f"`--{f.name.replace('_', '-')}`" not in README or env_name(f.name) not in README
    ]
    assert missing == []
