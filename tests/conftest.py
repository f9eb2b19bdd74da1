"""Shared fixtures.

Origin fixtures (first section):

- ``sample_library`` (session): a library directory holding one real DASH
  title, ``sample/`` (6 s, video rungs 160x90 and 320x180 + AAC audio, 2 s
  segments: ``manifest.mpd``, ``init-{0,1,2}.mp4``, ``chunk-<rep>-<nnnnn>.m4s``;
  reps 0 and 1 are video, 2 is audio), made ONCE per session by the project's
  own packager. Treat it as read-only; copy it if a test must change files.
- ``origin_settings``: ``OriginSettings`` serving ``sample_library`` on
  ephemeral ports; build variants with ``dataclasses.replace(origin_settings, ...)``
  or directly: ``OriginSettings(library=str(sample_library), port=0, admin_port=0)``.

A running origin is ``await aiohttp_server(origin.app.make_app(origin_settings))``
(``tests/functional/conftest.py`` wraps that as ``origin_server``).

Fixtures only: what tests import (``url_of``, ``Clock``, ``Arrivals``...) is in
``tests/helpers.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from origin.packager import make_sample
from origin.settings import OriginSettings
from tests.helpers import SAMPLE_LADDER, SAMPLE_SECONDS, SAMPLE_TITLE

# --- origin ------------------------------------------------------------------


@pytest.fixture(scope="session")
def sample_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library dir with one small real DASH title, ``sample/`` (made once per session)."""
    library = tmp_path_factory.mktemp("library")
    make_sample(
        library / SAMPLE_TITLE,
        duration=SAMPLE_SECONDS,
        renditions=SAMPLE_LADDER,
        segment_seconds=2,
    )
    return library


@pytest.fixture
def origin_settings(sample_library: Path) -> OriginSettings:
    """Settings for an origin serving ``sample_library`` on ephemeral ports."""
    return OriginSettings(library=str(sample_library), port=0, admin_port=0)


# --- (more fixtures below) ---------------------------------------------------
