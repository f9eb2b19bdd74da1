"""Stores keep whole cached responses within a byte budget; they never speak HTTP."""

from shared.store.base import Store
from shared.store.disk import DiskStore
from shared.store.entry import CachedObject, FileBody
from shared.store.memory import MemoryStore
from shared.store.tiered import TieredStore

__all__ = ["CachedObject", "DiskStore", "FileBody", "MemoryStore", "Store", "TieredStore"]
