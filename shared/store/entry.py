"""A stored response: its head, the facts needed to age it, and its body.

The body is ``bytes`` (held in memory) or a ``FileBody`` (a file of the disk
store). Nothing outside ``shared/store/`` opens a ``FileBody``: callers ask the
store (``open_body``, ``read_body``), so the request path never needs to know
which tier an object came from. Serving headers are prepared once at store time
so the hit path copies, never builds. So is ``policy``: the view of the headers the
node's own storage and freshness read, where a targeted field such as
CDN-Cache-Control stands in for Cache-Control (RFC 9213 §2.2); it is the headers
themselves when the response has none.
"""

from __future__ import annotations

import dataclasses

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["CachedObject", "FileBody"]

# Fields recomputed on every response, so not part of the prepared headers.
_PER_RESPONSE = ("Age", "Cache-Status", "Via", "Content-Length", "Date")
_OVERHEAD = 256  # bytes charged per object for bookkeeping


@dataclasses.dataclass(slots=True)
class FileBody:
    """A body kept in the file ``<stem>.body``, owned by exactly one stored object."""

    stem: str  # <root>/ab/cd/<hash>.<token>
    length: int  # body bytes
    crc32: int  # of the body, checked once per process by the disk store
    verified: bool = False  # guarded by: single event loop

    def __len__(self) -> int:
        return self.length


@dataclasses.dataclass(slots=True)
class CachedObject:
    """A complete stored response and the facts needed to age it."""

    key: str
    vary_names: tuple[str, ...]
    vary_key: tuple[str, ...]
    status: int
    headers: CIMultiDictProxy[str]  # end-to-end headers as received (RFC 9111 §3.1)
    body: bytes | FileBody
    request_time: float
    response_time: float
    lifetime: float  # freshness lifetime (RFC 9111 §4.2.1), computed at store time
    initial_age: float  # corrected_initial_age (RFC 9111 §4.2.3)
    must_validate: bool  # response no-cache: revalidate before every use
    policy_headers: CIMultiDictProxy[str] | None = None  # the policy view, if not ``headers``
    policy: CIMultiDictProxy[str] = dataclasses.field(init=False)  # stale rules read it
    prepared: CIMultiDictProxy[str] = dataclasses.field(init=False)
    upstream_status: str = dataclasses.field(init=False)  # upstream Cache-Status, or ""
    upstream_via: str = dataclasses.field(init=False)
    # A node's whole hit head for one (int Age, int ttl), remade when either ticks: Age,
    # ttl, the Cache-Status member, the headers and their serialized head (200s only).
    # Built on the first hit of each second, shared by every hit in it [single event loop]
    hit_headers: tuple[int, int, str, CIMultiDictProxy[str], bytes] | None = dataclasses.field(
        init=False, default=None
    )

    def __post_init__(self) -> None:
        self.policy = self.headers if self.policy_headers is None else self.policy_headers
        prepared = CIMultiDict(self.headers)
        for name in _PER_RESPONSE:
            prepared.popall(name, None)
        if "Date" in self.headers:
            prepared["Date"] = self.headers["Date"]
        self.prepared = CIMultiDictProxy(prepared)
        self.upstream_status = ", ".join(self.headers.getall("Cache-Status", []))
        self.upstream_via = ", ".join(self.headers.getall("Via", []))

    def age(self, now: float) -> float:
        """current_age (RFC 9111 §4.2.3) at ``now``."""
        return self.initial_age + max(0.0, now - self.response_time)

    def ttl(self, now: float) -> float:
        """Seconds of freshness left (negative once stale)."""
        return self.lifetime - self.age(now)

    def with_body(self, body: bytes | FileBody) -> CachedObject:
        """The same response over another body (a disk object read into memory)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        fields["body"] = body
        return CachedObject(**fields)

    @property
    def length(self) -> int:
        """Body bytes, wherever the body is."""
        return len(self.body)

    @property
    def size(self) -> int:
        """Bytes charged against the budget: body, headers and bookkeeping."""
        head = sum(len(k) + len(v) for k, v in self.headers.items())
        return len(self.body) + head + _OVERHEAD
