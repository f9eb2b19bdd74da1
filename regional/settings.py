"""The regional's settings: the common cache settings (its shield policies, the
origin budget and a large disk tier, are defaults of common settings)."""

from __future__ import annotations

import dataclasses

from shared.service.settings import CacheSettings

__all__ = ["RegionalSettings"]


@dataclasses.dataclass(frozen=True)
class RegionalSettings(CacheSettings):
    """A regional node (origin shield): edges ask it; its misses go to the origin."""
