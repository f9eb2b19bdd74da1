"""The disk store: whole responses as files under ``root``, within a byte budget.

Same interface and policy as ``MemoryStore`` (it *is* the index: a MemoryStore of
``DiskObject`` entries whose bodies live in files), so lru / W-TinyLFU decisions
are made once, in ``store/memory.py``; this module adds files.

Layout: ``root/ab/cd/<h>.<token>.body`` and ``.meta`` beside it, ``h`` the blake2b
of cache key + Vary key (never the raw URL), ``token`` unique per write, so a
file is owned by exactly one ``DiskObject``: replacing, evicting or dropping an
object unlinks its own files and never a newer version's.

Durability (invariant 4, across crashes): ``put`` indexes nothing until the
write is durable. In a writer thread: body to ``<stem>.body.tmp``, fsync,
``os.replace``; then metadata JSON (status, headers, times, lifetime, Vary,
length, CRC-32 of the body) the same way, then fsync the directory. Only then is
the entry indexed. A metadata file therefore always names a complete body; a
crash leaves at worst ``.tmp`` files or a body without metadata, which ``open``
deletes. ``open`` rebuilds the index from the metadata, drops entries whose body
is missing or has the wrong length, keeps the newest of duplicate versions, and
keeps the newest objects that fit the budget.

Verification: ``open_body`` checks the length (fstat) on every use and the
checksum on an object's first use in this process (after it was written or
loaded). A later byte flip of the same length is caught at the next restart's
first use, not before, unless ``verify="always"``: CRC-32 costs ≈0.16 ms/MiB
plus a read (≈0.04 ms/MiB from the page cache) per hit, measured on the 2-core
box, against a zero-copy ``sendfile``.

Errors: a failed write (ENOSPC, EACCES, EROFS, any OSError) is counted in
``write_errors`` and logged once per errno; the object is simply not stored
(the fill already served it) and nothing raises. The charged size is body +
headers + bookkeeping, not filesystem blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import secrets
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from shared.store.memory import CachedObject, MemoryStore

__all__ = ["DiskObject", "DiskStore", "send_file"]

log = logging.getLogger(__name__)

_BODY, _META, _TMP = ".body", ".meta", ".tmp"
_FORMAT = 1  # metadata layout version
_CHUNK = 1 << 20  # bytes per read while checksumming, per os.write
_SEND_CHUNK = 256 * 1024  # slice read per executor call when sendfile is unavailable [aiohttp]
_WRITERS = 2  # writer threads: fsync-bound, more would only queue in the disk
_MAX_PENDING = 64 << 20  # bytes of bodies waiting to be written before puts are skipped
VERIFY = ("once", "always")


@dataclasses.dataclass(slots=True)
class DiskObject(CachedObject):
    """A stored response whose body is the file ``<stem>.body``: ``body`` is ``b""``."""

    stem: str  # <root>/ab/cd/<hash>.<token>, owned by this object alone
    length: int  # body bytes
    crc32: int  # of the body, checked once per process by ``open_body``
    verified: bool = False  # guarded by: single event loop

    @property
    def size(self) -> int:
        """Bytes charged against the budget: body length, headers and bookkeeping."""
        return CachedObject.size.fget(self) + self.length  # type: ignore[attr-defined,no-any-return]


class _Write:
    """A put waiting for its files to be durable; ``discarded`` by a remove meanwhile."""

    __slots__ = ("discarded", "nbytes", "obj", "stem")

    def __init__(self, obj: CachedObject, stem: str, nbytes: int) -> None:
        self.obj, self.stem, self.nbytes = obj, stem, nbytes
        self.discarded = False


class DiskStore:
    """Variants by primary key as files under ``root``, within ``capacity`` bytes."""

    def __init__(
        self,
        root: Path | str,
        capacity: int,
        policy: str = "tinylfu",
        *,
        verify: str = "once",
        max_pending: int = _MAX_PENDING,
    ) -> None:
        if verify not in VERIFY:
            raise ValueError(f"verify must be one of {VERIFY}, got {verify!r}")
        self.root = Path(root)
        self.verify = verify
        self.max_pending = max_pending  # bytes queued for writing; one object may exceed it
        self._index = MemoryStore(capacity, policy, on_release=self._released)
        self._writer = ThreadPoolExecutor(_WRITERS, thread_name_prefix="diskstore")
        # guarded by: single event loop (every field below)
        self.loaded = 0  # objects found by ``open``
        self.cleaned = 0  # leftovers of interrupted writes deleted by ``open``
        self.corrupt_dropped = 0  # bad metadata, missing/short/long/flipped bodies
        self.write_errors = 0
        self.write_errors_by_kind: dict[str, int] = {}  # errno name -> count
        self.writes_skipped = 0  # puts not stored because ``max_pending`` was reached
        self._writes: set[_Write] = set()
        self._pending: set[asyncio.Future[Any]] = set()  # writes and unlinks in flight
        self._pending_bytes = 0

    # -- the MemoryStore interface -----------------------------------------------

    @property
    def capacity(self) -> int:
        return self._index.capacity

    @property
    def policy(self) -> str:
        return self._index.policy

    @property
    def evictions(self) -> int:
        """Entries dropped for room, including those over budget at ``open``."""
        return self._index.evictions

    @property
    def admitted(self) -> int:
        return self._index.admitted

    @property
    def rejected(self) -> int:
        return self._index.rejected

    @property
    def stored_bytes(self) -> int:
        return self._index.bytes

    def lookup(self, key: str) -> list[CachedObject]:
        """The stored variants of ``key`` (``DiskObject``s), touching it."""
        return self._index.lookup(key)

    def peek(self, key: str) -> list[CachedObject]:
        return self._index.peek(key)

    def put(self, obj: CachedObject, *, body_from: DiskObject | None = None) -> bool:
        """Start writing ``obj``; it is indexed once durable (``flush`` waits for that).

        ``body_from``: reuse that stored object's body file (a hard link), for a
        revalidated disk object whose ``body`` is empty. Returns False when it is not
        stored at all: too big for the budget, or too many bytes already queued.
        Entries reach the policy in the order their writes complete (two writer
        threads), which may differ from the order of the puts."""
        if body_from is None and isinstance(obj, DiskObject):
            body_from = obj
        length = len(obj.body) if body_from is None else body_from.length
        if obj.size - len(obj.body) + length > self._index.largest:
            return False
        nbytes = len(obj.body) if body_from is None else 0
        if self._pending_bytes and self._pending_bytes + nbytes > self.max_pending:
            self.writes_skipped += 1
            return False
        meta = _meta(obj, length, None if body_from is None else body_from.crc32)
        write = _Write(obj, self._stem(obj.key, obj.vary_key), nbytes)
        src = None if body_from is None else body_from.stem
        body = obj.body if body_from is None else b""
        fut = asyncio.get_running_loop().run_in_executor(
            self._writer, _write_files, write.stem, body, src, meta
        )
        self._writes.add(write)
        self._track(fut, nbytes)
        fut.add_done_callback(lambda f: self._written(write, length, f))
        return True

    def remove(self, key: str, vary_key: tuple[str, ...] | None = None) -> int:
        """Drop ``key`` (one variant, or all), and any write of it still in flight."""
        for w in self._writes:
            if w.obj.key == key and (vary_key is None or w.obj.vary_key == vary_key):
                w.discarded = True
        return self._index.remove(key, vary_key)

    def clear(self) -> None:
        for w in self._writes:
            w.discarded = True
        self._index.clear()

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[CachedObject]:
        return iter(self._index)

    def __repr__(self) -> str:
        i = self._index
        return (
            f"<DiskStore {self.root} objects={len(i)} bytes={i.bytes}/{i.capacity}"
            f" policy={i.policy} pending={len(self._pending)}/{self._pending_bytes}B"
            f" evictions={i.evictions} admitted={i.admitted} rejected={i.rejected}"
            f" loaded={self.loaded} corrupt_dropped={self.corrupt_dropped}"
            f" write_errors={self.write_errors}>"
        )

    # -- disk ----------------------------------------------------------------------

    async def open(self) -> None:
        """Rebuild the index from the metadata files under ``root`` (call once, first)."""
        loop = asyncio.get_running_loop()
        try:
            found, cleaned, corrupt = await loop.run_in_executor(self._writer, _scan, self.root)
        except OSError as exc:
            self._write_failed(exc)
            return
        self.cleaned += cleaned
        self.corrupt_dropped += corrupt
        newest: dict[tuple[str, tuple[str, ...]], tuple[float, DiskObject]] = {}
        doomed: list[DiskObject] = []
        for written, obj in found:  # duplicates only if a crash beat an unlink
            ident = (obj.key, obj.vary_key)
            old = newest.get(ident)
            if old is not None and old[0] >= written:
                doomed.append(obj)
                continue
            if old is not None:
                doomed.append(old[1])
            newest[ident] = (written, obj)
        kept, room = [], self._index.largest
        for _, obj in sorted(newest.values(), key=lambda t: t[0], reverse=True):
            if obj.size <= room:  # the newest that fit; oldest is indexed first (LRU end)
                room -= obj.size
                kept.append(obj)
            else:
                doomed.append(obj)
        for obj in reversed(kept):
            self._index.put(obj)  # what it refuses is released, so unlinked
        self.loaded = len(self._index)
        i = self._index
        i.evictions, i.admitted, i.rejected = len(doomed), 0, 0
        self._released(list(doomed))
        log.info("disk store %s: %d objects, %d bytes loaded", self.root, len(i), i.bytes)

    async def flush(self) -> None:
        """Wait until every write and unlink started so far (and what it led to) is done."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        self._writer.shutdown(wait=False)

    def body_path(self, obj: DiskObject) -> Path:
        return Path(obj.stem + _BODY)

    def body_length(self, obj: DiskObject) -> int:
        return obj.length

    async def open_body(self, obj: DiskObject) -> tuple[IO[bytes], int] | None:
        """The body file of ``obj`` opened at 0 and its length, or None (then a miss).

        A missing file, a wrong length or (first use, or ``verify="always"``) a wrong
        checksum drops the entry and its files and counts ``corrupt_dropped``."""
        crc = obj.crc32 if self.verify == "always" or not obj.verified else None
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, _open_body, obj.stem + _BODY, obj.length, crc)
        try:
            fobj, problem = await asyncio.shield(fut)
        except asyncio.CancelledError:  # the file opened after all: don't leak it
            fut.add_done_callback(_close_result)
            raise
        if fobj is not None:
            obj.verified = True
            return fobj, obj.length
        if any(v is obj for v in self._index.peek(obj.key)):  # else removed meanwhile
            self.corrupt_dropped += 1
            log.warning("disk store: dropping %s (%s): %s", obj.key, obj.stem, problem)
            self._index.remove(obj.key, obj.vary_key)
        return None

    async def read_body(self, obj: DiskObject) -> bytes | None:
        """The whole body in memory (to promote it to a memory tier), or None as above."""
        opened = await self.open_body(obj)
        if opened is None:
            return None
        fobj, length = opened
        with fobj:
            data: bytes = await asyncio.get_running_loop().run_in_executor(None, fobj.read)
        return data if len(data) == length else None

    # -- internals -----------------------------------------------------------------

    def _stem(self, key: str, vary_key: tuple[str, ...]) -> str:
        ident = "\0".join((key, *vary_key)).encode("utf-8", "surrogateescape")
        h = hashlib.blake2b(ident, digest_size=16).hexdigest()
        return str(self.root / h[:2] / h[2:4] / f"{h}.{secrets.token_hex(4)}")

    def _track(self, fut: asyncio.Future[Any], nbytes: int) -> None:
        self._pending.add(fut)
        self._pending_bytes += nbytes

        def done(f: asyncio.Future[Any]) -> None:
            self._pending.discard(f)
            self._pending_bytes -= nbytes

        fut.add_done_callback(done)

    def _written(self, write: _Write, length: int, fut: asyncio.Future[int]) -> None:
        self._writes.discard(write)
        if fut.cancelled():
            return
        exc = fut.exception()
        if isinstance(exc, OSError):
            self._write_failed(exc)
            return
        if exc is not None:  # a bug, not the disk: still never the client's problem
            self.write_errors += 1
            log.error("disk store: write of %s failed", write.obj.key, exc_info=exc)
            return
        o = write.obj
        obj = DiskObject(
            **{f: getattr(o, f) for f in _INIT_FIELDS},
            body=b"",
            stem=write.stem,
            length=length,
            crc32=fut.result(),
        )
        if write.discarded or not self._index.put(obj):
            self._released([obj])

    def _released(self, variants: list[CachedObject]) -> None:
        """Unlink the files of variants that left the index (in the writer threads)."""
        stems = [v.stem for v in variants if isinstance(v, DiskObject)]
        if not stems:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a sync caller): blocking is fine here
            _unlink_stems(stems)
            return
        self._track(loop.run_in_executor(self._writer, _unlink_stems, stems), 0)

    def _write_failed(self, exc: OSError) -> None:
        kind = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        self.write_errors += 1
        seen = self.write_errors_by_kind.get(kind, 0)
        self.write_errors_by_kind[kind] = seen + 1
        if not seen:
            log.warning(
                "disk store %s cannot write (%s: %s); objects pass through uncached"
                " (further %s errors are counted, not logged)",
                self.root,
                kind,
                exc.strerror or exc,
                kind,
            )

    bytes = stored_bytes  # MemoryStore's name; last in the class, as it shadows the builtin


_INIT_FIELDS = (
    "key",
    "vary_names",
    "vary_key",
    "status",
    "headers",
    "request_time",
    "response_time",
    "lifetime",
    "initial_age",
    "must_validate",
)


def _meta(obj: CachedObject, length: int, crc32: int | None) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "key": obj.key,
        "vary_names": list(obj.vary_names),
        "vary_key": list(obj.vary_key),
        "status": obj.status,
        "headers": [[k, v] for k, v in obj.headers.items()],
        "request_time": obj.request_time,
        "response_time": obj.response_time,
        "lifetime": obj.lifetime,
        "initial_age": obj.initial_age,
        "must_validate": obj.must_validate,
        "length": length,
        "crc32": crc32,
        "written": time.time(),  # which of two versions is newer, at ``open``
    }


def _decode(stem: str, data: bytes) -> tuple[float, DiskObject] | None:
    """A metadata file's object, or None if it is not one this version wrote."""
    try:
        m = json.loads(data)
        if m["format"] != _FORMAT:
            return None
        strs = (*m["vary_names"], *m["vary_key"], m["key"], *(x for kv in m["headers"] for x in kv))
        nums = (m["request_time"], m["response_time"], m["lifetime"], m["initial_age"])
        if not all(isinstance(s, str) for s in strs) or not all(
            isinstance(n, int | float) for n in (*nums, m["written"])
        ):
            return None
        if any(len(kv) != 2 for kv in m["headers"]):
            return None
        ints = (m["status"], m["length"], m["crc32"])
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in ints):
            return None
        obj = DiskObject(
            key=m["key"],
            vary_names=tuple(m["vary_names"]),
            vary_key=tuple(m["vary_key"]),
            status=m["status"],
            headers=CIMultiDictProxy(CIMultiDict(m["headers"])),
            body=b"",
            request_time=float(nums[0]),
            response_time=float(nums[1]),
            lifetime=float(nums[2]),
            initial_age=float(nums[3]),
            must_validate=bool(m["must_validate"]),
            stem=stem,
            length=m["length"],
            crc32=m["crc32"],
        )
    except (ValueError, KeyError, TypeError):
        return None
    return float(m["written"]), obj


# -- blocking file work: run in an executor ------------------------------------------


def _write_files(stem: str, body: bytes, link_from: str | None, meta: dict[str, Any]) -> int:
    """Make ``stem``'s body, then its metadata, durable; returns the body's CRC-32."""
    paths = (stem + _BODY + _TMP, stem + _META + _TMP, stem + _BODY, stem + _META)
    tmp_body, tmp_meta, body_path, meta_path = paths
    directory = os.path.dirname(stem)
    try:
        os.makedirs(directory, exist_ok=True)
        if link_from is None:
            meta["crc32"] = zlib.crc32(body)
            _write_file(tmp_body, body)
        else:  # same bytes: share the inode
            os.link(link_from + _BODY, tmp_body)
        os.replace(tmp_body, body_path)
        _write_file(tmp_meta, json.dumps(meta).encode())
        os.replace(tmp_meta, meta_path)  # last: now it names a complete body
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
    crc: int = meta["crc32"]
    return crc


def _write_file(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:_CHUNK]) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_stems(stems: list[str]) -> None:
    for stem in stems:
        for suffix in (_META, _BODY):  # metadata first: never one naming a missing body
            with contextlib.suppress(OSError):
                os.unlink(stem + suffix)


def _scan(root: Path) -> tuple[list[tuple[float, DiskObject]], int, int]:
    """Every valid object under ``root``; deletes leftovers and broken entries."""
    root.mkdir(parents=True, exist_ok=True)
    found: list[tuple[float, DiskObject]] = []
    cleaned = corrupt = 0
    for dirpath, _, names in os.walk(root):
        present = set(names)
        for name in names:
            path = os.path.join(dirpath, name)
            if name.endswith(_TMP):  # an interrupted write
                cleaned += _unlink(path)
            elif name.endswith(_BODY) and name[: -len(_BODY)] + _META not in present:
                cleaned += _unlink(path)  # crashed between body and metadata
            elif name.endswith(_META):
                stem = path[: -len(_META)]
                try:
                    with open(path, "rb") as f:
                        entry = _decode(stem, f.read())
                except OSError:
                    entry = None
                try:
                    size = os.stat(stem + _BODY).st_size
                except FileNotFoundError:
                    size = -1
                if entry is None or size != entry[1].length:
                    corrupt += 1
                    _unlink_stems([stem])
                else:
                    found.append(entry)
    return found, cleaned, corrupt


def _unlink(path: str) -> int:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return 1


def _open_body(path: str, length: int, crc: int | None) -> tuple[IO[bytes] | None, str]:
    """``path`` opened if it holds ``length`` bytes (and matches ``crc`` when given)."""
    try:
        fobj = open(path, "rb")  # noqa: SIM115 (returned open to the caller)
    except FileNotFoundError:
        return None, "body file missing"
    try:
        size = os.fstat(fobj.fileno()).st_size
        if size != length:
            fobj.close()
            return None, f"body is {size} bytes, metadata says {length}"
        if crc is not None:
            got, buf = 0, bytearray(_CHUNK)
            while n := fobj.readinto(buf):
                got = zlib.crc32(memoryview(buf)[:n], got)
            fobj.seek(0)
            if got != crc:
                fobj.close()
                return None, "body checksum mismatch"
    except BaseException:
        fobj.close()
        raise
    return fobj, ""


def _close_result(fut: asyncio.Future[tuple[IO[bytes] | None, str]]) -> None:
    if not fut.cancelled() and fut.exception() is None and (fobj := fut.result()[0]):
        fobj.close()


# -- serving -------------------------------------------------------------------------


async def send_file(
    request: web.Request,
    response: web.StreamResponse,
    fobj: IO[bytes],
    offset: int,
    count: int,
    *,
    use_sendfile: bool = True,
) -> None:
    """Send ``count`` bytes of ``fobj`` from ``offset`` after ``response.prepare``.

    ``loop.sendfile`` (zero-copy on the stock loop) when the loop has it; else, as
    under uvloop, ``_SEND_CHUNK`` slices read with ``os.pread`` in an executor, so a
    Range hit reads only its slice. Raises ``ConnectionResetError`` if the file ends
    early: the caller must abort, never finish a short response. Call
    ``response.write_eof()`` afterwards."""
    if count <= 0:
        return
    loop = asyncio.get_running_loop()
    if use_sendfile:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("Connection lost")
        try:
            sent = await loop.sendfile(transport, fobj, offset, count)
        except NotImplementedError:
            pass
        else:
            if sent != count:
                raise ConnectionResetError(f"file ended after {sent} of {count} bytes")
            return
    fd = fobj.fileno()
    while count > 0:
        chunk = await loop.run_in_executor(None, os.pread, fd, min(_SEND_CHUNK, count), offset)
        if not chunk:
            raise ConnectionResetError(f"file ended with {count} bytes still to send")
        await response.write(chunk)
        offset += len(chunk)
        count -= len(chunk)
