"""The origin's one settings object: library, listeners, freshness and faults.

Built once in ``__main__`` from ``TIERCDN_*`` env vars with CLI flags on top
(``shared.service.settings``); frozen and validated in ``__post_init__``. Fault
injection is off by default; it exists so tests and load tests can play a
slow or thin origin.
"""

from __future__ import annotations

import dataclasses

from origin.packager import parse_ladder
from shared.service.settings import ServiceSettings, duration_field, option, size_field

__all__ = ["OriginSettings"]


@dataclasses.dataclass(frozen=True)
class OriginSettings(ServiceSettings):
    """One origin node: the library it serves, its listeners and its faults."""

    library: str = option("library", "directory of titles, one folder per title")
    port: int = option(8082, "port the origin listens on")
    admin_port: int = option(9082, "port of the admin listener (0 = none)")
    name: str = option("origin", "this node's name in logs and /stats")
    manifest_max_age: float = duration_field("2s", "Cache-Control max-age of manifests")
    playlist_max_age: float = duration_field(
        "60s", "Cache-Control max-age of VOD titles' HLS playlists (.m3u8)"
    )
    segment_max_age: float = duration_field(
        "31536000s", "Cache-Control max-age of init and media segments (immutable)"
    )
    manifest_cdn_cache_control: str = option(
        "", "CDN-Cache-Control of manifests, for CDN caches only (RFC 9213); '' = not sent"
    )
    segment_cdn_cache_control: str = option(
        "", "CDN-Cache-Control of init and media segments (RFC 9213); '' = not sent"
    )
    error_cache_control: str = option(
        "no-store", "Cache-Control of error responses; '' = none (a CDN's --negative-ttl applies)"
    )
    live: tuple[str, ...] = option(
        (), "live channel NAME, encoded in real time and served at /live/NAME/ (repeat)"
    )
    live_ladder: str = option(
        "", "video rungs of live channels as HEIGHT:BITRATE,... ('' = the sample's ladder)"
    )
    fault_delay: float = duration_field("0s", "fault: added latency before response headers")
    fault_rate: int = size_field(
        "0", "fault: per-response bandwidth cap in bytes per second (0 = off)"
    )
    fault_status: int = option(0, "fault: answer every request with this status (0 = off)")
    fault_reset_rate: float = option(
        0.0, "fault: share of file responses cut mid-body by a connection reset (0 = off)"
    )
    fault_control: bool = option(
        False, "accept PUT /faults on the admin listener to change faults at run time"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.library:
            raise ValueError("--library must name a directory")
        for field in ("manifest_max_age", "playlist_max_age", "segment_max_age", "fault_delay"):
            if getattr(self, field) < 0:
                raise ValueError(f"--{field.replace('_', '-')} must not be negative")
        for name in self.live:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"--live {name!r}: use letters, digits, '-' and '_'")
        if self.live_ladder:
            try:
                parse_ladder(self.live_ladder)
            except ValueError as exc:
                raise ValueError(f"--live-ladder: {exc}") from None
        if self.fault_rate < 0:
            raise ValueError("--fault-rate must not be negative")
        if self.fault_status and not 400 <= self.fault_status <= 599:
            raise ValueError("--fault-status must be 0 or an error status 400..599")
        if not 0 <= self.fault_reset_rate <= 1:
            raise ValueError("--fault-reset-rate must be in [0, 1]")
