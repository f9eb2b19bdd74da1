"""``tiercdn-origin``: serve a DASH library, make a sample title, package a video.

``serve`` takes every ``OriginSettings`` field as a flag, a ``TIERCDN_*``
env var or a key of its ``--config`` TOML file (read again on SIGHUP, and
applied live where it can be: ``origin.reload``), and runs on the stock asyncio
loop (it has ``loop.sendfile``, which ``web.FileResponse`` uses; uvloop does
not). ``sample`` and ``package`` fail
with one ``error: ...`` line and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from origin.app import METRICS_KEY, make_admin_app, make_app
from origin.packager import DEFAULT_LADDER, PackagingError, make_sample, package, parse_ladder
from origin.reload import reload
from origin.settings import OriginSettings
from shared.engine.tasks import spawn
from shared.service.connection import ConnectionLimits
from shared.service.run import configure_logging, run, serve
from shared.service.settings import Parser, add_arguments, add_config_argument, from_namespace
from shared.service.units import parse_duration

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; the process exit code."""
    ns = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = ns.func
    return command(ns)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="tiercdn-origin", description="tiercdn's DASH origin: serve, sample, package"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_cmd = commands.add_parser("serve", help="serve a library of DASH titles over HTTP")
    add_config_argument(serve_cmd)
    add_arguments(serve_cmd, OriginSettings)
    serve_cmd.set_defaults(func=_serve)

    sample_cmd = commands.add_parser("sample", help="make a synthetic test title")
    sample_cmd.add_argument(
        "--out", required=True, type=Path, help="title folder to create, e.g. library/sample"
    )
    sample_cmd.add_argument(
        "--duration", type=_arg(parse_duration), default=60.0, help="length (default 60s)"
    )
    _add_encoding_arguments(sample_cmd)
    sample_cmd.set_defaults(func=_sample)

    package_cmd = commands.add_parser("package", help="package your own video file")
    package_cmd.add_argument("input", type=Path, help="a video file ffmpeg can read")
    package_cmd.add_argument(
        "--out", required=True, type=Path, help="title folder to create, e.g. library/mytitle"
    )
    _add_encoding_arguments(package_cmd)
    package_cmd.set_defaults(func=_package)
    return parser


def _add_encoding_arguments(parser: argparse.ArgumentParser) -> None:
    default = ",".join(f"{r.height}:{r.bitrate // 1000}k" for r in DEFAULT_LADDER)
    parser.add_argument(
        "--ladder",
        type=_arg(parse_ladder),
        default=DEFAULT_LADDER,
        help=f"video rungs as HEIGHT:BITRATE,... (default {default})",
    )
    parser.add_argument(
        "--segment-seconds",
        type=_arg(parse_duration),
        default=2.0,
        help="segment length (default 2s)",
    )


def _serve(ns: argparse.Namespace) -> int:
    def read() -> OriginSettings:  # flags, env and --config file, now
        return from_namespace(OriginSettings, ns)

    settings = read()
    configure_logging(settings.log_level, settings.log_json, settings.access_log_file)
    try:
        app = make_app(settings)
    except FileNotFoundError as exc:
        print(
            f"error: {exc} (make one with: tiercdn-origin sample --out DIR/sample)", file=sys.stderr
        )
        return 2
    admin = make_admin_app(app)
    ready = f"{settings.name} ready on {_url(settings.host, settings.port)}"
    if settings.admin_port:
        ready += f" (admin {_url(settings.admin_host, settings.admin_port)}metrics)"

    def on_hup() -> None:
        spawn(reload(app, read), name="reload")

    async def serving() -> None:
        await serve(
            app,
            settings.host,
            settings.port,
            admin=admin,
            admin_host=settings.admin_host,
            admin_port=settings.admin_port,
            access_log=settings.access_log,
            ready_message=ready,
            limits=ConnectionLimits.of(settings),
            registry=app[METRICS_KEY].registry,
            name=settings.name,
            on_hup=on_hup,
        )

    return run(serving, use_uvloop=False)


def _sample(ns: argparse.Namespace) -> int:
    def make(bar: _Bar) -> Path:
        return make_sample(
            ns.out,
            duration=ns.duration,
            renditions=ns.ladder,
            segment_seconds=ns.segment_seconds,
            progress=bar,
        )

    return _packaging(f"sample {ns.out}", make)


def _package(ns: argparse.Namespace) -> int:
    def make(bar: _Bar) -> Path:
        return package(
            ns.input,
            ns.out,
            renditions=ns.ladder,
            segment_seconds=ns.segment_seconds,
            progress=bar,
        )

    return _packaging(f"package {ns.input}", make)


def _packaging(label: str, make: Callable[[_Bar], Path]) -> int:
    configure_logging("WARNING")
    signal.signal(signal.SIGTERM, _interrupt)  # stopped like Ctrl-C: ffmpeg stopped, no debris
    bar = _Bar(label, sys.stderr)
    started = time.monotonic()
    try:
        mpd = make(bar)
    except PackagingError as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.close()
        print("error: interrupted", file=sys.stderr)
        return 130
    bar.close()
    print(f"wrote {mpd} in {time.monotonic() - started:.1f}s")
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Bar:
    """A text progress bar on one terminal line: ``label [#####.....]  50%``."""

    def __init__(self, label: str, stream: TextIO, width: int = 30) -> None:
        self._label, self._stream, self._width = label, stream, width
        self._shown = -1  # percent last drawn

    def __call__(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, fraction)) * 100)
        if percent == self._shown:
            return
        self._shown = percent
        filled = self._width * percent // 100
        bar = "#" * filled + "." * (self._width - filled)
        self._stream.write(f"\r{self._label} [{bar}] {percent:3d}%")
        self._stream.flush()

    def close(self) -> None:
        if self._shown >= 0:
            self._stream.write("\n")
            self._stream.flush()
            self._shown = -1


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` that shows the parser's own error message."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


if __name__ == "__main__":
    sys.exit(main())
