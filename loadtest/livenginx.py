"""An nginx chain to compare with: edge nginx -> regional nginx -> the tiercdn origin.

Each nginx is one master and one worker run as the current user (``-p`` prefix in a
temporary folder, ``daemon off``, loopback ports from the OS), caching with
``proxy_cache`` and ``proxy_cache_lock on`` (one upstream request per key at a
time; the others wait for the whole object, polling every 500 ms), keep-alive
upstream connections, an access log per node. The regional connects to the origin
from ``NGINX_SOURCE`` (another loopback address), so the origin's access log tells
its requests from tiercdn's.

``nginx_binary`` is None when no ``nginx`` is on PATH: the comparison is skipped.
``NginxChain`` stops both nodes (SIGTERM, then SIGKILL) when its block ends.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from loadtest.topology import HOST, free_ports

__all__ = ["NGINX_SOURCE", "NginxChain", "NginxNode", "nginx_binary", "nginx_config"]

NGINX_SOURCE = "127.0.0.3"  # the regional nginx's address towards the origin
_READY_SECONDS = 10.0


def nginx_binary() -> str | None:
    """The ``nginx`` on PATH (or in /usr/sbin), or None."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def nginx_config(prefix: Path, port: int, upstream: str, source: str | None) -> str:
    """One caching proxy node listening on ``HOST:port`` in front of ``upstream``
    (``host:port``), everything under ``prefix``."""
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""  # else: nobody
    bind = f"      proxy_bind {source};\n" if source else ""
    return f"""{user}worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  log_format cdn '$remote_addr "$request" $status $body_bytes_sent "$upstream_cache_status"';
  access_log {prefix}/access.log cdn;
  client_body_temp_path {prefix}/tmp/body;
  proxy_temp_path {prefix}/tmp/proxy;
  fastcgi_temp_path {prefix}/tmp/fastcgi;
  uwsgi_temp_path {prefix}/tmp/uwsgi;
  scgi_temp_path {prefix}/tmp/scgi;
  default_type application/octet-stream;
  keepalive_timeout 75s;
  keepalive_requests 100000;
  proxy_cache_path {prefix}/cache levels=1:2 keys_zone=live:32m max_size=2g inactive=10m
                   use_temp_path=off;
  upstream parent {{ server {upstream}; keepalive 256; }}
  server {{
    listen {HOST}:{port} backlog=4096;
    location / {{
      proxy_pass http://parent;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
{bind}      proxy_cache live;
      proxy_cache_key $uri;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status;
    }}
  }}
}}
"""


class NginxNode:
    """One running nginx: its port, its master's pid, its access log."""

    def __init__(self, binary: str, prefix: Path, port: int, upstream: str,
                 source: str | None) -> None:  # fmt: skip
        self.prefix, self.port = prefix, port
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(nginx_config(prefix, port, upstream, source))
        self.log = prefix / "access.log"
        with (prefix / "stderr.log").open("wb") as err:
            self.proc = subprocess.Popen(
                [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True,
            )  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def pids(self) -> list[int]:
        """The master and its workers."""
        try:
            kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            kids = ""
        return [self.proc.pid, *(int(k) for k in kids.split())]

    def wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                if len(self.pids()) > 1:  # a worker to answer
                    return
            time.sleep(0.05)
        raise RuntimeError(f"nginx on {self.port} did not start: {self.error_tail()}")

    def error_tail(self) -> str:
        text = ""
        for name in ("stderr.log", "error.log"):
            with contextlib.suppress(OSError):
                text += (self.prefix / name).read_text()[-1000:]
        return text.strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def __repr__(self) -> str:
        return f"<NginxNode {self.url} pids {self.pids()}>"


class NginxChain:
    """edge nginx -> regional nginx -> ``origin`` (``host:port``), in a temporary folder."""

    def __init__(self, binary: str, origin: str) -> None:
        self.binary, self.origin = binary, origin
        self.regional: NginxNode | None = None
        self.edge: NginxNode | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> NginxChain:
        try:
            root = Path(
                self._stack.enter_context(tempfile.TemporaryDirectory(prefix="tiercdn-nginx-"))
            )
            os.chmod(root, 0o755)
            regional_port, edge_port = free_ports(2)
            self.regional = NginxNode(self.binary, root / "regional", regional_port, self.origin,
                                      NGINX_SOURCE)  # fmt: skip
            self._stack.callback(self.regional.stop)
            self.regional.wait_ready()
            self.edge = NginxNode(self.binary, root / "edge", edge_port,
                                  f"{HOST}:{regional_port}", None)  # fmt: skip
            self._stack.callback(self.edge.stop)
            self.edge.wait_ready()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def __repr__(self) -> str:
        return f"<NginxChain edge {self.edge!r} regional {self.regional!r}>"


@contextlib.contextmanager
def nginx_chain(binary: str, origin: str) -> Iterator[NginxChain]:
    with NginxChain(binary, origin) as chain:
        yield chain
