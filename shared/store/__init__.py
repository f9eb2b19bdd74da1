"""Stores keep whole cached responses within a byte budget; they never speak HTTP."""

from shared.store.memory import CachedObject, MemoryStore

__all__ = ["CachedObject", "MemoryStore"]
