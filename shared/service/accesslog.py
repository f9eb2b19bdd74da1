"""The access log: one line per request per node, for operators.

Fields: node, client, method, target, status, body bytes actually sent, the
node's ``Cache-Status`` member (the header's last; ``-`` without one), time to
first byte, total time and upstream time (waiting for the upstream head; ``-``
when there was none). Text lines for people, one JSON object per line with
``--log-json`` (``JsonFormatter``).

Bytes: aiohttp's ``body_length`` counts what went through its writer, headers
included, and nothing ``loop.sendfile`` sent (a disk hit logged its header
size). A responder that streams a body records what it wrote in ``SENT``; else
a body of known length (``web.Response``, ``web.FileResponse``, Range applied)
is its ``content_length``. Times: the listener marks ``PREPARED`` when headers
go out (``on_response_prepare``); the driver records ``UPSTREAM``.

The file (``--access-log-file``) is reopened on SIGUSR1 (``ReopeningFileHandler``)
so logrotate can move it away: nginx's ``-s reopen``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

__all__ = [
    "ACCESS",
    "PREPARED",
    "SENT",
    "UPSTREAM",
    "AccessLogger",
    "JsonFormatter",
    "ReopeningFileHandler",
    "mark_prepared",
]

ACCESS = "tiercdn.access"  # the logger; a listener logs to its child ``tiercdn.access.<node>``
SENT = web.RequestKey("sent_bytes", int)  # body bytes written, by a streaming responder
PREPARED = web.RequestKey("prepared", float)  # monotonic time the headers went out
UPSTREAM = web.RequestKey("upstream_seconds", float)  # waited for the upstream head


async def mark_prepared(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: the time to first byte ends here."""
    request[PREPARED] = time.monotonic()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class AccessLogger(AbstractAccessLogger):
    """One record per request with the fields in ``record.access`` (JSON) and a
    text message: ``node client "METHOD target" status bytes "member" ttfb= total= up=``."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        fields = access_fields(self.logger.name, request, response, time)
        self.logger.info(
            '%s %s "%s %s" %d %d "%s" ttfb=%sms total=%sms up=%s',
            *(fields[k] for k in ("node", "client", "method", "target", "status", "bytes")),
            fields["cache_status"],
            fields["ttfb_ms"],
            fields["total_ms"],
            "-" if fields["upstream_ms"] is None else f"{fields['upstream_ms']}ms",
            extra={"access": fields},
        )


def access_fields(
    logger_name: str, request: web.BaseRequest, response: web.StreamResponse, total: float
) -> dict[str, Any]:
    """The access fields of one finished request (``total``: aiohttp's elapsed seconds)."""
    node = logger_name.removeprefix(ACCESS).removeprefix(".") or "-"
    members = response.headers.getall("Cache-Status", [])
    member = members[-1].rsplit(",", 1)[-1].strip() if members else "-"
    prepared = request.get(PREPARED)
    # aiohttp's start is on the loop clock: TTFB is the total less the time since prepare.
    ttfb = None if prepared is None else max(0.0, total - (time.monotonic() - prepared))
    return {
        "node": node,
        "client": request.remote or "-",
        "method": request.method,
        "target": request.path_qs,
        "status": response.status,
        "bytes": body_bytes(request, response),
        "cache_status": member,
        "ttfb_ms": _ms(ttfb),
        "total_ms": _ms(total),
        "upstream_ms": _ms(request.get(UPSTREAM)),
    }


def body_bytes(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """Body bytes sent: see the module docstring."""
    sent = request.get(SENT)
    if sent is not None:
        return int(sent)
    if request.method == "HEAD" or response.status in (204, 304) or not response.prepared:
        return 0
    if response.content_length is not None:
        return response.content_length
    return response.body_length  # chunked and unrecorded: an upper bound (framing included)


class JsonFormatter(logging.Formatter):
    """One JSON object per record; an access record's fields are top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            doc.update(fields)
        else:
            doc["msg"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class ReopeningFileHandler(logging.FileHandler):
    """A file handler whose ``reopen`` (on SIGUSR1) starts a new file at its path."""

    def __init__(self, path: str) -> None:
        super().__init__(path, encoding="utf-8", delay=False)

    def reopen(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
            self.stream = self._open()
        finally:
            self.release()
