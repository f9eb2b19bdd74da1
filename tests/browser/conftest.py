"""Fixtures for real-browser tests: system Chromium, local dash.js and hls.js, a longer title.

Nothing here downloads anything. Chromium is Debian's ``chromium`` package
(``/usr/bin/chromium``, or ``TIERCDN_CHROMIUM``), driven by Playwright for
Python; dash.js comes from ``npm install --prefix .cache/npm dashjs@5`` (or
``TIERCDN_DASHJS``, the path of ``dash.all.min.js``), hls.js from the same
npm call's ``hls.js@1`` (or ``TIERCDN_HLSJS``, the path of ``hls.min.js``).
``scripts/install-browser`` installs them, as ``.ci/run`` does. A missing
piece fails the test with the command that installs it: these tests never
skip. Paths, flags and the title's constants are in ``tests/helpers.py``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from origin.packager import make_sample
from tests.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DASHJS,
    INSTALL,
    LONG_LADDER,
    LONG_SECONDS,
    LONG_TITLE,
    REPO,
    ServerFactory,
    async_playwright,
)

HLSJS = REPO / ".cache/npm/node_modules/hls.js/dist/hls.min.js"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("TIERCDN_CHROMIUM", CHROMIUM)
    if not os.access(path, os.X_OK):
        pytest.fail(f"no Chromium at {path}: {INSTALL} (apt-get install -y chromium)")
    return path


@pytest.fixture(scope="session")
def dashjs_file() -> Path:
    path = Path(os.environ.get("TIERCDN_DASHJS", DASHJS))
    if not path.is_file():
        pytest.fail(f"no dash.js at {path}: {INSTALL} (npm install --prefix .cache/npm dashjs@5)")
    return path


@pytest.fixture(scope="session")
def hlsjs_file() -> Path:
    path = Path(os.environ.get("TIERCDN_HLSJS", HLSJS))
    if not path.is_file():
        pytest.fail(f"no hls.js at {path}: {INSTALL} (npm install --prefix .cache/npm hls.js@1)")
    return path


@pytest.fixture(scope="session")
def long_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library holding ``long/``: 30 s, 180p 300 kb/s and 360p 800 kb/s + AAC, as an MPD
    and as HLS (``master.m3u8``) over the same segments."""
    library = tmp_path_factory.mktemp("long-library")
    make_sample(library / LONG_TITLE, duration=LONG_SECONDS, renditions=LONG_LADDER)
    return library


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where the screenshot and summary go: ``TIERCDN_BROWSER_ARTIFACTS`` or tmp_path."""
    path = Path(os.environ.get("TIERCDN_BROWSER_ARTIFACTS", tmp_path))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def dashjs_server(aiohttp_server: ServerFactory, dashjs_file: Path) -> TestServer:
    """A tiny static server for dash.js on its own port (another origin than the edge)."""
    return await _script_server(aiohttp_server, "/dash.all.min.js", dashjs_file)


@pytest.fixture
async def hlsjs_server(aiohttp_server: ServerFactory, hlsjs_file: Path) -> TestServer:
    """A tiny static server for hls.js on its own port (another origin than the edge)."""
    return await _script_server(aiohttp_server, "/hls.min.js", hlsjs_file)


async def _script_server(aiohttp_server: ServerFactory, route: str, file: Path) -> TestServer:
    """A static server answering ``route`` with the script ``file``."""

    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(file, headers={"Content-Type": "text/javascript"})

    app = web.Application()
    app.router.add_get(route, serve)
    return await aiohttp_server(app)


@pytest.fixture
async def chromium(chromium_path: str, tmp_path: Path) -> AsyncIterator[object]:
    """A headless Chromium context with a fresh profile (Playwright's async API)."""
    if async_playwright is None:
        pytest.fail("Playwright for Python is missing: scripts/bootstrap (pip install -e '.[dev]')")
    async with async_playwright() as pw:
        context = await pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium_path,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1100, "height": 900},
        )
        try:
            yield context
        finally:
            await context.close()
