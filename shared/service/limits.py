"""Process limits, lifted before a process opens many sockets.

A flash crowd is thousands of sockets, one file descriptor each, and the soft
``RLIMIT_NOFILE`` is often 1024. Any process may raise its soft limit up to
the hard one, so a node (``shared.service.run``) and a load generator
(``loadtest.storm``) do so at start. Best effort: where the kernel refuses
(a hard limit of ``RLIM_INFINITY`` above ``fs.nr_open``), the limit stays.
"""

from __future__ import annotations

import contextlib
import resource

__all__ = ["raise_fd_limit"]


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
