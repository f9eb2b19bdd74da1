"""Requests per object from a tier's access log: how often each URL reached that tier.

The load tests judge single flight from outside, as an operator would: the lines a
tier wrote for each URL path (``count_requests``, tiercdn's and nginx's format),
then, for a set of objects the viewers asked for, the requests that reached the
tier and the worst object (``object_requests``; the target is exactly one each).

Pure but for reading the file; an unreadable file counts nothing.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["Counts", "count_requests", "object_requests"]

Counts = dict[str, dict[int, int]]  # URL path -> {status: requests}
# an access line: ``client "METHOD target[ HTTP/1.1]" status`` (tiercdn's and the nginx format)
_LINE = re.compile(r'(\S+) "([A-Z]+) (\S+)[^"]*" (\d{3}) ')


def count_requests(path: Path, clients: Iterable[str] | None = None) -> Counts:
    """Requests per URL path and status in an access log, from ``clients`` only (all if
    None); an unreadable file counts nothing."""
    allowed = None if clients is None else set(clients)
    counts: Counts = collections.defaultdict(lambda: collections.defaultdict(int))
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    for line in text.splitlines():
        found = _LINE.search(line)
        if found is None or (allowed is not None and found[1] not in allowed):
            continue
        counts[found[3].partition("?")[0]][int(found[4])] += 1
    return {k: dict(v) for k, v in counts.items()}


def object_requests(counts: Counts, objects: Iterable[str]) -> dict[str, Any]:
    """The requests ``counts`` holds for ``objects``: in all, the most for one object, the
    objects asked more than once and never, and by status."""
    wanted = sorted(set(objects))
    per = [sum(counts.get(o, {}).values()) for o in wanted]
    statuses: dict[str, int] = collections.Counter()
    for o in wanted:
        for status, n in counts.get(o, {}).items():
            statuses[str(status)] += n
    return {
        "objects": len(wanted),
        "requests": sum(per),
        "max_per_object": max(per, default=0),
        "objects_over_one": sum(n > 1 for n in per),
        "objects_missing": sum(n == 0 for n in per),
        "by_status": dict(sorted(statuses.items())),
    }
