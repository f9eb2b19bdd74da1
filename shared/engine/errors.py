"""The engine's upstream failures, each with the status a client sees.

Only ``upstream.py`` translates aiohttp exceptions into these; the driver maps
them to short responses in one place (``Responder.error``). The fetcher raises
``UpstreamErrorStatus`` itself, for a 5xx a stale copy will stand in for.
"""

from __future__ import annotations

__all__ = [
    "OriginBudgetExhausted",
    "TruncatedBody",
    "UpstreamBadResponse",
    "UpstreamError",
    "UpstreamErrorStatus",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class UpstreamError(Exception):
    """An upstream request failed; ``status`` is what the client is answered."""

    status = 502
    retry_after: float | None = None


class UpstreamTimeout(UpstreamError):
    """Connect or read timeout talking to the parent."""

    status = 504


class UpstreamUnavailable(UpstreamError):
    """No parent could be reached (refused, reset before headers, DNS)."""

    status = 503


class UpstreamBadResponse(UpstreamError):
    """The parent answered something that is not valid HTTP."""

    status = 502


class UpstreamErrorStatus(UpstreamError):
    """The parent answered 5xx while a stored copy may stand in (stale-if-error,
    RFC 5861 §4): the fill fails before its head so its readers serve that copy."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class TruncatedBody(UpstreamError):
    """The body ended early (reset, short Content-Length, read timeout mid-body).

    Clients already streaming get an aborted connection, never a short 200.
    """

    status = 502


class OriginBudgetExhausted(UpstreamError):
    """The origin budget is spent and no stale copy exists."""

    status = 503

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
