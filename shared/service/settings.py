"""Typed, frozen settings built once from env vars with CLI flags on top.

Every field of a settings dataclass is a flag ``--field-name`` and an env var
``TIERCDN_FIELD_NAME``; the flag wins over the env var, which wins over the
default. A field's ``metadata`` carries its help text and, for sizes and
durations, the parser (``parse_size`` / ``parse_duration``). Tuple fields take
the flag several times, or a comma/space separated env var.

``--config FILE`` (or ``TIERCDN_CONFIG``) names a TOML file whose keys are the
flag names (``cache-bytes`` or ``cache_bytes``); it sits under env vars and
over the defaults: flag > env > file > default. Every bad value is one line
naming where it came from: the flag, the env var, or the file and key.
Boolean env vars take only true/false/1/0/yes/no/on/off; an unknown
``TIERCDN_*`` variable is warned about (one stderr line) with the closest
known name.

This module and ``service.py`` are the only readers of ``os.environ``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from shared.service.handoff import SUPERVISOR_ENV
from shared.service.units import format_size, parse_duration, parse_size
from shared.store.memory import POLICIES

__all__ = [
    "CacheSettings",
    "Parser",
    "ServiceSettings",
    "add_arguments",
    "add_config_argument",
    "duration_field",
    "env_name",
    "from_namespace",
    "load",
    "option",
    "read_config",
    "size_field",
]

ENV_PREFIX = "TIERCDN_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
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


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line, not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE``: a TOML file of settings under env vars and flags."""
    parser.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        default=None,
        help=f"TOML file of settings, keys as the flag names (under env, flags) [env {CONFIG_ENV}]",
    )


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
    """Build ``cls`` from parsed flags, then env vars, then the ``--config`` file,
    then ``overrides``, then defaults."""
    env = os.environ if env is None else env
    _warn_unknown_env(cls, env)
    values: dict[str, Any] = dict(overrides)
    path = getattr(ns, "config_file", None) or env.get(CONFIG_ENV)
    if path:
        values.update(read_config(cls, path))
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        raw, source = getattr(ns, f.name, None), "--" + f.name.replace("_", "-")
        if raw is None and env_name(f.name) in env:
            raw, source = env[env_name(f.name)], env_name(f.name)
            if str(f.type).startswith("tuple"):
                raw = [part for part in raw.replace(",", " ").split() if part]
        if raw is None:
            continue
        values[f.name] = _convert(f, raw, source)
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
    parser = Parser(prog=prog, description=description)
    add_config_argument(parser)
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


def read_config(
    cls: type[Any], path: str, table: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The settings of ``cls`` in the TOML file ``path`` (or in ``table``, one of its
    sections), converted; an unknown key or a bad value ends the program naming
    the file, the key and the value."""
    if table is None:
        try:
            with open(path, "rb") as file:
                table = tomllib.load(file)
        except OSError as exc:
            raise SystemExit(f"error: {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SystemExit(f"error: {path}: not TOML: {exc}") from None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        f = fields.get(key.replace("-", "_"))
        if f is None:
            close = difflib.get_close_matches(key.replace("-", "_"), fields, n=1)
            hint = f" (did you mean {close[0].replace('_', '-')}?)" if close else ""
            raise SystemExit(f"error: {path}: unknown key {key} = {value!r}{hint}")
        values[f.name] = _convert(
            f, _from_toml(f, value, f"{path}: {key} = {value!r}"), f"{path}: {key}"
        )
    return values


def _from_toml(f: dataclasses.Field[Any], value: Any, where: str) -> Any:
    """A TOML value as the text or list a flag would give, or an error if its type is wrong."""
    kind = str(f.type)
    if kind.startswith("tuple"):
        items = value if isinstance(value, list) else [value]
        if all(isinstance(v, str) for v in items):
            return list(items)
        raise SystemExit(f"error: {where}: expected a string or a list of strings")
    if kind in ("bool", str(bool)):
        if isinstance(value, bool):
            return value
        raise SystemExit(f"error: {where}: expected true or false")
    if f.metadata.get("parse") is not None:  # a size or a duration: "512MiB", "2s" or a number
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
    elif kind in ("int", str(int)):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind in ("float", str(float)):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise SystemExit(f"error: {where}: expected {_expected(f)}")
    return value


def _expected(f: dataclasses.Field[Any]) -> str:
    parse = f.metadata.get("parse")
    if parse is parse_size:
        return 'a size such as "512MiB"'
    if parse is parse_duration:
        return 'a duration such as "2s"'
    return {"int": "an integer", "float": "a number"}.get(str(f.type), "a string (in quotes)")


def _convert(f: dataclasses.Field[Any], raw: Any, source: str | None = None) -> Any:
    """``raw`` (flag text, env text, a TOML value) as the field's type; an error names
    ``source`` (the flag, the env var, or the file and key) and the value."""
    parse = f.metadata.get("parse")
    kind = str(f.type)
    source = source or "--" + f.name.replace("_", "-")
    try:
        if isinstance(raw, list):
            return tuple(parse(v) if parse else v for v in raw)
        if parse is not None:
            return parse(raw)
        if kind in ("bool", str(bool)) and isinstance(raw, str):
            text = raw.strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError("expected true/false, 1/0, yes/no or on/off")
            return text in _TRUE
        if kind in ("int", str(int)):
            try:
                return int(raw)
            except ValueError:
                raise ValueError("expected an integer") from None
        if kind in ("float", str(float)):
            try:
                return float(raw)
            except ValueError:
                raise ValueError("expected a number") from None
    except ValueError as exc:
        hint = "; see --help" if source.startswith("--") else ""
        raise SystemExit(f"error: {source} {raw!r}: {exc}{hint}") from None
    return raw


def _warn_unknown_env(cls: type[Any], env: Mapping[str, str]) -> None:
    """One stderr line per ``TIERCDN_*`` variable no service's settings know, with the
    closest name ``cls`` knows (a typo like ``TIERCDN_EDGEPORT`` is otherwise silent)."""
    if not issubclass(cls, ServiceSettings):
        return
    own = [env_name(f.name) for f in dataclasses.fields(cls)]
    known = {CONFIG_ENV, *SUPERVISOR_ENV, *own, *(env_name(n) for n in _known_fields())}
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, own, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            print(f"warning: {name} is not a setting here (ignored){hint}", file=sys.stderr)


def _known_fields() -> set[str]:
    """Field names of every settings dataclass defined so far (the other tiers' too)."""
    names: set[str] = set()
    stack: list[type[Any]] = [ServiceSettings]
    while stack:
        cls = stack.pop()
        names.update(f.name for f in dataclasses.fields(cls))
        stack.extend(cls.__subclasses__())
    return names


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
    access_log_file: str = option(
        "", "append access lines to this file, reopened on SIGUSR1 (implies --access-log)"
    )
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
    max_object_bytes: int = size_field(
        "32MiB", "objects larger than this are not kept in memory (at most --cache-bytes)"
    )
    disk_max_object_bytes: int = size_field(
        "32MiB", "objects larger than this are not stored on the disk tier (at most --disk-bytes)"
    )
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
    admission: str = option("tinylfu", "cache admission policy: tinylfu, adaptive or lru")
    max_requests: int = option(16384, "concurrent client misses beyond which misses are shed")
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
    # -- a point of presence: workers and peers (owner routing) -------------------------
    workers: str = option(
        "1",
        "processes serving --port together (SO_REUSEPORT), each owning a share of the "
        "objects; a number or auto (one per core)",
    )
    peer: tuple[str, ...] = option(
        (),
        "URL of another node of this point of presence (repeatable): a miss of an object "
        "it owns (rendezvous hashing) is asked of it before any parent",
    )
    peers_dns: str = option(
        "",
        "NAME or NAME:PORT whose A/AAAA records are the peers, re-resolved every "
        "--dns-refresh (a Kubernetes headless Service); '' = none",
    )
    peer_url: str = option(
        "",
        "this node's own URL as its peers name it ('' = http://HOST:PORT; with "
        "--peers-dns: http://ADDRESS:PORT of a local address among the records)",
    )
    upstream_dns: str = option(
        "",
        "NAME or NAME:PORT whose A/AAAA records are the parents, re-resolved every "
        "--dns-refresh (with or instead of --upstream); '' = none",
    )
    dns_refresh: float = duration_field("5s", "how often --peers-dns and --upstream-dns resolve")
    # -- operators: purge, pre-warm ---------------------------------------------------
    admin_token: str = option("", "token for mutating admin routes (purge, prewarm); '' = off")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.upstream and not self.upstream_dns:
            raise ValueError("at least one --upstream URL (or --upstream-dns) is required")
        for flag, urls in (("--upstream", self.upstream), ("--peer", self.peer)):
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"{flag} must be an http(s) URL, got {url!r}")
        if self.peer_url and not self.peer_url.startswith(("http://", "https://")):
            raise ValueError(f"--peer-url must be an http(s) URL, got {self.peer_url!r}")
        self.worker_count()  # raises on a bad value
        for flag, name in (("--peers-dns", self.peers_dns), ("--upstream-dns", self.upstream_dns)):
            host, _, port = name.rpartition(":") if ":" in name else (name, "", "")
            if name and (not host or (port and not port.isdigit())):
                raise ValueError(f"{flag} takes NAME or NAME:PORT, got {name!r}")
        if self.dns_refresh <= 0:
            raise ValueError("--dns-refresh must be positive")
        if self.max_object_bytes > self.cache_bytes:
            object.__setattr__(self, "max_object_bytes", self.cache_bytes)
        if self.disk_max_object_bytes > self.disk_bytes:  # not the memory budget: its own
            object.__setattr__(self, "disk_max_object_bytes", self.disk_bytes)
        if self.event_loop not in ("auto", "uvloop", "asyncio"):
            raise ValueError(f"--event-loop must be auto, uvloop or asyncio: {self.event_loop!r}")
        if self.admission not in POLICIES:
            raise ValueError(f"--admission must be one of {POLICIES}, got {self.admission!r}")
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

    def worker_count(self) -> int:
        """``--workers`` as a number (``auto``: the cores this process may use)."""
        if self.workers == "auto":
            return (
                len(os.sched_getaffinity(0))
                if hasattr(os, "sched_getaffinity")
                else (os.cpu_count() or 1)
            )
        if not self.workers.isdigit() or not 1 <= int(self.workers) <= 256:
            raise ValueError(
                f"--workers takes a number from 1 to 256 or auto, got {self.workers!r}"
            )
        return int(self.workers)

    @property
    def own_url(self) -> str:
        """This node as its peers name it: ``--peer-url``, else ``http://HOST:PORT``."""
        return self.peer_url or f"http://{self.host}:{self.port}"

    @property
    def stored_object_bytes(self) -> int:
        """The largest object any tier stores (a fill keeps at most this many bytes)."""
        disk = self.disk_max_object_bytes if self.disk_path else 0
        return max(self.max_object_bytes, disk)

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
