"""The origin over real HTTP: real DASH files, raw request lines for path attacks."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import math
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from origin.app import make_admin_app, make_app
from origin.settings import OriginSettings

SECRET = b"OUTSIDE-SECRET-BYTES"
SEGMENT_CC = "public, max-age=31536000, immutable"
StartOrigin = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def start_origin(aiohttp_server: AiohttpServer, origin_settings: OriginSettings) -> StartOrigin:
    """Start an origin on ``sample_library`` with some settings replaced."""

    async def start(**overrides: Any) -> TestServer:
        return await aiohttp_server(make_app(dataclasses.replace(origin_settings, **overrides)))

    return start


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, start_origin: StartOrigin) -> TestClient[Any, Any]:
    return await aiohttp_client(await start_origin())


@pytest.fixture
async def guarded(
    aiohttp_server: AiohttpServer, tmp_path: Path, sample_library: Path
) -> TestServer:
    """An origin on ``tmp/lib`` (a copy of the sample, plus traps) beside ``tmp/secret.txt``."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    library = tmp_path / "lib"
    shutil.copytree(sample_library / "sample", library / "sample")
    (library / "sample" / "leak.m4s").symlink_to(tmp_path / "secret.txt")
    (library / "sample" / "up").symlink_to(tmp_path, target_is_directory=True)
    (library / "sample" / ".hidden.m4s").write_bytes(SECRET)
    settings = OriginSettings(library=str(library), port=0, admin_port=0)
    return await aiohttp_server(make_app(settings))


async def raw_request(
    server: TestServer, target: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send one request line exactly as written (no client-side normalisation)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {server.host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in parsed.items()}, body


def sample_file(sample_library: Path, name: str) -> bytes:
    return (sample_library / "sample" / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("manifest.mpd", "application/dash+xml"),
        ("init-0.mp4", "video/mp4"),
        ("init-1.mp4", "video/mp4"),
        ("init-2.mp4", "audio/mp4"),
        ("chunk-0-00001.m4s", "video/iso.segment"),
        ("chunk-2-00003.m4s", "video/iso.segment"),
    ],
)
async def test_origin_serves_files_with_content_type(
    client: TestClient[Any, Any], sample_library: Path, name: str, content_type: str
) -> None:
    """Each DASH file comes back whole, typed by kind (init segments by their track)."""
    async with client.get(f"/sample/{name}") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == content_type
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert await resp.read() == sample_file(sample_library, name)


@pytest.mark.parametrize(
    ("name", "cache_control"),
    [
        ("manifest.mpd", "public, max-age=2"),
        ("init-0.mp4", SEGMENT_CC),
        ("chunk-1-00002.m4s", SEGMENT_CC),
    ],
)
async def test_origin_cache_control_by_kind(
    client: TestClient[Any, Any], name: str, cache_control: str
) -> None:
    """Manifests are briefly fresh; init and media segments are immutable for a year."""
    async with client.get(f"/sample/{name}") as resp:
        assert resp.headers["Cache-Control"] == cache_control


async def test_origin_cache_control_follows_settings(start_origin: StartOrigin) -> None:
    """max-age values come from the settings."""
    server = await start_origin(manifest_max_age=7, segment_max_age=60)
    _, manifest, _ = await raw_request(server, "/sample/manifest.mpd")
    _, segment, _ = await raw_request(server, "/sample/chunk-0-00001.m4s")
    assert manifest["cache-control"] == "public, max-age=7"
    assert segment["cache-control"] == "public, max-age=60, immutable"


async def test_origin_etag_is_strong_with_last_modified(
    client: TestClient[Any, Any], sample_library: Path
) -> None:
    """aiohttp's ETag is strong ("<mtime_ns hex>-<size hex>") and Last-Modified is the mtime."""
    path = sample_library / "sample" / "chunk-0-00001.m4s"
    async with client.get("/sample/chunk-0-00001.m4s") as resp:
        etag = resp.headers["ETag"]
        last_modified = email.utils.parsedate_to_datetime(resp.headers["Last-Modified"])
    assert re.fullmatch(r'"[0-9a-f]+-[0-9a-f]+"', etag), etag
    assert etag == f'"{path.stat().st_mtime_ns:x}-{path.stat().st_size:x}"'
    # aiohttp rounds Last-Modified UP to the second, so If-Modified-Since with it matches
    assert last_modified.timestamp() == math.ceil(path.stat().st_mtime)


async def test_origin_range_returns_partial_content(
    client: TestClient[Any, Any], sample_library: Path
) -> None:
    """A satisfiable byte range is a 206 with exactly those bytes and a Content-Range."""
    data = sample_file(sample_library, "chunk-1-00001.m4s")
    async with client.get("/sample/chunk-1-00001.m4s", headers={"Range": "bytes=100-299"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 100-299/{len(data)}"
        assert resp.headers["Cache-Control"] == SEGMENT_CC
        assert await resp.read() == data[100:300]
    async with client.get("/sample/chunk-1-00001.m4s", headers={"Range": "bytes=-10"}) as resp:
        assert resp.status == 206
        assert await resp.read() == data[-10:]


async def test_origin_range_unsatisfiable_is_416(
    client: TestClient[Any, Any], sample_library: Path
) -> None:
    """A range past the end is a 416 naming the length, never cached."""
    size = len(sample_file(sample_library, "init-0.mp4"))
    async with client.get("/sample/init-0.mp4", headers={"Range": f"bytes={size}-"}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == f"bytes */{size}"
        assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=5-2", "bytes 0-4"])
async def test_origin_range_malformed_is_416(
    client: TestClient[Any, Any], sample_library: Path, header: str
) -> None:
    """aiohttp answers a malformed Range with 416 (RFC 9110 §14.2 allows reject or ignore)."""
    size = len(sample_file(sample_library, "init-0.mp4"))
    async with client.get("/sample/init-0.mp4", headers={"Range": header}) as resp:
        assert resp.status == 416
        assert resp.headers["Content-Range"] == f"bytes */{size}"
        assert resp.headers["Cache-Control"] == "no-store"


async def test_origin_head_has_headers_without_body(
    client: TestClient[Any, Any], sample_library: Path
) -> None:
    """HEAD answers like GET, without a body."""
    size = len(sample_file(sample_library, "chunk-0-00002.m4s"))
    async with client.head("/sample/chunk-0-00002.m4s") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(size)
        assert resp.headers["Content-Type"] == "video/iso.segment"
        assert resp.headers["Cache-Control"] == SEGMENT_CC
        assert "ETag" in resp.headers
        assert await resp.read() == b""


async def test_origin_if_none_match_is_304(client: TestClient[Any, Any]) -> None:
    """A matching If-None-Match (strong or weak) is a 304 that keeps ETag and Cache-Control."""
    async with client.get("/sample/init-2.mp4") as resp:
        etag = resp.headers["ETag"]
    for tag in (etag, "W/" + etag, f'"nope", {etag}'):
        async with client.get("/sample/init-2.mp4", headers={"If-None-Match": tag}) as resp:
            assert resp.status == 304
            assert resp.headers["ETag"] == etag
            assert resp.headers["Cache-Control"] == SEGMENT_CC
            assert await resp.read() == b""
    async with client.get("/sample/init-2.mp4", headers={"If-None-Match": '"nope"'}) as resp:
        assert resp.status == 200


async def test_origin_if_modified_since_is_304(client: TestClient[Any, Any]) -> None:
    """If-Modified-Since at or after Last-Modified is a 304; an older date gets the file."""
    async with client.get("/sample/manifest.mpd") as resp:
        last_modified = resp.headers["Last-Modified"]
    headers = {"If-Modified-Since": last_modified}
    async with client.get("/sample/manifest.mpd", headers=headers) as resp:
        assert resp.status == 304
        assert resp.headers["Cache-Control"] == "public, max-age=2"
    headers = {"If-Modified-Since": "Thu, 01 Jan 2015 00:00:00 GMT"}
    async with client.get("/sample/manifest.mpd", headers=headers) as resp:
        assert resp.status == 200


async def test_origin_lists_titles_at_root(client: TestClient[Any, Any]) -> None:
    """GET / lists each title with its manifest URL, duration and representations."""
    async with client.get("/") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, max-age=5"
        titles = await resp.json()
    assert [t["name"] for t in titles] == ["sample"]
    (sample,) = titles
    assert sample["manifest"] == "/sample/manifest.mpd"
    assert sample["duration"] == pytest.approx(6.0)
    reps = {r["id"]: r for r in sample["representations"]}
    assert (reps["0"]["width"], reps["0"]["height"]) == (160, 90)
    assert (reps["1"]["width"], reps["1"]["height"]) == (320, 180)
    assert reps["1"]["bandwidth"] == 200_000
    assert reps["1"]["codecs"].startswith("avc1.")
    assert reps["2"]["mime_type"] == "audio/mp4"
    assert reps["2"]["codecs"] == "mp4a.40.2"
    async with client.get(sample["manifest"] + "?cachebust=1") as resp:
        assert resp.status == 200


async def test_origin_other_methods_are_405(client: TestClient[Any, Any]) -> None:
    """Only GET and HEAD exist; anything else is a short, uncacheable 405."""
    for method in ("POST", "PUT", "DELETE"):
        async with client.request(method, "/sample/manifest.mpd") as resp:
            assert resp.status == 405
            assert resp.headers["Allow"] == "GET, HEAD"
            assert resp.headers["Cache-Control"] == "no-store"
            assert await resp.text() == "405: method not allowed"


async def test_origin_raw_request_helper_serves_sample(guarded: TestServer) -> None:
    """Sanity check of the raw-socket helper the path tests rely on."""
    status, headers, body = await raw_request(guarded, "/sample/manifest.mpd")
    assert status == 200
    assert headers["content-type"] == "application/dash+xml"
    assert body.startswith(b"<?xml")


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/sample/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2fsecret.txt",
        "/sample/%2e%2e/%2e%2e/secret.txt",
        "/sample%2f..%2f..%2fsecret.txt",
        "/sample/..%2F..%2Fsecret.txt",
        "/..%5csecret.txt",
        "/sample/..%5C..%5Csecret.txt",
        "/..\\secret.txt",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/sample/manifest.mpd%00.m4s",
        "/sample/%00",
        "http://localhost/../secret.txt",
    ],
    ids=[
        "dotdot",
        "dotdot-deep",
        "encoded-dotdot",
        "encoded-dotdot-upper-slash",
        "encoded-dotdot-segments",
        "encoded-slash",
        "encoded-slash-upper",
        "encoded-backslash",
        "encoded-backslash-upper",
        "backslash",
        "absolute-double-slash",
        "absolute-encoded",
        "nul-byte",
        "nul-only",
        "absolute-form",
    ],
)
async def test_origin_path_traversal_is_400(guarded: TestServer, target: str) -> None:
    """Traversal, encoded separators, absolute paths and NUL are refused; nothing leaks."""
    status, headers, body = await raw_request(guarded, target)
    assert status == 400
    assert body == b"400: bad path"
    assert headers["cache-control"] == "no-store"
    assert SECRET not in body and b"root:" not in body


@pytest.mark.parametrize(
    "target",
    [
        "/sample/leak.m4s",
        "/sample/up/secret.txt",
        "/sample/up/lib/sample/.hidden.m4s",
        "/sample",
        "/sample/",
        "/sample/up",
        "/sample/.hidden.m4s",
        "/sample/%2ehidden.m4s",
        "/sample/missing.m4s",
    ],
    ids=[
        "symlink-file-outside",
        "symlink-dir-outside",
        "hidden-via-symlink",
        "directory",
        "directory-slash",
        "symlink-dir",
        "hidden",
        "hidden-encoded",
        "missing",
    ],
)
async def test_origin_unservable_paths_are_404(guarded: TestServer, target: str) -> None:
    """Symlinks out of the library, directories and hidden files are 404 without a byte."""
    for method in ("GET", "HEAD"):
        status, headers, body = await raw_request(guarded, target, method=method)
        assert status == 404
        assert headers["cache-control"] == "no-store"
        assert SECRET not in body
    _, _, body = await raw_request(guarded, target)
    assert body == b"404: not found"


async def test_origin_metrics_and_stats_count_requests(
    aiohttp_client: AiohttpClient, origin_settings: OriginSettings, sample_library: Path
) -> None:
    """Requests are counted by kind and status class; bytes by what was sent."""
    app = make_app(origin_settings)
    client = await aiohttp_client(app)
    admin = await aiohttp_client(make_admin_app(app))
    manifest = len(sample_file(sample_library, "manifest.mpd"))
    media = len(sample_file(sample_library, "chunk-0-00001.m4s"))
    for path in ("/sample/manifest.mpd", "/sample/chunk-0-00001.m4s", "/sample/nope.m4s"):
        async with client.get(path) as resp:
            await resp.read()
    async with client.head("/sample/chunk-0-00001.m4s") as resp:
        assert resp.status == 200
    async with client.get("/sample/chunk-0-00001.m4s", headers={"Range": "bytes=0-9"}) as resp:
        assert resp.status == 206

    async with admin.get("/stats") as resp:
        stats = await resp.json()
    assert stats["name"] == "origin"
    assert stats["requests"] == 5
    assert stats["requests_by_kind"] == {"manifest": 1, "init": 0, "media": 4, "other": 0}
    assert stats["bytes_sent"] == manifest + media + len("404: not found") + 10

    async with admin.get("/metrics") as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert 'tiercdn_origin_requests_total{kind="media",status="2xx"} 3.0' in text
    assert 'tiercdn_origin_requests_total{kind="media",status="4xx"} 1.0' in text
    assert f'tiercdn_origin_response_bytes_total{{kind="manifest"}} {float(manifest)}' in text
    assert "sample" not in text  # labels never carry URLs
    async with admin.get("/healthz") as resp:
        assert await resp.text() == "ok"


async def test_origin_fault_delay_slows_headers(start_origin: StartOrigin) -> None:
    """fault_delay holds back every response's headers at least that long."""
    server = await start_origin(fault_delay=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _, _ = await raw_request(server, "/sample/manifest.mpd")
    assert status == 200
    assert loop.time() - started >= 0.3


async def test_origin_fault_rate_paces_bodies_and_keeps_range(
    start_origin: StartOrigin, sample_library: Path
) -> None:
    """fault_rate caps a body's bytes per second; Range still gives the right bytes."""
    server = await start_origin(fault_rate=20_000)
    data = sample_file(sample_library, "chunk-1-00002.m4s")
    assert len(data) > 4000
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, headers, body = await raw_request(
        server, "/sample/chunk-1-00002.m4s", headers={"Range": "bytes=1000-4999"}
    )
    assert status == 206
    assert body == data[1000:5000]
    assert headers["content-range"] == f"bytes 1000-4999/{len(data)}"
    assert loop.time() - started >= 4000 / 20_000
    status, _, body = await raw_request(server, "/sample/init-2.mp4")
    assert status == 200
    assert body == sample_file(sample_library, "init-2.mp4")


async def test_origin_fault_status_and_resets_change_at_run_time(
    aiohttp_client: AiohttpClient, start_origin: StartOrigin, sample_library: Path
) -> None:
    """--fault-status answers every request with it (no-store); PUT /faults on the admin
    listener (only with --fault-control) changes it and the reset rate while running;
    a reset cuts the body halfway, never passing a short body off as whole."""
    server = await start_origin(fault_status=503, fault_control=True)
    admin = await aiohttp_client(make_admin_app(server.app))
    status, headers, body = await raw_request(server, "/sample/init-2.mp4")
    assert status == 503 and headers["cache-control"] == "no-store"
    assert b"fault injected" in body
    resp = await admin.put("/faults", json={"reset_rate": 1})
    assert resp.status == 200 and await resp.json() == {"status": 0, "reset_rate": 1.0}
    data = sample_file(sample_library, "chunk-1-00002.m4s")
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /sample/chunk-1-00002.m4s HTTP/1.1\r\nHost: x\r\n\r\n")
    got = await asyncio.wait_for(reader.read(-1), 10)  # until the reset or EOF
    writer.close()
    head, _, cut = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and f"{len(data)}".encode() in head
    assert 0 < len(cut) < len(data) and data.startswith(cut)
    for bad in ({"status": 200}, {"reset_rate": 2}, [1]):
        assert (await admin.put("/faults", json=bad)).status == 400
    assert (await admin.put("/faults", json={})).status == 200
    status, _, body = await raw_request(server, "/sample/chunk-1-00002.m4s")
    assert status == 200 and body == data
    plain = await start_origin()
    assert (await (await aiohttp_client(make_admin_app(plain.app))).get("/faults")).status == 404


def test_origin_settings_reject_bad_values(sample_library: Path) -> None:
    """Settings validate ports, names, durations and the log level."""
    bads: tuple[dict[str, Any], ...] = (
        {"port": 70000},
        {"name": "two words"},
        {"fault_delay": -1.0},
        {"log_level": "LOUD"},
        {"library": ""},
        {"fault_status": 200},
        {"fault_reset_rate": 1.5},
    )
    for bad in bads:
        with pytest.raises(ValueError):
            OriginSettings(**{"library": str(sample_library), **bad})


def test_origin_make_app_requires_a_library(tmp_path: Path) -> None:
    """A missing library directory is refused up front, not at the first request."""
    with pytest.raises(FileNotFoundError, match="library directory not found"):
        make_app(OriginSettings(library=str(tmp_path / "missing")))


async def test_origin_listing_is_json(client: TestClient[Any, Any]) -> None:
    """The listing is plain JSON (for curl and the load tests)."""
    async with client.get("/") as resp:
        assert resp.headers["Content-Type"].startswith("application/json")
        assert isinstance(json.loads(await resp.read()), list)
