"""Client connections with deadlines: aiohttp's request handler, vetted and timed.

aiohttp's server keeps an idle connection for an hour, puts no deadline on a
request head nor on a client that stops reading, answers ``HTTP/2.0`` and
versionless request lines as if they were HTTP/1.x, and logs a client's reset
as an ERROR with a traceback. A ``Connection`` (one per accepted socket, made
by ``shared.service.listener.Listener``) adds, under its ``ConnectionLimits``:

- **header timeout**: a connection without a whole request head
  ``header_timeout`` after it opened (or after the first byte of its next
  request on keep-alive) gets ``408`` if it sent part of one, and is closed;
- **keep-alive timeout**: idle between requests, closed after
  ``keepalive_timeout`` (aiohttp's own timer);
- **send timeout**: a client that accepts no byte of its response for
  ``send_timeout`` is aborted, so the handler's next write raises and what it
  was reading (a fill) is released. A timer while the transport holds back
  writes (flow control); ``TCP_USER_TIMEOUT``, set by the listener, for bytes
  that bypass the transport (``sendfile``);
- request heads vetted before any handler runs: no version (HTTP/0.9) →
  ``400``, a version other than 1.0/1.1 → ``505``, a ``Host`` outside RFC
  3986 ``host [":" port]`` → ``400``; the hit path pays two look-ups;
- client faults (``ClientFault``) are one log line (INFO; DEBUG for aborts and
  idle connections) and a count in ``ConnectionStats``; a handler's own
  exception stays an ERROR with its traceback.

Over ``max_connections``, the listener makes a ``Refusal`` instead: ``503``
with ``Retry-After``, then close.

Built on aiohttp 3.14's ``RequestHandler``, subclassed: it reads the private
``_messages`` (parsed heads not yet handled), ``_request_in_progress`` and
``_waiter`` (set while waiting for a head), and reuses ``_ErrInfo`` to answer a
vetted head. ``tests/functional/test_connections.py`` pins every behaviour, so
an aiohttp upgrade that moves them fails there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import errno
import logging
import re
import sys
from typing import Any, cast

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from shared.service.settings import ServiceSettings

__all__ = ["ClientFault", "Connection", "ConnectionLimits", "ConnectionStats", "Refusal"]

log = logging.getLogger(__name__)

# RFC 9110 §7.2: Host = uri-host [ ":" port ], uri-host from RFC 3986 (IP-literal or reg-name,
# which covers IPv4); an empty value is allowed (a target without authority).
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


def _answer(status: str, text: str, *headers: str) -> bytes:
    """A whole ``Connection: close`` response, written before a handler exists."""
    body = f"{text}\n".encode()
    lines = [f"HTTP/1.1 {status}", "Connection: close", *headers, "Content-Type: text/plain"]
    return ("\r\n".join([*lines, f"Content-Length: {len(body)}", "", ""])).encode() + body


_TIMEOUT_408 = _answer("408 Request Timeout", "408: request timeout")
_LINGER_SECONDS = 2.0  # after a 408, how long the client's last bytes are read and dropped
_BUSY_503 = _answer("503 Service Unavailable", "503: too many connections", "Retry-After: 1")
_REFUSAL_WAIT = 1.0  # longest a refused connection may take to send its request


class ClientFault(enum.Enum):
    """Why a client's connection or request failed on its side (a metric label)."""

    HEADER_TIMEOUT = "header_timeout"  # part of a request head, then silence: 408
    IDLE_TIMEOUT = "idle_timeout"  # a new connection that sent nothing
    SEND_TIMEOUT = "send_timeout"  # accepted no response byte for send_timeout
    MALFORMED = "malformed"  # a head the parser refused, or one without a version: 400
    BAD_VERSION = "bad_version"  # a version other than HTTP/1.0 or 1.1: 505
    BAD_HOST = "bad_host"  # a Host outside RFC 3986 syntax: 400
    ABORTED = "aborted"  # reset or closed by the client while its request was served


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and the connection cap of every listener (``ServiceSettings``' fields)."""

    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    send_timeout: float = 60.0
    max_connections: int = 16384  # 0 = no cap

    @classmethod
    def of(cls, settings: ServiceSettings) -> ConnectionLimits:
        return cls(
            settings.client_header_timeout,
            settings.keepalive_timeout,
            settings.send_timeout,
            settings.max_connections,
        )


class ConnectionStats:
    """Counts of one listener's connections (read at scrape time by ``ListenerCollector``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        # guarded by: single event loop
        self.open = 0
        self.accepted = 0
        self.refused = 0
        self.faults = dict.fromkeys(ClientFault, 0)

    def __repr__(self) -> str:
        faults = {f.value: n for f, n in self.faults.items() if n}
        return (
            f"<ConnectionStats {self.name} open={self.open} accepted={self.accepted} "
            f"refused={self.refused} faults={faults}>"
        )


class _VersionNotSupported(HttpProcessingError):
    code = 505
    message = "HTTP Version Not Supported"


class _NoVersion(BadHttpMessage):
    pass


class _BadHost(BadHttpMessage):
    pass


class Connection(RequestHandler):
    """aiohttp's request handler under ``limits``, counted in ``stats``."""

    __slots__ = (
        "_stats",
        "_limits",
        "_socket",
        "_head_timer",
        "_head_bytes",
        "_send_timer",
        "_send_mark",
        "_host_ok",
        "_dropped",
        "_peer_eof",
        "_lingering",
    )

    def __init__(
        self, manager: web.Server, limits: ConnectionLimits, stats: ConnectionStats, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._stats: ConnectionStats | None = stats  # None once the connection is lost
        # The transport, kept after aiohttp drops it on close: it may still hold
        # unsent bytes the send timeout must be able to abort.
        self._socket: asyncio.Transport | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = False  # bytes of a request head arrived since the last head
        self._send_timer: asyncio.TimerHandle | None = None
        self._send_mark = 0  # the write buffer's size when the send timer was set
        self._host_ok: str | None = None  # the last Host vetted on this connection
        self._dropped: ClientFault | None = None  # why we closed it, if we did
        self._peer_eof = False
        self._lingering = False  # a 408 sent: read and drop what still comes, then close

    # -- the connection ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._socket = cast(asyncio.Transport, transport)  # uvloop's is not one
        self._head_timer = self._loop.call_later(self._limits.header_timeout, self._head_late)

    def eof_received(self) -> None:
        self._peer_eof = True
        if self._lingering and self.transport is not None:
            self.transport.close()  # the client read the 408 and left: done lingering
            return
        super().eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        stats = self._stats
        if stats is not None:
            self._cancel_timers()
            if self._dropped is None:
                if isinstance(exc, TimeoutError):  # TCP_USER_TIMEOUT: the send timeout
                    self._fault(ClientFault.SEND_TIMEOUT, "accepted no bytes (kernel)")
                elif self._request_in_progress and (exc is not None or self._peer_eof):
                    self._fault(ClientFault.ABORTED, f"left mid-request ({exc or 'eof'})")
            stats.open -= 1
            self._stats = None
        self._socket = None
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _fault(self, fault: ClientFault, detail: str) -> None:
        stats = self._stats
        if stats is not None:
            stats.faults[fault] += 1
        quiet = fault in (ClientFault.ABORTED, ClientFault.IDLE_TIMEOUT)
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "client %s on %s: %s: %s",
            _peer(self.peername),
            stats.name if stats is not None else "-",
            fault.value,
            detail,
        )

    # -- request heads: deadline and vetting -------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # after a 408: what the client still sends is dropped
        messages = self._messages
        queued = len(messages)
        RequestHandler.data_received(self, data)
        if len(messages) > queued:  # one head or more arrived (or a parse error)
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            self._head_bytes = False
            for i in range(queued, len(messages)):
                # the hit path: HTTP/1.1 (the parser's own object) and the Host vetted
                # last on this connection cost two look-ups, nothing else
                message = messages[i][0]
                if not isinstance(message, _ErrInfo) and (
                    message.version is not HttpVersion11
                    or message.headers.get("Host") != self._host_ok
                ):
                    self._vet(i)
        elif data and not self._request_in_progress:  # part of a head
            self._head_bytes = True
            if self._head_timer is None and self._stats is not None:
                self._head_timer = self._loop.call_later(
                    self._limits.header_timeout, self._head_late
                )

    def _vet(self, i: int) -> None:
        """Swap the ``i``-th queued head for an error answer if its version or Host is bad."""
        message = self._messages[i][0]
        assert not isinstance(message, _ErrInfo)
        version = message.version
        if version != HttpVersion11 and version != HttpVersion10:
            if version < HttpVersion10:
                exc: HttpProcessingError = _NoVersion("request line without an HTTP version")
            else:
                exc = _VersionNotSupported(message=f"HTTP/{version[0]}.{version[1]}")
        else:
            host = message.headers.get("Host")
            if host is None or host == self._host_ok:
                return
            if _HOST.fullmatch(host) is not None:
                self._host_ok = host
                return
            exc = _BadHost(f"invalid Host {host[:64]!r}")
        error = _ErrInfo(status=exc.code, exc=exc, message=exc.message)
        self._messages[i] = (error, EMPTY_PAYLOAD)

    def _head_late(self) -> None:
        self._head_timer = None
        waiter = self._waiter
        transport = self.transport
        if transport is None or waiter is None or waiter.done():
            return  # not waiting for a head (a request runs, or lingers): not ours
        if self._head_bytes:
            self._dropped = ClientFault.HEADER_TIMEOUT
            self._fault(self._dropped, f"no whole request head in {self._limits.header_timeout}s")
            transport.write(_TIMEOUT_408)
            if transport.can_write_eof():
                # Lingering close (nginx's lingering_close): closing a socket with unread
                # bytes in it sends a reset, which can destroy the 408 before the client
                # reads it. Half-close, drop what still comes, close when it leaves.
                self._lingering = True
                transport.write_eof()
                self._loop.call_later(_LINGER_SECONDS, transport.close)
                return
        else:
            self._dropped = ClientFault.IDLE_TIMEOUT
            self._fault(self._dropped, f"no request in {self._limits.header_timeout}s")
        self.force_close()

    # -- responses: the send timeout -------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None and self._socket is not None:
            self._send_mark = self._socket.get_write_buffer_size()
            self._send_timer = self._loop.call_later(self._limits.send_timeout, self._send_late)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_late(self) -> None:
        self._send_timer = None
        transport = self._socket
        if transport is None or not self._paused:
            return
        size = transport.get_write_buffer_size()
        if size < self._send_mark:  # it took some bytes: slow, not stuck
            self._send_mark = size
            self._send_timer = self._loop.call_later(self._limits.send_timeout, self._send_late)
            return
        self._dropped = ClientFault.SEND_TIMEOUT
        self._fault(self._dropped, f"accepted no bytes in {self._limits.send_timeout}s")
        transport.abort()  # the handler's next write raises; its reader is released

    # -- errors: one line for a client's, a traceback for ours -----------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp calls this inside its ``except`` block: a handler's TimeoutError
        # arrives as a bare 504, its cause still in sys.exc_info()
        if self._client_fault(exc if exc is not None else sys.exc_info()[1]) is None:
            return super().handle_error(request, status, exc, message)  # ours: ERROR + traceback
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error instead")
        response = web.Response(status=status, text=f"{status}: {message or 'bad request'}\n")
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        # aiohttp's other ERROR: an exception while sending a prepared response (sendfile)
        exc = kw.get("exc_info")
        if not isinstance(exc, BaseException) or self._client_fault(exc) is None:
            super().log_exception(*args, **kw)

    def _client_fault(self, exc: BaseException | None) -> ClientFault | None:
        """The client's fault ``exc`` shows, noted (one line, a count); None if it is ours."""
        if isinstance(exc, HttpProcessingError):
            if isinstance(exc, _VersionNotSupported):
                fault = ClientFault.BAD_VERSION
            elif isinstance(exc, _BadHost):
                fault = ClientFault.BAD_HOST
            else:
                fault = ClientFault.MALFORMED
            self._fault(fault, f"{exc.code} {exc.message or exc!r}"[:200])
            return fault
        if isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT:
            # TCP_USER_TIMEOUT seen by a write that bypassed the transport (sendfile)
            if self._dropped is None:
                self._dropped = ClientFault.SEND_TIMEOUT
                self._fault(self._dropped, "accepted no bytes (kernel)")
            return ClientFault.SEND_TIMEOUT
        if isinstance(exc, _CLIENT_ERRORS) and self._client_gone():
            # the client left first (counted in connection_lost); the handler noticed
            log.debug("client %s left: %r", _peer(self.peername), exc)
            return ClientFault.ABORTED
        return None

    def _client_gone(self) -> bool:
        transport = self.transport
        return transport is None or transport.is_closing()


_CLIENT_ERRORS = (OSError, RequestPayloadError)


class Refusal(asyncio.Protocol):
    """A connection over ``max_connections``: its request gets ``503``, then it closes.

    The request is read first, so the close sends a FIN after the answer, not a
    reset that would destroy it."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(_REFUSAL_WAIT, transport.abort)

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(_BUSY_503)
            transport.close()

    def eof_received(self) -> None:
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None


def _peer(peername: Any) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)
