"""Client responses of a cache node, built in one place.

From a stored object (hit or stale), from a fill (streamed as it grows), from
an upstream pass-through, or a short error. Each applies the reader's own
conditionals (304) and Range (206/416) to the whole object, and adds the
node's ``Cache-Status`` member and ``Via``. A body cut short upstream aborts
the client's connection: a short body must never look complete. A reader a
shared streaming fill lets go (``FillDetached``) continues from the byte it
reached on the stream its caller's ``Resume`` opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Callable
from typing import IO

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11, StreamWriter
from aiohttp.http_writer import _serialize_headers
from multidict import CIMultiDict, CIMultiDictProxy

from shared.engine.errors import UpstreamError
from shared.engine.fills import FillDetached, FillHead, FillReader
from shared.engine.outcome import Outcome, cache_status_member
from shared.engine.upstream import UpstreamResponse
from shared.http import (
    RangeKind,
    end_to_end,
    evaluate_conditionals,
    if_range_matches,
    parse_range,
)
from shared.service.accesslog import SENT
from shared.service.metrics import Metrics
from shared.store import CachedObject

__all__ = ["Responder", "Resume", "send_file"]

log = logging.getLogger(__name__)

# Fields a 304 never carries: they frame a body it does not have (RFC 9111 §3.2,
# RFC 9110 §8.6, §14.4); hop-by-hop fields are gone already (``end_to_end``).
_NOT_IN_304 = frozenset({"content-length", "transfer-encoding", "content-range"})
_DETAIL = {502: "bad-gateway", 503: "unavailable", 504: "timeout"}
_SEND_CHUNK = 256 * 1024  # slice read per executor call when sendfile is unavailable [aiohttp]

# The rest of a body, bytes ``[pos, end)``, from a stream of the reader's own.
Resume = Callable[[int, int | None], AsyncGenerator[bytes, None]]


class Responder:
    """Builds the responses of the node called ``name``."""

    def __init__(self, name: str, metrics: Metrics) -> None:
        self.name = name
        self.via = f"1.1 {name}"
        self.extra: dict[str, str] = {}  # fields a tier adds to every response (edge: CORS)
        self._sent = metrics.response_bytes.counts  # by source; plain ints

    def hit(self, request: web.Request, obj: CachedObject, age: float) -> web.Response:
        """A fresh hit of a body in memory. Its response head is built once per (Age,
        ttl) second and shared (``CachedObject.hit_headers``): a plain GET (no Range,
        no conditional) on a keep-alive HTTP/1.1 connection sends those bytes as they
        are (``_HitResponse``); anything else goes through ``from_store``."""
        body = obj.body
        assert isinstance(body, bytes)
        a, ttl = int(age), int(obj.lifetime - age)
        built = obj.hit_headers
        if built is None or built[0] != a or built[1] != ttl:
            member = cache_status_member(self.name, Outcome.HIT, ttl=obj.lifetime - age)
            headers = self._stored_headers(obj, CIMultiDict(obj.prepared), member, age)
            headers["Content-Length"] = str(len(body))  # as aiohttp would add them
            headers.setdefault("Content-Type", "application/octet-stream")
            headers.setdefault("Server", SERVER_SOFTWARE)
            head = _serialize_headers("HTTP/1.1 200 OK", headers) if obj.status == 200 else b""
            built = obj.hit_headers = (a, ttl, member, CIMultiDictProxy(headers), head)
        req_h = request.headers
        if (
            obj.status != 200
            or request.method != "GET"
            or "Range" in req_h
            or "If-None-Match" in req_h
            or "If-Modified-Since" in req_h
        ):  # what ``_plan`` reads: it answers those
            return self.from_store(request, obj, age, built[2])
        self._sent["cache"] += len(body)
        if request.version is HttpVersion11 and request.keep_alive:
            return _HitResponse(body, built[3], built[4])
        return web.Response(body=body, headers=built[3])  # aiohttp adds Connection

    def from_store(
        self, request: web.Request, obj: CachedObject, age: float, member: str
    ) -> web.Response:
        """A stored object (fresh or stale) as 200/206/304/416; no await, no body copy."""
        body = obj.body
        assert isinstance(body, bytes)  # the caller serves other bodies with from_file
        plan = self._plan(request, obj, len(body), member, age)
        if isinstance(plan, web.Response):
            return plan
        status, start, count, content_range = plan
        if count != len(body):
            body = body[start : start + count]
        if request.method != "HEAD":
            self._sent["cache"] += count
        resp = web.Response(status=status, body=body, headers=obj.prepared)  # copies once
        self._stored_headers(obj, resp.headers, member, age)
        if content_range:
            resp.headers["Content-Range"] = content_range
        return resp

    async def from_file(
        self,
        request: web.Request,
        obj: CachedObject,
        fobj: IO[bytes],
        length: int,
        age: float,
        member: str,
    ) -> web.StreamResponse:
        """A stored object whose body is an open file: sendfile, Range reads its slice only."""
        plan = self._plan(request, obj, length, member, age)
        if isinstance(plan, web.Response):
            return plan
        status, start, count, content_range = plan
        headers = self._stored_headers(obj, CIMultiDict(obj.prepared), member, age)
        if content_range:
            headers["Content-Range"] = content_range
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = count
        await resp.prepare(request)
        if request.method != "HEAD":
            try:
                await send_file(request, resp, fobj, start, count)
            except ConnectionResetError as exc:
                log.info("aborting a disk hit of %r: %s", obj.key, exc)
                _abort(request)
                return resp
            self._sent["cache"] += count
        await resp.write_eof()
        return resp

    def _plan(
        self, request: web.Request, obj: CachedObject, length: int, member: str, age: float
    ) -> web.Response | tuple[int, int, int, str | None]:
        """The reader's conditionals and Range against a whole stored object: a
        ready 304/416, or (status, start, count, Content-Range) to send."""
        req_h = request.headers
        if obj.status != 200:
            return obj.status, 0, length, None
        if evaluate_conditionals(request.method, req_h, obj.headers):
            return _not_modified(self._stored_headers(obj, CIMultiDict(obj.prepared), member, age))
        if "Range" in req_h and if_range_matches(req_h.get("If-Range"), obj.headers):
            r = parse_range(req_h["Range"], length)
            if r.kind in (RangeKind.UNSATISFIABLE, RangeKind.INVALID):
                headers = self._stored_headers(obj, CIMultiDict(obj.prepared), member, age)
                return _unsatisfiable(headers, length)
            if r.kind is RangeKind.PARTIAL:
                return 206, r.start, r.end - r.start + 1, f"bytes {r.start}-{r.end}/{length}"
        return 200, 0, length, None

    def _stored_headers(
        self, obj: CachedObject, headers: CIMultiDict[str], member: str, age: float
    ) -> CIMultiDict[str]:
        headers.update(self.extra)
        headers["Age"] = str(int(age))
        headers["Cache-Status"] = (
            f"{obj.upstream_status}, {member}" if obj.upstream_status else member
        )
        headers["Via"] = f"{obj.upstream_via}, {self.via}" if obj.upstream_via else self.via
        return headers

    async def from_fill(
        self,
        request: web.Request,
        reader: FillReader,
        head: FillHead,
        member: str,
        resume: Resume | None = None,
    ) -> web.StreamResponse:
        """Answer one reader from a fill: 304, 416, 206 or the whole body, streamed;
        from ``resume`` on if the fill lets this reader go (else it is aborted)."""
        built = head.client_headers.get(member)
        if built is None:
            built = head.client_headers[member] = CIMultiDictProxy(
                self.client_headers(head.headers, member)
            )
        headers = CIMultiDict(built)
        req_h = request.headers
        if head.status in (200, 206) and evaluate_conditionals(request.method, req_h, head.headers):
            return _not_modified(headers)
        start, end, status = 0, head.content_length, head.status
        ranged = status == 200 and "Range" in req_h
        if ranged and if_range_matches(req_h.get("If-Range"), head.headers):
            length = head.content_length
            if length is None and reader.fill.retaining:  # chunked: known only at the end
                length = await reader.fill.whole_size()
            if length is not None:  # else too large to wait for: whole object (RFC 9110 §14.2)
                r = parse_range(req_h["Range"], length)
                if r.kind in (RangeKind.UNSATISFIABLE, RangeKind.INVALID):
                    return _unsatisfiable(headers, length)
                if r.kind is RangeKind.PARTIAL:
                    start, end, status = r.start, r.end + 1, 206
                    headers["Content-Range"] = f"bytes {r.start}-{r.end}/{length}"
        resp = web.StreamResponse(status=status, headers=headers)
        if end is not None:
            resp.content_length = end - start
        await resp.prepare(request)
        if request.method == "HEAD" or status in (204, 304):
            return resp
        sent = 0
        try:
            async with contextlib.aclosing(_body(reader, start, end, resume)) as body:
                async for chunk in body:
                    await resp.write(chunk)
                    sent += len(chunk)
        except UpstreamError as exc:
            log.info("aborting a reader of %r after %d bytes: %s", reader.fill.key, sent, exc)
            _abort(request)
            return resp
        except ConnectionResetError:  # the client left; aiohttp still logs its line
            return resp
        finally:
            self._sent["upstream"] += sent
            request[SENT] = sent  # for the access log
        await resp.write_eof()
        return resp

    async def pass_through(
        self, request: web.Request, up: UpstreamResponse, member: str
    ) -> web.StreamResponse:
        """Stream an upstream response to the client as it arrives (nothing stored)."""
        resp = web.StreamResponse(status=up.status, headers=self.client_headers(up.headers, member))
        resp.content_length = up.content_length
        await resp.prepare(request)
        request[SENT] = 0
        try:
            async for chunk in up.chunks():
                await resp.write(chunk)
                self._sent["upstream"] += len(chunk)
                request[SENT] += len(chunk)
        except UpstreamError as exc:
            log.info("aborting %s %s: %s", request.method, request.path, exc)
            _abort(request)
            return resp
        except ConnectionResetError:  # the client left; aiohttp still logs its line
            return resp
        await resp.write_eof()
        return resp

    def client_headers(self, upstream: CIMultiDictProxy[str], member: str) -> CIMultiDict[str]:
        """Upstream end-to-end headers with this node's Cache-Status member and Via."""
        headers = end_to_end(upstream)
        status = ", ".join(headers.popall("Cache-Status", []))
        via = ", ".join(headers.popall("Via", []))
        headers.popall("Content-Length", None)
        headers["Cache-Status"] = f"{status}, {member}" if status else member
        headers["Via"] = f"{via}, {self.via}" if via else self.via
        headers.update(self.extra)
        return headers

    def error(
        self, status: int, message: str, member: str, retry_after: float | None = None
    ) -> web.Response:
        """A short, uncacheable error answer."""
        headers = {"Cache-Status": member, "Cache-Control": "no-store", "Via": self.via}
        headers.update(self.extra)
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        return web.Response(status=status, text=f"{status}: {message}\n", headers=headers)

    @staticmethod
    def detail(status: int) -> str:
        """The Cache-Status ``detail`` naming an upstream failure."""
        return _DETAIL.get(status, str(status))


async def _body(
    reader: FillReader, start: int, end: int | None, resume: Resume | None
) -> AsyncGenerator[bytes, None]:
    """Bytes ``[start, end)`` from the fill; if it lets the reader go, the rest
    from ``resume``, holding nothing of the fill meanwhile."""
    try:
        async with contextlib.aclosing(reader.read(start, end)) as body:
            async for chunk in body:
                yield chunk
        return
    except FillDetached as detached:
        if resume is None:
            raise
        pos = detached.pos
    reader.close()
    async with contextlib.aclosing(resume(pos, end)) as rest:
        async for chunk in rest:
            yield chunk


class _HitResponse(web.Response):
    """A plain GET hit on a keep-alive HTTP/1.1 connection, whose head (status line
    and every header, ``Content-Length`` and ``Server`` included) was serialized once
    and is shared by every such hit in the same second: ``_start`` hands those bytes
    to aiohttp's writer where ``StreamResponse._start`` would build and serialize the
    same head on each request (``_prepare_headers``, ``_write_headers``). The
    ``on_response_prepare`` signals still run; ``headers`` holds what was sent.
    ``tests/functional/test_hit_path.py`` pins the bytes on the wire against
    aiohttp's own path, so an aiohttp upgrade that moves its writer fails there."""

    def __init__(self, body: bytes, headers: CIMultiDictProxy[str], head: bytes) -> None:
        super().__init__(body=body, headers=headers)
        self._head, self._length = head, len(body)

    async def _start(self, request: web.BaseRequest) -> AbstractStreamWriter:
        self._req = request
        writer = self._payload_writer = request._payload_writer
        assert isinstance(writer, StreamWriter)
        self._keep_alive = True
        writer.length = self._length  # as ``_prepare_headers`` sets it
        await request._prepare_hook(self)
        writer._headers_buf = self._head  # what ``StreamWriter.write_headers`` leaves
        writer._headers_written = False
        return writer


def _not_modified(headers: CIMultiDict[str]) -> web.Response:
    """A 304 with every stored field as this node's revalidation left it, so a cache
    behind it updates its own copy with them (RFC 9111 §4.3.4, §3.2)."""
    kept = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _NOT_IN_304)
    return web.Response(status=304, headers=kept)


def _unsatisfiable(headers: CIMultiDict[str], length: int) -> web.Response:
    headers.popall("Content-Type", None)
    headers["Content-Range"] = f"bytes */{length}"
    return web.Response(status=416, text="416: range not satisfiable\n", headers=headers)


def _abort(request: web.Request) -> None:
    """Cut the client's connection: a short body must never look complete."""
    if request.transport is not None:
        request.transport.abort()


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
    ``response.write_eof()`` afterwards. Adds the bytes sent to ``request[SENT]``
    (``response.body_length`` never sees what ``loop.sendfile`` sends)."""
    request[SENT] = request.get(SENT, 0)
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
            request[SENT] += sent
            if sent != count:
                raise ConnectionResetError(f"file ended after {sent} of {count} bytes")
            return
    fd = fobj.fileno()
    while count > 0:
        chunk = await loop.run_in_executor(None, os.pread, fd, min(_SEND_CHUNK, count), offset)
        if not chunk:
            raise ConnectionResetError(f"file ended with {count} bytes still to send")
        await response.write(chunk)
        request[SENT] += len(chunk)
        offset += len(chunk)
        count -= len(chunk)
