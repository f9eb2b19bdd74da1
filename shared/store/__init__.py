"""Stores keep whole cached responses within a byte budget; they never speak HTTP."""

from shared.store.disk import DiskObject, DiskStore, send_file
from shared.store.memory import CachedObject, MemoryStore

__all__ = ["CachedObject", "DiskObject", "DiskStore", "MemoryStore", "send_file"]
