"""What a tier's process uses, from ``/proc``: resident memory and CPU time.

Linux only; where ``/proc`` does not answer (another OS, a process gone) the
figure is None, which the JSON summaries keep as ``null``. CPU time comes in
clock ticks (usually 10 ms), so short rounds read in steps of 10 ms.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "rss_bytes"]


def rss_bytes(pid: int, field: str = "VmRSS") -> int | None:
    """``VmRSS`` (or ``VmHWM``, the peak) of ``pid`` from ``/proc``, or None if unavailable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of ``pid`` so far (``/proc/<pid>/stat``), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
