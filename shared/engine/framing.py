"""Upstream response framing: a body ends at its ``Content-Length``, whatever follows.

aiohttp's client parser reads bytes past the end of a response delimited by
``Content-Length`` as the next response's status line: with the body in one
segment it fails the response it had already parsed (a 502 for a good object),
later it fails the next request on the pooled connection. ``FramedConnector``
gives each connection a ``FramedHandler`` that feeds the parser exactly the
response and drops what follows with the connection (RFC 9112 §6.3).

Relies on aiohttp 3.14 internals (``TCPConnector._factory``,
``ResponseHandler._skip_payload`` and ``_should_close``); the framing tests in
``tests/functional/test_upstream_faults.py`` fail loudly if they move.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

__all__ = ["FramedConnector", "FramedHandler"]

log = logging.getLogger(__name__)

# The end of a response head (responses are parsed leniently: LF may end a line).
_HEAD_END = re.compile(rb"\n\r?\n")
_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})[ \r\n]")
_FRAMING = re.compile(rb"\n(content-length|transfer-encoding)[ \t]*:[ \t]*([^\r\n]*)", re.I)
_MAX_HEAD = 65536  # past this, leave the head to aiohttp's limits


class FramedHandler(ResponseHandler):
    """aiohttp's client protocol, but the parser never sees bytes past the end of a
    response whose body is delimited by ``Content-Length``: they are dropped with the
    connection (RFC 9112 §6.3), and the response stays whole. aiohttp would parse them
    as the next response, fail this one if they came with its body (a 502 for a good
    object), or fail the next request on the pooled connection.

    Only the framing is read here; aiohttp's parser still validates everything it is
    fed. A head this cannot read (chunked, no length, odd framing) passes unchanged.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self._head = b""  # the part of a head received so far
        self._left: int | None = None  # body bytes still due; None: reading a head
        self._passing = False  # not delimited by Content-Length here: feed all
        self._ended = False  # the response ended: drop whatever follows

    def set_response_params(self, **kw: Any) -> None:
        # a new request on this connection (no pipelining): a new response, from its head
        self._head, self._left, self._passing, self._ended = b"", None, False, False
        super().set_response_params(**kw)

    def data_received(self, data: bytes) -> None:
        if not data:  # aiohttp resuming a paused parser: no bytes of the peer's
            super().data_received(data)
            return
        while data and not self._passing:
            if self._ended:
                self._drop(len(data))
                return
            if self._left is None:
                data = self._feed_head(data)
                continue
            body, data = data[: self._left], data[self._left :]
            self._left -= len(body)
            self._ended = self._left == 0
            super().data_received(body)
        if data:
            super().data_received(data)

    def _feed_head(self, data: bytes) -> bytes:
        """Feed the head in ``data`` (or all of it, if it does not end there); the rest."""
        seen = len(self._head)
        self._head += data
        end = _HEAD_END.search(self._head, max(0, seen - 3))
        if end is None:
            self._passing = len(self._head) > _MAX_HEAD
            super().data_received(data)
            return b""
        head, self._head = self._head[: end.end()], b""
        used = len(head) - seen
        super().data_received(data[:used])
        self._frame(head)
        return data[used:]

    def _frame(self, head: bytes) -> None:
        """How the body after ``head`` ends: another head (1xx), none, or its length."""
        status = _STATUS.match(head)
        code = int(status.group(1)) if status else 0
        framing = _FRAMING.findall(head)  # [(name, value)]: exactly one Content-Length?
        length = framing[0][1].strip() if len(framing) == 1 else b""
        if 100 <= code < 200 and code != 101:
            return  # interim: the final head follows
        if code in (204, 304) or (code and self._skip_payload):
            self._ended = True  # no body (a 304, or the answer to HEAD)
        elif code and length.isdigit() and framing[0][0].lower() == b"content-length":
            self._left = int(length)
            self._ended = self._left == 0
        else:
            self._passing = True

    def _drop(self, count: int) -> None:
        log.warning("upstream sent %d bytes past the end of a response: dropping it", count)
        self._should_close = True
        if self.transport is not None:
            self.transport.close()


class FramedConnector(aiohttp.TCPConnector):
    """A TCPConnector whose connections use ``FramedHandler``."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._factory = functools.partial(FramedHandler, loop=self._loop)  # type: ignore[assignment]
