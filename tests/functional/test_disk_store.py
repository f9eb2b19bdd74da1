"""DiskStore against real processes, signals, file-size limits and HTTP servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from shared.engine.responses import send_file
from shared.store import CachedObject, DiskStore, FileBody

ROOT = Path(__file__).resolve().parents[2]

# A child that writes 8 MiB objects one after another until it is killed.
WRITER = """
import asyncio, sys
from pathlib import Path
from multidict import CIMultiDict, CIMultiDictProxy
from shared.store import CachedObject, DiskStore

def obj(i, size):
    return CachedObject(
        key=f"/k{i}", vary_names=(), vary_key=(), status=200,
        headers=CIMultiDictProxy(CIMultiDict({"X": str(i)})), body=bytes([i % 251]) * size,
        request_time=0.0, response_time=0.0, lifetime=60.0, initial_age=0.0,
        must_validate=False,
    )

async def main():
    store = DiskStore(Path(sys.argv[1]), 1 << 30, policy="lru")
    await store.open()
    i = len(store)
    print("writing", flush=True)
    while True:
        store.put(obj(i, 8 << 20))
        await store.flush()
        i += 1

asyncio.run(main())
"""

# A child whose files may not grow past 1 MiB (RLIMIT_FSIZE, enforced for root too):
# writes past it fail with EFBIG, a real refusal by the kernel mid-write.
LIMITED = """
import asyncio, json, logging, resource, signal, sys
from pathlib import Path
from multidict import CIMultiDict, CIMultiDictProxy
from shared.store import CachedObject, DiskStore

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

def obj(key, size):
    return CachedObject(
        key=key, vary_names=(), vary_key=(), status=200,
        headers=CIMultiDictProxy(CIMultiDict()), body=b"z" * size,
        request_time=0.0, response_time=0.0, lifetime=60.0, initial_age=0.0,
        must_validate=False,
    )

async def main():
    store = DiskStore(Path(sys.argv[1]), 1 << 30)
    await store.open()
    puts = [store.put(obj("/small", 1000))]
    puts += [store.put(obj(f"/big{i}", 4 << 20)) for i in range(3)]
    await store.flush()
    print(json.dumps({
        "puts": puts, "keys": sorted(o.key for o in store),
        "write_errors": store.write_errors, "kinds": store.write_errors_by_kind,
    }))

asyncio.run(main())
"""


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*.tmp")]


def kill_mid_write(root: Path) -> list[str]:
    """Start the writer, SIGKILL it as soon as a temp file exists; the temp files
    found right after the kill (empty if the write finished first)."""
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root)], cwd=ROOT, stdout=subprocess.PIPE
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"writing\n"
            deadline = time.monotonic() + 30
            while not leftovers(root) and time.monotonic() < deadline:
                time.sleep(0.001)
        finally:
            child.send_signal(signal.SIGKILL)
    return leftovers(root)


@pytest.mark.slow
async def test_diskstore_sigkill_mid_write_leaves_no_partial_object(tmp_path):
    """A process killed while writing leaves temp files at most; reopening deletes them
    and every object it loads is whole (checksum verified on first use)."""
    root = tmp_path / "cache"
    killed_mid_write = False
    for _ in range(10):  # the writer is nearly always mid-write; retry the rare miss
        if await asyncio.to_thread(kill_mid_write, root):
            killed_mid_write = True
            break
    assert killed_mid_write, "never caught the writer with a temp file"

    store = DiskStore(root, 1 << 30, policy="lru")
    await store.open()
    assert leftovers(root) == [] and store.cleaned >= 1 and store.corrupt_dropped == 0
    assert len(list(root.rglob("*.body"))) == len(list(root.rglob("*.meta"))) == len(store)
    for o in store:
        assert isinstance(o.body, FileBody)
        i = int(o.headers["X"])
        assert await store.read_body(o) == bytes([i % 251]) * (8 << 20), o.key
    assert store.corrupt_dropped == 0
    await store.close()


@pytest.mark.slow
async def test_diskstore_file_size_limit_degrades_to_pass_through(tmp_path):
    """Writes refused by the kernel (EFBIG under RLIMIT_FSIZE, like ENOSPC mid-write)
    are counted, logged once, store nothing and leave no files; the small one is kept."""
    root = tmp_path / "cache"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LIMITED,
        str(root),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report == {
        "puts": [True, True, True, True],
        "keys": ["/small"],
        "write_errors": 3,
        "kinds": {"EFBIG": 3},
    }
    warnings = [line for line in err.decode().splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "EFBIG" in warnings[0]
    assert sorted(p.suffix for p in root.rglob("*") if p.is_file()) == [".body", ".meta"]


# -- send_file ---------------------------------------------------------------------------

BODY = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4: not a multiple of any chunk


async def disk_app(tmp_path: Path, use_sendfile: bool) -> tuple[web.Application, DiskStore]:
    store = DiskStore(tmp_path / "cache", 1 << 24)
    await store.open()
    store.put(
        CachedObject(
            key="/v",
            vary_names=(),
            vary_key=(),
            status=200,
            headers=CIMultiDictProxy(CIMultiDict({"Content-Type": "video/mp4"})),
            body=BODY,
            request_time=0.0,
            response_time=0.0,
            lifetime=60.0,
            initial_age=0.0,
            must_validate=False,
        )
    )
    await store.flush()

    async def handler(request: web.Request) -> web.StreamResponse:
        [o] = store.lookup(request.path)
        assert isinstance(o.body, FileBody)
        opened = await store.open_body(o)
        assert opened is not None
        fobj, length = opened
        rng = request.http_range
        start, stop = rng.start or 0, min(rng.stop or length, length)
        if start < 0:  # a suffix range: the last -start bytes
            start = max(length + start, 0)
        resp = web.StreamResponse(status=206 if "Range" in request.headers else 200)
        resp.content_type = o.headers["Content-Type"]
        resp.content_length = stop - start
        if resp.status == 206:
            resp.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{length}"
        await resp.prepare(request)
        with fobj:
            await send_file(request, resp, fobj, start, stop - start, use_sendfile=use_sendfile)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/v", handler)
    return app, store


@pytest.mark.parametrize("use_sendfile", [True, False], ids=["sendfile", "executor"])
async def test_send_file_sends_exactly_the_range_slice(aiohttp_client, tmp_path, use_sendfile):
    """A Range hit from disk gets exactly its bytes, whole hits all of them, on one
    keep-alive connection (framing stays right after each), by either path."""
    app, store = await disk_app(tmp_path, use_sendfile)
    client = await aiohttp_client(app)
    cases = [("bytes=1000-300999", BODY[1000:301000]), ("bytes=-4", b"tail"), (None, BODY)]
    for rng, want in cases * 2:
        headers = {"Range": rng} if rng else {}
        async with client.get("/v", headers=headers) as resp:
            assert resp.status == (206 if rng else 200)
            assert await resp.read() == want
    await store.close()


UVLOOP_SERVER = """
import asyncio, sys
from pathlib import Path
import aiohttp, uvloop
from aiohttp import web
from tests.functional.test_disk_store import BODY, disk_app

async def main():
    assert not isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop)
    app, store = await disk_app(Path(sys.argv[1]), use_sendfile=True)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as s:
        url = f"http://127.0.0.1:{port}/v"
        async with s.get(url, headers={"Range": "bytes=5-262200"}) as r:
            assert await r.read() == BODY[5:262201]
        async with s.get(url) as r:
            assert await r.read() == BODY
    await runner.cleanup()
    await store.close()
    print("ok")

uvloop.run(main())
"""


@pytest.mark.slow
async def test_send_file_falls_back_to_executor_reads_under_uvloop(tmp_path):
    """uvloop has no ``loop.sendfile``: the same call serves the same bytes by slices."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        UVLOOP_SERVER,
        str(tmp_path),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert (proc.returncode, out) == (0, b"ok\n"), err.decode()
