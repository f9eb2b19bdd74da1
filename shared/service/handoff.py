"""Listening sockets handed to a node by its supervisor, and the node's ready pipe.

``tiercdn up`` binds every tier's listening sockets itself and hands them to
the tier it starts (nginx hands its listeners to a new binary the same way).
A graceful restart starts a second process on the *same* sockets, waits for it
to say it is ready, then stops the old one, which stops accepting and drains:
connections waiting in the accept queue are taken by the new process, none is
refused or reset. (Two sockets bound with ``SO_REUSEPORT`` would each have a
queue of their own, and closing the old one resets whatever waits in it.)

Environment variables carry this, set by the supervisor only (``tiercdn up``, or
a node's own ``--workers`` supervisor, ``shared.service.workers``):

- ``TIERCDN_LISTEN_FDS="HOST:PORT=FD,..."``: a listener for ``HOST:PORT`` serves
  the inherited socket ``FD`` instead of binding;
- ``TIERCDN_READY_FD=FD``: the write end of a pipe; ``ready()`` writes
  ``ready\\n`` to it and closes it once every listener accepts.

- ``TIERCDN_WORKER=I/N``: this process is worker I of N of a ``--workers`` node;
- ``TIERCDN_ALSO_LISTEN=HOST:PORT``: the worker's own address besides the shared
  port (its siblings ask it there), inherited in ``TIERCDN_LISTEN_FDS`` too;
- ``TIERCDN_SIBLINGS=URL,URL,...``: the worker's own URL there, then the other
  workers' (owner routing between the workers of one machine).

They are read once, and ignored (with one warning) when malformed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

__all__ = [
    "ALSO_LISTEN_ENV",
    "SIBLINGS_ENV",
    "LISTEN_FDS_ENV",
    "READY_FD_ENV",
    "SUPERVISOR_ENV",
    "WORKER_ENV",
    "also_listen",
    "inherited",
    "listen_fds",
    "ready",
    "siblings",
    "worker",
]

log = logging.getLogger(__name__)

LISTEN_FDS_ENV = "TIERCDN_LISTEN_FDS"
READY_FD_ENV = "TIERCDN_READY_FD"
WORKER_ENV = "TIERCDN_WORKER"  # "I/N": worker I of N; it serves, it never supervises
ALSO_LISTEN_ENV = "TIERCDN_ALSO_LISTEN"  # "HOST:PORT": a worker's own address (its peers')
SIBLINGS_ENV = "TIERCDN_SIBLINGS"  # "OWN_URL,OTHER_URL,...": the workers of this machine
SUPERVISOR_ENV = frozenset(
    {LISTEN_FDS_ENV, READY_FD_ENV, WORKER_ENV, ALSO_LISTEN_ENV, SIBLINGS_ENV}
)


def listen_fds(sockets: dict[tuple[str, int], int]) -> str:
    """``TIERCDN_LISTEN_FDS``'s value for ``{(host, port): fd}``."""
    return ",".join(f"{host}:{port}={fd}" for (host, port), fd in sockets.items())


def _parse(value: str) -> dict[tuple[str, int], int]:
    found: dict[tuple[str, int], int] = {}
    for item in filter(None, value.split(",")):
        address, _, fd = item.rpartition("=")
        host, _, port = address.rpartition(":")
        found[(host, int(port))] = int(fd)
    return found


def inherited(host: str | None, port: int) -> socket.socket | None:
    """The listening socket handed over for ``host:port``, or None: bind it yourself.
    Each is taken once (a second listener on the same address binds, and fails)."""
    value = os.environ.get(LISTEN_FDS_ENV, "")
    if not value or not port:
        return None
    try:
        fds = _parse(value)
    except ValueError:
        log.warning("%s=%r is malformed; binding instead", LISTEN_FDS_ENV, value)
        return None
    fd = fds.pop((host or "", port), None)
    if fd is None:
        return None
    os.environ[LISTEN_FDS_ENV] = listen_fds(fds)
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        log.warning("inherited socket %d for %s:%d: %s; binding instead", fd, host, port, exc)
        return None
    sock.setblocking(False)
    return sock


def also_listen() -> list[tuple[str, int]]:
    """The address a worker serves besides the shared port (``TIERCDN_ALSO_LISTEN``)."""
    value = os.environ.get(ALSO_LISTEN_ENV, "")
    host, _, port = value.rpartition(":")
    if not value or not port.isdigit():
        return []
    return [(host, int(port))]


def worker() -> tuple[int, int] | None:
    """(I, N) when this process is worker I of N (``TIERCDN_WORKER``), else None."""
    index, _, count = os.environ.get(WORKER_ENV, "").partition("/")
    if not index.isdigit() or not count.isdigit() or int(index) >= int(count):
        return None
    return int(index), int(count)


def siblings() -> tuple[str, list[str]] | None:
    """(this worker's URL, the other workers' URLs), from ``TIERCDN_SIBLINGS``."""
    urls = [u for u in os.environ.get(SIBLINGS_ENV, "").split(",") if u]
    return (urls[0], urls[1:]) if urls else None


def ready() -> None:
    """Tell the supervisor (if one waits on ``TIERCDN_READY_FD``) this node serves."""
    value = os.environ.pop(READY_FD_ENV, "")
    if not value:
        return
    try:
        fd = int(value)
    except ValueError:
        log.warning("%s=%r is not a descriptor", READY_FD_ENV, value)
        return
    with contextlib.suppress(OSError):
        os.write(fd, b"ready\n")
    with contextlib.suppress(OSError):
        os.close(fd)
