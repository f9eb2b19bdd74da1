"""Rendezvous (highest-random-weight) ordering of parents for a cache key.

Pure. Each key gets a stable order over the parents; removing one parent only
moves the keys that lived on it [Thaler & Ravishankar 1998].
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = ["rendezvous_order"]


def _weight(parent: str, key: str) -> int:
    digest = hashlib.blake2b(f"{parent}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(parents: Sequence[str], key: str) -> list[str]:
    """``parents`` sorted by descending weight for ``key`` (first = owner)."""
    if len(parents) <= 1:
        return list(parents)
    return sorted(parents, key=lambda p: _weight(p, key), reverse=True)
