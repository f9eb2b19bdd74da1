"""The disk store's files: blocking work, always run in an executor.

``<stem>.body`` and ``<stem>.meta`` beside it. Writes are durable before they
are indexed: body to ``.tmp``, fsync, ``os.replace``; then the metadata the same
way; then the directory is fsynced. Unlinks remove the metadata first, so no
metadata file ever names a missing body. ``scan`` rebuilds what ``open`` indexes
and deletes what an interrupted write left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import zlib
from pathlib import Path
from typing import IO, Any

from multidict import CIMultiDict, CIMultiDictProxy

from shared.store.entry import CachedObject, FileBody

__all__ = [
    "BODY",
    "close_result",
    "decode",
    "metadata",
    "open_body",
    "scan",
    "unlink_stems",
    "write_files",
]

BODY, _META, _TMP = ".body", ".meta", ".tmp"
_FORMAT = 1  # metadata layout version
_CHUNK = 1 << 20  # bytes per read while checksumming, per os.write


def metadata(obj: CachedObject, length: int, crc32: int | None) -> dict[str, Any]:
    return {
        "format": _FORMAT,
        "key": obj.key,
        "vary_names": list(obj.vary_names),
        "vary_key": list(obj.vary_key),
        "status": obj.status,
        "headers": [[k, v] for k, v in obj.headers.items()],
        # the targeted-field view (RFC 9213) made at store time, when it differs
        "policy": None if obj.policy is obj.headers else [[k, v] for k, v in obj.policy.items()],
        "request_time": obj.request_time,
        "response_time": obj.response_time,
        "lifetime": obj.lifetime,
        "initial_age": obj.initial_age,
        "must_validate": obj.must_validate,
        "length": length,
        "crc32": crc32,
        "written": time.time(),  # which of two versions is newer, at ``open``
    }


def decode(stem: str, data: bytes) -> tuple[float, CachedObject] | None:
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
        obj = CachedObject(
            key=m["key"],
            vary_names=tuple(m["vary_names"]),
            vary_key=tuple(m["vary_key"]),
            status=m["status"],
            headers=CIMultiDictProxy(CIMultiDict(m["headers"])),
            body=FileBody(stem, m["length"], m["crc32"]),
            request_time=float(nums[0]),
            response_time=float(nums[1]),
            lifetime=float(nums[2]),
            initial_age=float(nums[3]),
            must_validate=bool(m["must_validate"]),
            policy_headers=_headers(m.get("policy")),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return float(m["written"]), obj


def write_files(stem: str, body: bytes, link_from: str | None, meta: dict[str, Any]) -> int:
    """Make ``stem``'s body, then its metadata, durable; returns the body's CRC-32."""
    paths = (stem + BODY + _TMP, stem + _META + _TMP, stem + BODY, stem + _META)
    tmp_body, tmp_meta, body_path, meta_path = paths
    directory = os.path.dirname(stem)
    try:
        os.makedirs(directory, exist_ok=True)
        if link_from is None:
            meta["crc32"] = zlib.crc32(body)
            _write_file(tmp_body, body)
        else:  # same bytes: share the inode
            os.link(link_from + BODY, tmp_body)
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


def unlink_stems(stems: list[str]) -> None:
    for stem in stems:
        for suffix in (_META, BODY):  # metadata first: never one naming a missing body
            with contextlib.suppress(OSError):
                os.unlink(stem + suffix)


def scan(root: Path) -> tuple[list[tuple[float, CachedObject]], int, int]:
    """Every valid object under ``root``; deletes leftovers and broken entries."""
    root.mkdir(parents=True, exist_ok=True)
    found: list[tuple[float, CachedObject]] = []
    cleaned = corrupt = 0
    for dirpath, _, names in os.walk(root):
        present = set(names)
        for name in names:
            path = os.path.join(dirpath, name)
            if name.endswith(_TMP):  # an interrupted write
                cleaned += _unlink(path)
            elif name.endswith(BODY) and name[: -len(BODY)] + _META not in present:
                cleaned += _unlink(path)  # crashed between body and metadata
            elif name.endswith(_META):
                stem = path[: -len(_META)]
                try:
                    with open(path, "rb") as f:
                        entry = decode(stem, f.read())
                except OSError:
                    entry = None
                try:
                    size = os.stat(stem + BODY).st_size
                except FileNotFoundError:
                    size = -1
                if entry is None or size != entry[1].length:
                    corrupt += 1
                    unlink_stems([stem])
                else:
                    found.append(entry)
    return found, cleaned, corrupt


def _unlink(path: str) -> int:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return 1


def open_body(path: str, length: int, crc: int | None) -> tuple[IO[bytes] | None, str]:
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


def close_result(fut: asyncio.Future[tuple[IO[bytes] | None, str]]) -> None:
    if not fut.cancelled() and fut.exception() is None and (fobj := fut.result()[0]):
        fobj.close()


def _headers(pairs: Any) -> CIMultiDictProxy[str] | None:
    """Header lines ``[[name, value], ...]`` from a metadata file (None if absent)."""
    if pairs is None:
        return None
    if not all(isinstance(x, str) for kv in pairs for x in kv):
        raise TypeError("header lines must be strings")
    return CIMultiDictProxy(CIMultiDict([(k, v) for k, v in pairs]))
