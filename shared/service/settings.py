"""Typed, frozen settings built once from env vars with CLI flags on top.

Every field of a settings dataclass is a flag ``--field-name`` and an env var
``TIERCDN_FIELD_NAME``; the flag wins over the env var, which wins over the
default. A field's ``metadata`` carries its help text and, for sizes and
durations, the parser (``parse_size`` / ``parse_duration``). Tuple fields take
the flag several times, or a comma/space separated env var.

This module and ``service.py`` are the only readers of ``os.environ``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from shared.service.units import format_size, parse_duration, parse_size

__all__ = [
    "CacheSettings",
    "ServiceSettings",
    "add_arguments",
    "duration_field",
    "env_name",
    "from_namespace",
    "load",
    "option",
    "size_field",
]

ENV_PREFIX = "TIERCDN_"
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a token (RFC 9110 §5.1)
S = TypeVar("S")


def option(default: Any, help: str, parse: Callable[[str], Any] | None = None) -> Any:
    """A settings field with its help text (and a parser for text values)."""
    if isinstance(default, tuple | list):
        return dataclasses.field(
            default_factory=lambda: tuple(default), metadata={"help": help, "parse": parse}
        )
    return dataclasses.field(default=default, metadata={"help": help, "parse": parse})


def size_field(default: str, help: str) -> Any:
    """A byte count that accepts human units (``512MiB``)."""
    return option(parse_size(default), f"{help}; units 512MiB, 4MB", parse_size)


def duration_field(default: str, help: str) -> Any:
    """Seconds, accepting human units (``2s``, ``250ms``)."""
    return option(parse_duration(default), f"{help}; units 2s, 250ms", parse_duration)


def env_name(field_name: str) -> str:
    """``cache_bytes`` → ``TIERCDN_CACHE_BYTES``."""
    return ENV_PREFIX + field_name.upper()


def add_arguments(
    parser: argparse.ArgumentParser, cls: type[Any], defaults: Mapping[str, Any] | None = None
) -> None:
    """Add one ``--flag`` per field of the settings dataclass ``cls``.

    ``defaults`` are the caller's defaults over the field's own, shown in --help."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = _shown_default(f, (defaults or {}).get(f.name, _field_default(f)))
        help_text = f"{f.metadata.get('help', '')} (default {default}) [env {env_name(f.name)}]"
        if f.type in ("bool", bool):
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        elif str(f.type).startswith("tuple"):
            parser.add_argument(flag, dest=f.name, action="append", default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=None, help=help_text)


def from_namespace(
    cls: type[S], ns: argparse.Namespace, env: Mapping[str, str] | None = None, **overrides: Any
) -> S:
    """Build ``cls`` from parsed flags, then env vars, then ``overrides``, then defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = dict(overrides)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        raw = getattr(ns, f.name, None)
        if raw is None and env_name(f.name) in env:
            raw = env[env_name(f.name)]
            if str(f.type).startswith("tuple"):
                raw = [part for part in raw.replace(",", " ").split() if part]
        if raw is None:
            continue
        values[f.name] = _convert(f, raw)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"error: invalid settings: {exc}") from None


def load(
    cls: type[S],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> S:
    """Parse ``argv`` (flags) and the environment into one frozen ``cls``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser, cls, overrides)
    return from_namespace(cls, parser.parse_args(argv), env, **overrides)


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _shown_default(f: dataclasses.Field[Any], value: Any) -> str:
    if f.metadata.get("parse") is parse_size:
        return format_size(int(value))
    if f.metadata.get("parse") is parse_duration:
        return f"{int(value)}s" if value == int(value) else f"{value}s"
    if isinstance(value, tuple):
        return " ".join(value) or "none"
    return str(value)


def _convert(f: dataclasses.Field[Any], raw: Any) -> Any:
    parse = f.metadata.get("parse")
    kind = str(f.type)
    try:
        if isinstance(raw, list):
            return tuple(parse(v) if parse else v for v in raw)
        if parse is not None:
            return parse(raw)
        if kind in ("bool", str(bool)) and isinstance(raw, str):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind in ("int", str(int)):
            return int(raw)
        if kind in ("float", str(float)):
            return float(raw)
    except ValueError as exc:
        raise SystemExit(f"error: --{f.name.replace('_', '-')}: {exc}") from None
    return raw


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """What every tiercdn service has: a name, two listeners and its logging."""

    name: str = option("node", "this node's name in Cache-Status, Via and logs")
    host: str = option("127.0.0.1", "address the service listens on")
    port: int = option(0, "port the service listens on")
    admin_host: str = option("127.0.0.1", "address of the admin listener (metrics, stats)")
    admin_port: int = option(0, "port of the admin listener (0 = none)")
    log_level: str = option("INFO", "log level: DEBUG, INFO, WARNING or ERROR")
    access_log: bool = option(False, "log one line per request")
    log_json: bool = option(False, "log as JSON lines")
    # -- connection hygiene, on every listener (nginx's defaults where it has one) -----
    client_header_timeout: float = duration_field(
        "10s", "close a client that has not sent a whole request head in this time (408)"
    )
    keepalive_timeout: float = duration_field(
        "75s", "close a client's keep-alive connection idle this long"
    )
    send_timeout: float = duration_field(
        "60s", "drop a client that accepts no response bytes for this long"
    )
    max_connections: int = option(
        16384, "client connections per listener; beyond it new ones are refused (0 = no cap)"
    )

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in ' ,;"'):
            raise ValueError(f"--name must be a token (no spaces, commas, quotes): {self.name!r}")
        if not 0 <= self.port < 65536 or not 0 <= self.admin_port < 65536:
            raise ValueError("ports must be between 0 and 65535")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("--log-level must be one of DEBUG, INFO, WARNING, ERROR")
        for name in ("client_header_timeout", "keepalive_timeout", "send_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive")
        if self.max_connections < 0:
            raise ValueError("--max-connections must not be negative")


@dataclasses.dataclass(frozen=True)
class CacheSettings(ServiceSettings):
    """What every cache node has (edge and regional): listeners, upstreams, store,
    timeouts and miss-storm defences. A tier's own policies extend it
    (``edge.settings.EdgeSettings``, ``regional.settings.RegionalSettings``)."""

    name: str = option("cache-1", "this node's name in Cache-Status and Via")
    port: int = option(8080, "port the proxy listens on")
    admin_port: int = option(9080, "port of the admin listener (0 = none)")
    upstream: tuple[str, ...] = option((), "parent URL (repeat for several parents)")
    cache_bytes: int = size_field("256MiB", "memory store byte budget")
    disk_path: str = option("", "directory of the disk tier under memory ('' = memory only)")
    disk_bytes: int = size_field("4GiB", "disk tier byte budget")
    event_loop: str = option(
        "auto", "uvloop, asyncio, or auto: asyncio with a disk tier (it has loop.sendfile)"
    )
    max_object_bytes: int = size_field("32MiB", "objects larger than this stream through uncached")
    connect_timeout: float = duration_field("2s", "upstream connect timeout")
    read_timeout: float = duration_field("10s", "upstream read timeout (between bytes)")
    upstream_connections: int = option(256, "max pooled connections per upstream")
    upstream_idle_timeout: float = duration_field(
        "4s", "close pooled upstream connections idle this long (under the parent's keep-alive)"
    )
    heuristic_max_age: float = duration_field(
        "1h", "cap on heuristic freshness (RFC 9111 §4.2.2) for responses without one"
    )
    targeted_cache_control: str = option(
        "", "this node's own targeted cache field, above CDN-Cache-Control (RFC 9213); '' = none"
    )
    negative_ttl: tuple[str, ...] = option(
        (), "freshness for these statuses without explicit freshness, e.g. 404=2s (repeatable)"
    )
    # -- miss storms: admission, shedding, origin budget, stale, failover ------------
    admission: str = option("tinylfu", "cache admission policy: tinylfu or lru")
    max_requests: int = option(4096, "concurrent client misses beyond which misses are shed")
    max_fills: int = option(256, "concurrent upstream fills beyond which misses are shed")
    retry_after: float = duration_field("1s", "Retry-After sent with a shed or budget 503")
    pass_ttl: float = duration_field(
        "30s", "how long an uncacheable answer sends its URL past fills"
    )
    stale_if_error: float = duration_field(
        "24h", "serve a stale copy this long past expiry when upstream fails (RFC 5861)"
    )
    stale_if_busy: float = duration_field(
        "30s", "serve a stale copy this long past expiry while the origin budget is spent"
    )
    origin_rate: float = option(0.0, "upstream fetches per second this node may start (0 = no cap)")
    origin_burst: int = option(50, "token bucket burst for --origin-rate")
    origin_concurrency: int = option(0, "upstream fetches in flight at once (0 = no cap)")
    origin_wait: float = duration_field("500ms", "longest wait for an origin token before a 503")
    fallback: str = option("", "URL used directly when every --upstream is down ('' = none)")
    breaker_min_requests: int = option(
        20, "requests to a parent within --breaker-window before its error rate can open it"
    )
    breaker_error_rate: float = option(0.5, "error rate over --breaker-window that opens it")
    breaker_window: float = duration_field("10s", "window for --breaker-error-rate")
    breaker_cooldown: float = duration_field("5s", "open time before a half-open probe")
    # -- operators: purge, pre-warm ---------------------------------------------------
    admin_token: str = option("", "token for mutating admin routes (purge, prewarm); '' = off")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.upstream:
            raise ValueError("at least one --upstream URL is required")
        for url in self.upstream:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"--upstream must be an http(s) URL, got {url!r}")
        if self.max_object_bytes > self.cache_bytes:
            object.__setattr__(self, "max_object_bytes", self.cache_bytes)
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ValueError(f"--event-loop must be auto, uvloop or asyncio: {self.event_loop!r}")
        if self.admission not in ("tinylfu", "lru"):
            raise ValueError(f"--admission must be tinylfu or lru, got {self.admission!r}")
        if self.fallback and not self.fallback.startswith(("http://", "https://")):
            raise ValueError(f"--fallback must be an http(s) URL, got {self.fallback!r}")
        for name in ("max_requests", "max_fills", "origin_burst", "breaker_min_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.origin_rate < 0 or self.origin_concurrency < 0:
            raise ValueError("--origin-rate and --origin-concurrency must not be negative")
        if self.upstream_idle_timeout <= 0:
            raise ValueError("--upstream-idle-timeout must be positive")
        if not 0 < self.breaker_error_rate <= 1:
            raise ValueError("--breaker-error-rate must be in (0, 1]")
        name = self.targeted_cache_control
        if name and (not _FIELD_NAME.fullmatch(name) or name.lower() == "cache-control"):
            raise ValueError(f"--targeted-cache-control must be a field name: {name!r}")
        self.negative_ttls()  # raises on a bad entry

    def negative_ttls(self) -> dict[int, float]:
        """``--negative-ttl`` as {status: seconds}; entries are ``STATUS=DURATION``."""
        ttls: dict[int, float] = {}
        for entry in (e for v in self.negative_ttl for e in v.replace(",", " ").split()):
            status, eq, duration = entry.partition("=")
            try:
                if not eq or not status.isdigit() or not 200 <= int(status) <= 599:
                    raise ValueError("need a final status")
                ttls[int(status)] = parse_duration(duration)
            except ValueError:
                raise ValueError(
                    f"--negative-ttl takes STATUS=DURATION (404=2s, 200..599): {entry!r}"
                ) from None
        return ttls
