"""The origin's one settings object: library, listeners, freshness and faults.

Built once in ``__main__`` from ``TIERCDN_*`` env vars with CLI flags on top
(``shared.settings``); frozen and validated in ``__post_init__``. Fault
injection is off by default; it exists so tests and load tests can play a
slow or thin origin.
"""

from __future__ import annotations

import dataclasses

from shared.settings import duration_field, option, size_field

__all__ = ["LOG_LEVELS", "OriginSettings"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclasses.dataclass(frozen=True)
class OriginSettings:
    """One origin node: the library it serves, its listeners and its faults."""

    library: str = option("library", "directory of titles, one folder per title")
    host: str = option("127.0.0.1", "address the origin listens on")
    port: int = option(8082, "port the origin listens on")
    admin_host: str = option("127.0.0.1", "address of the admin listener (metrics, stats)")
    admin_port: int = option(9082, "port of the admin listener (0 = none)")
    name: str = option("origin", "this node's name in logs and /stats")
    manifest_max_age: float = duration_field("2s", "Cache-Control max-age of manifests")
    segment_max_age: float = duration_field(
        "31536000s", "Cache-Control max-age of init and media segments (immutable)"
    )
    fault_delay: float = duration_field("0s", "fault: added latency before response headers")
    fault_rate: int = size_field(
        "0", "fault: per-response bandwidth cap in bytes per second (0 = off)"
    )
    log_level: str = option("INFO", "log level: DEBUG, INFO, WARNING or ERROR")
    access_log: bool = option(False, "log one line per request")
    log_json: bool = option(False, "log as JSON lines")

    def __post_init__(self) -> None:
        if not self.library:
            raise ValueError("--library must name a directory")
        if not self.name or any(c in self.name for c in ' ,;"'):
            raise ValueError(
                f"--name must be a token without spaces, commas or quotes: {self.name!r}"
            )
        if not 0 <= self.port < 65536 or not 0 <= self.admin_port < 65536:
            raise ValueError("ports must be between 0 and 65535")
        for field in ("manifest_max_age", "segment_max_age", "fault_delay"):
            if getattr(self, field) < 0:
                raise ValueError(f"--{field.replace('_', '-')} must not be negative")
        if self.fault_rate < 0:
            raise ValueError("--fault-rate must not be negative")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
