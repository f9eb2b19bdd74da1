"""The memory store: whole responses by cache key, within a byte budget.

One entry per primary key (the request target) holding its variants (RFC 9111
§4.1: one per Vary key). Serving headers are prepared once at store time so
the hit path copies, never builds.

Invariants: ``bytes <= capacity`` after every call (an entry larger than the
budget, or under tinylfu and adaptive than main's share of it at a 1 % window,
is refused); ``lookup`` is the only call that counts an access.

Three policies, all with entries in LRU lists (``OrderedDict``, oldest first):

- ``lru``: one list the size of the budget; the oldest entries are evicted.
- ``tinylfu``: W-TinyLFU [Einziger et al. 2017; Caffeine]. New entries go to a
  small LRU *window* (1 % of the budget) so brand-new objects (a fresh live
  segment) can be served at all. An entry pushed out of the window is a
  *candidate* for the *main* segment, an SLRU (probation, and protected:
  80 % of main, reached by a hit in probation). If main lacks room, victims
  are gathered from its LRU end (probation, then protected) until the
  candidate fits, and ``TinyLfu.admit`` decides: the victims go, or the
  candidate does. A big candidate must beat every victim it displaces.
  The window's share is reserved (main gets the rest), so the two together
  never pass the budget. A replaced entry (new variant, revalidation) starts
  again in the window. The sketch is sized for twice the entries held and
  grown (keeping its counts) as they grow; its few bytes per entry are not
  charged to the budget.
- ``adaptive``: tinylfu whose recency bias a ``HillClimber`` sets from the hit
  rate of each sample, a sample being one period of the sketch (from one
  reset to the next, as in Caffeine, so the resets' rhythm is never mistaken
  for the workload's). At its position p in [0, 1]:
  the window takes 1 % + p x 2 % of the budget, taken from protected
  (probation keeps its share) [Caffeine]; and a candidate refused while its
  key was among the last 0.15 + p x 0.45 refusals per entry held is let in:
  a second chance, as S3-FIFO's ghost queue gives a recently evicted object
  [Yang et al., SOSP 2023] (the ghosts are key hashes, not charged to the
  budget). Second chances are gated on what they
  earn: only while entries they let in are hit again on probation at least 1.2x
  as often as entries the sketch admitted (on a static catalog the two are alike
  and the gate closes; when new episodes drop, second chances earn about twice
  as often). When neither recency bias pays in a sample (the window's hits per
  byte below the whole store's, and the gate closed), the climber leans one
  step toward frequency (``HillClimber.lean``): alone, it cannot tell a flat
  landscape from a frequency-heavy one. A new window size is reached a bounded
  number of entries per lookup (``_TRANSFER``): a growing window takes main's
  LRU end, a shrinking one hands its LRU end to probation, without an admission
  test, and every limit moves with the bytes moved. Per lookup: two counter increments and
  two compares more than tinylfu. ``loadtest/zipf.py`` measures it.

``resize`` takes a new budget (and policy) live: growing raises the limits;
shrinking evicts by the policy's own order (main's LRU end, probation first,
then the window's overflow offered to main as usual) until ``bytes <=
capacity`` again, and folds the sketch for the entries left (``TinyLfu.shrink``).
A new policy keeps the entries, rebuilt in recency order (main's LRU end,
protected, window): under lru one list; under tinylfu or adaptive all on
probation (none has been hit since admission) with a fresh sketch (and
climber at 0); adaptive resized keeps its climber's position. Eviction only drops
references: a body being sent is bytes (or, on disk, a file already open) and
is sent whole.

Every variant that leaves the store (evicted, refused, replaced, removed,
cleared, resized out) is handed to ``on_release`` once, so a store that keeps
bodies elsewhere (``store/disk.py``) can free them; the policy itself stays here.

``cachetools.LRUCache`` is not used: it evicts inside ``__setitem__`` and never
shows the victims, and admission has to see them before anything is evicted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import IO

from shared.policy.admission import TinyLfu
from shared.policy.climber import HillClimber
from shared.store.entry import CachedObject

__all__ = ["POLICIES", "CachedObject", "MemoryStore"]

POLICIES = ("lru", "tinylfu", "adaptive")
_WINDOW = 0.01  # share of the budget for the admission window [Caffeine's initial 1 %]
_PROTECTED = 0.8  # share of main for entries hit since admission [Caffeine]
_PROBATION = (1 - _WINDOW) * (1 - _PROTECTED)  # probation's share: fixed as the window moves
_SKETCH_MIN = 64  # objects the first sketch is sized for; it grows with the store
_WINDOW_MAX = 0.03  # adaptive: the window's share at the climber's most recency-biased
_GHOSTS = (0.15, 0.6)  # adaptive: refused candidates remembered per entry held, at 0 and 1
_GATE_MIN = 32  # adaptive: second chances before their hits can close the gate
_GATE = 1.2  # adaptive: second chances must earn probation hits this much as often as admissions
_TRANSFER = 64  # entries moved per lookup while the window is resized (bounded CPU)


class _Segment:
    """One LRU list of entries (oldest first) and the bytes they are charged."""

    __slots__ = ("bytes", "entries", "limit", "sizes")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # bytes beyond which the segment overflows
        self.entries: OrderedDict[str, list[CachedObject]] = OrderedDict()
        self.sizes: dict[str, int] = {}
        self.bytes = 0

    def add(self, key: str, variants: list[CachedObject], size: int) -> None:
        """Append ``key`` as the most recently used (it must not be here)."""
        self.entries[key] = variants
        self.sizes[key] = size
        self.bytes += size

    def pop(self, key: str) -> tuple[list[CachedObject], int]:
        size = self.sizes.pop(key)
        self.bytes -= size
        return self.entries.pop(key), size

    def oldest(self) -> str:
        return next(iter(self.entries))


class MemoryStore:
    """Variants by primary key within ``capacity`` bytes; ``policy`` is one of ``POLICIES``."""

    def __init__(
        self,
        capacity: int,
        policy: str = "lru",
        *,
        on_release: Callable[[list[CachedObject]], None] | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.capacity = capacity
        self.policy = policy
        self._on_release = on_release  # told of every variant that leaves the store
        # guarded by: single event loop (every field below)
        self.evictions = 0  # entries dropped for room: main victims and refused candidates
        self.admitted = 0  # window candidates let into main
        self.rejected = 0  # window candidates refused (also counted in evictions)
        self._index: dict[str, _Segment] = {}
        self._sketch: TinyLfu | None = None
        self._climber: HillClimber | None = None
        self._ghosts: OrderedDict[int, bool] = OrderedDict()  # adaptive: hashes of refused keys
        self._fresh: dict[str, bool] = {}  # adaptive: admitted, not hit since; by a second chance?
        self._earned = [0.0, 0.0, 0.0, 0.0]  # adaptive: admitted, then hit; second chances
        self._sampled = 0  # lookups since the climber's last sample
        self._sample_resets = 0  # the sketch's resets when that sample began
        self._sample_hits = 0  # of which hits (counted under every policy: one increment)
        self._window_hits = 0  # of which in the window
        self._resizing = False  # the window is being moved to ``_target`` bytes
        if policy == "lru":
            self._window = _Segment(capacity)  # everything lives in the window
        else:
            self._window = _Segment(max(int(capacity * _WINDOW), 1))
            self._sketch = TinyLfu(_SKETCH_MIN)
        # The window's share is reserved, so window + main never exceed the budget.
        self._main = capacity - self._window.limit
        self._probation = _Segment(self._main)  # no limit of its own: main minus protected
        self._protected = _Segment(self._protected_limit())
        self._target = self._window.limit
        if policy == "adaptive":
            self._climber = HillClimber()

    def lookup(self, key: str) -> list[CachedObject]:
        """The stored variants of ``key`` (most recent first), touching it.

        Call once per client request, hit or miss: it is what the policy counts."""
        if self._sketch is not None:
            self._sketch.record(key)
            if self._climber is not None:  # adaptive: sample the hit rate, move the window
                if self._resizing:
                    self._transfer(_TRANSFER)
                if self._sketch.resets != self._sample_resets:  # a sketch period is over
                    self._climb()
                self._sampled += 1
        seg = self._index.get(key)
        if seg is None:
            return []
        self._sample_hits += 1
        if seg is self._probation:  # a second use since admission: protect it
            if self._climber is not None:
                chance = self._fresh.pop(key, None)
                if chance is not None:
                    self._earned[3 if chance else 1] += 1
            variants, size = seg.pop(key)
            self._protect(key, variants, size)
            return variants
        if seg is self._window:
            self._window_hits += 1
        seg.entries.move_to_end(key)
        return seg.entries[key]

    def peek(self, key: str) -> list[CachedObject]:
        """The stored variants of ``key``, neither touching nor counting it."""
        seg = self._index.get(key)
        return [] if seg is None else seg.entries[key]

    def put(self, obj: CachedObject, *, same_body_as: CachedObject | None = None) -> bool:
        """Store ``obj``, replacing the variant with the same Vary key (``same_body_as``
        is for stores that keep bodies elsewhere: here every body is ``obj.body``).

        Returns False when it cannot fit at all: larger than the budget (tinylfu:
        than the main segment's share). Under tinylfu a stored entry may still be
        refused later, when it leaves the window."""
        others = [
            v
            for v in self.peek(obj.key)
            if v.vary_key != obj.vary_key and v.vary_names == obj.vary_names
        ]
        variants = [obj, *others]
        size = sum(v.size for v in variants)
        if size > self.largest:
            return False
        # a replaced entry starts again as the newest, in the window
        self._release([v for v in self._drop(obj.key) if all(v is not o for o in others)])
        self._index[obj.key] = self._window
        self._window.add(obj.key, variants, size)
        self._drain_window()
        return True

    def resize(self, capacity: int, policy: str | None = None) -> None:
        """Take a new byte budget (and admission ``policy``) live; see the module notes."""
        policy = self.policy if policy is None else policy
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        shrunk, switched = capacity < self.capacity, policy != self.policy
        self.capacity, self.policy = capacity, policy
        window = capacity if policy == "lru" else max(int(capacity * _WINDOW), 1)
        if self._climber is not None and not switched:  # adaptive keeps its position
            window = self._window_for(self._climber.position)
        self._main = capacity - window
        self._window.limit, self._probation.limit = window, self._main
        if switched:
            self._rebuild()
        self._protected.limit = self._protected_limit()
        self._target, self._resizing = window, False
        while self._probation.bytes + self._protected.bytes > self._main:
            seg = self._probation if self._probation.entries else self._protected
            self._evict(seg.oldest())
        self._demote()
        self._drain_window()
        if shrunk and self._sketch is not None and not switched:
            self._sketch.shrink(max(_SKETCH_MIN, 2 * len(self._index)))

    def reconfigure(self, *, memory: int, disk: int, policy: str) -> None:
        """The Store interface: a memory store takes ``memory`` (it has no disk tier)."""
        self.resize(memory, policy)

    def remove(self, key: str, vary_key: tuple[str, ...] | None = None) -> int:
        """Drop ``key`` (one variant, or all when ``vary_key`` is None)."""
        seg = self._index.get(key)
        if seg is None:
            return 0
        variants = seg.entries[key]
        kept = [] if vary_key is None else [v for v in variants if v.vary_key != vary_key]
        if not kept:
            self._release(self._drop(key))
        elif len(kept) < len(variants):  # shrinks in place: no room needed, no recency change
            size = sum(v.size for v in kept)
            seg.entries[key] = kept
            seg.bytes += size - seg.sizes[key]
            seg.sizes[key] = size
            self._release([v for v in variants if v.vary_key == vary_key])
        return len(variants) - len(kept)

    def clear(self) -> None:
        """Drop every entry; the sketch keeps what it learned about popularity."""
        released = list(self)
        for seg in self._segments():
            seg.entries.clear()
            seg.sizes.clear()
            seg.bytes = 0
        self._index.clear()
        self._fresh.clear()
        self._release(released)

    # -- the rest of the Store interface: every body here is in memory -------------

    @property
    def disk(self) -> None:
        return None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def open_body(self, obj: CachedObject) -> tuple[IO[bytes], int] | None:
        raise TypeError(f"{obj.key!r}: a memory store's bodies are bytes, never files")

    async def read_body(self, obj: CachedObject) -> bytes | None:
        assert isinstance(obj.body, bytes)
        return obj.body

    def served(self, obj: CachedObject) -> None:
        return None

    @property
    def largest(self) -> int:
        """The most bytes one entry (all its variants) may be charged: the budget, or
        under tinylfu main's share of it (adaptive: main's share at the smallest window,
        so a big entry stored while the window is wide is refused when it leaves it)."""
        if self._sketch is None:
            return self.capacity
        return self._main if self._climber is None else self.capacity - self._window_for(0.0)

    @property
    def bytes(self) -> int:
        return self._window.bytes + self._probation.bytes + self._protected.bytes

    def __len__(self) -> int:
        return sum(len(v) for seg in self._segments() for v in seg.entries.values())

    def __iter__(self) -> Iterator[CachedObject]:
        for seg in self._segments():
            for variants in list(seg.entries.values()):
                yield from variants

    def __repr__(self) -> str:
        state = f"objects={len(self)} bytes={self.bytes}/{self.capacity} policy={self.policy}"
        if self._sketch is not None:
            state += (
                f" window={self._window.bytes} probation={self._probation.bytes}"
                f" protected={self._protected.bytes} admitted={self.admitted}"
                f" rejected={self.rejected} {self._sketch!r}"
            )
        if self._climber is not None:
            state += f" {self._climber!r}"
        return f"<MemoryStore {state} evictions={self.evictions}>"

    # -- internals ---------------------------------------------------------------

    def _segments(self) -> tuple[_Segment, _Segment, _Segment]:
        return self._window, self._probation, self._protected

    def _drop(self, key: str) -> list[CachedObject]:
        """Unlink ``key`` from its segment; the caller releases what it no longer keeps."""
        seg = self._index.pop(key, None)
        if seg is self._probation:
            self._fresh.pop(key, None)
        return [] if seg is None else seg.pop(key)[0]

    def _release(self, variants: list[CachedObject]) -> None:
        if variants and self._on_release is not None:
            self._on_release(variants)

    def _evict(self, key: str) -> None:
        self._release(self._drop(key))
        self.evictions += 1

    def _protect(self, key: str, variants: list[CachedObject], size: int) -> None:
        """Move a probation entry to protected; protected's overflow goes back on probation."""
        self._protected.add(key, variants, size)
        self._index[key] = self._protected
        self._demote()

    def _demote(self) -> None:
        """Protected's overflow goes back on probation, as its newest entries."""
        protected, probation = self._protected, self._probation
        while protected.bytes > protected.limit and len(protected.entries) > 1:
            old = protected.oldest()
            probation.add(old, *protected.pop(old))
            self._index[old] = probation

    def _rebuild(self) -> None:
        """Re-home every entry for a new policy, oldest first (main's LRU end, protected,
        window): under lru one list, under tinylfu all on probation with a fresh sketch."""
        home = self._window if self.policy == "lru" else self._probation
        oldest_first = (self._probation, self._protected, self._window)
        entries = [(k, *seg.pop(k)) for seg in oldest_first for k in list(seg.entries)]
        for key, variants, size in entries:
            home.add(key, variants, size)
            self._index[key] = home
        lfu = self.policy != "lru"
        self._sketch = TinyLfu(max(_SKETCH_MIN, 2 * len(entries))) if lfu else None
        self._climber, self._resizing = None, False
        self._ghosts.clear()
        self._fresh.clear()
        if self.policy == "adaptive":
            self._climber = HillClimber()
            self._sample_resets = self._sketch.resets if self._sketch is not None else 0
        self._sampled = self._sample_hits = 0

    def _protected_limit(self) -> int:
        """Protected gets main minus probation's fixed share: a wider window is taken from
        protected [Caffeine ``increaseWindow``], so tinylfu's is 80 % of main."""
        if self._sketch is None:
            return int(self._main * _PROTECTED)
        return max(self._main - int(self.capacity * _PROBATION), 0)

    def _climb(self) -> None:
        """A sample is in: the climber names the window's next size; start moving there."""
        assert self._climber is not None and self._sketch is not None
        position = self._climber.climb(self._sample_hits, self._sampled)
        # neither recency bias pays: the window earns less per byte than the whole
        # store, and second chances no more than admissions; lean toward frequency
        window_pays = self._window_hits * self.capacity >= self._sample_hits * self._window.limit
        if not window_pays and not self._chances_pay():
            position = self._climber.lean()
        self._sample_resets = self._sketch.resets
        self._sampled = self._sample_hits = self._window_hits = 0
        self._earned = [n / 2 for n in self._earned]
        self._target = self._window_for(position)
        self._resizing = self._target != self._window.limit
        if self._resizing:
            self._transfer(_TRANSFER)

    def _window_for(self, position: float) -> int:
        """The window's bytes at the climber's ``position`` (0: tinylfu's 1 %)."""
        return max(int(self.capacity * (_WINDOW + (_WINDOW_MAX - _WINDOW) * position)), 1)

    def _transfer(self, budget: int) -> None:
        """Move the window's limit toward the climber's, at most ``budget`` entries a call.

        Limits move with the bytes, so ``bytes <= capacity`` holds between calls: free
        room moves as a number; a full main gives its LRU end (probation, then protected)
        to the window's MRU end, a full window its LRU end to probation's MRU end, with
        no admission test [Caffeine ``increaseWindow``/``decreaseWindow``]. Done within
        one entry of the target."""
        window, probation, protected = self._window, self._probation, self._protected
        target = self._target
        while budget > 0 and window.limit != target:
            if window.limit < target:  # grow: take from main
                free = self._main - probation.bytes - protected.bytes
                seg = probation if probation.entries else protected
                if free <= 0 and not seg.entries:
                    break
                if free > 0:
                    size = min(free, target - window.limit)
                else:
                    key = seg.oldest()
                    variants, size = seg.pop(key)
                    self._fresh.pop(key, None)
                    window.add(key, variants, size)
                    self._index[key] = window
                    budget -= 1
                self._move_window(size)
                if window.limit > target:  # one entry past it: close enough
                    break
            else:  # shrink: give to main
                free = window.limit - window.bytes
                if free <= 0 and not window.entries:
                    break
                if free > 0:
                    size = min(free, window.limit - target)
                else:
                    key = window.oldest()
                    variants, size = window.pop(key)
                    probation.add(key, variants, size)
                    self._index[key] = probation
                    budget -= 1
                self._move_window(-size)
                if window.limit < target:
                    break
        self._resizing = budget <= 0
        self._demote()

    def _move_window(self, size: int) -> None:
        """The window's limit gains ``size`` bytes (< 0: gives them) and main's loses them."""
        self._window.limit += size
        self._main -= size
        self._probation.limit = self._main
        self._protected.limit = self._protected_limit()

    def _drain_window(self) -> None:
        """Push the window's oldest entries out until it is within its limit."""
        window = self._window
        while window.bytes > window.limit:
            key = window.oldest()
            if self._sketch is None:  # lru: leaving the window is leaving the store
                self._evict(key)
            else:
                self._offer(key, *window.pop(key))

    def _offer(self, key: str, variants: list[CachedObject], size: int) -> None:
        """A candidate out of the window: into main if it fits or wins, else dropped."""
        assert self._sketch is not None
        probation, protected = self._probation, self._protected
        need = size - (self._main - probation.bytes - protected.bytes)
        victims: list[tuple[_Segment, str]] = []
        for seg in (probation, protected):  # LRU end of main, probation first
            for victim in seg.entries:
                if need <= 0:
                    break
                victims.append((seg, victim))
                need -= seg.sizes[victim]
        admit = need <= 0 and self._sketch.admit(key, [v for _, v in victims])
        chance = need <= 0 and not admit and self._second_chance(key)
        if not (admit or chance):
            del self._index[key]
            self._release(variants)
            self.rejected += 1
            self.evictions += 1
            self._remember(key)
            return
        for _, victim in victims:
            self._evict(victim)
        probation.add(key, variants, size)
        self._index[key] = probation
        self.admitted += 1
        if self._climber is not None:
            self._earned[2 if chance else 0] += 1
            self._fresh[key] = chance
        if len(self._index) > self._sketch.expected_objects:
            self._grow_sketch()

    def _second_chance(self, key: str) -> bool:
        """Adaptive: was ``key`` refused lately? Then it is let in now (and forgotten),
        unless second chances have stopped paying: the gate closes while entries let in
        by one earn their first hit on probation less than ``_GATE`` times as often as
        entries the sketch admitted (both counts halved every sample, so a closed gate
        lets ``_GATE_MIN`` through again to look)."""
        return (
            self._climber is not None
            and hash(key) in self._ghosts
            and self._chances_pay()
            and self._ghosts.pop(hash(key))
        )

    def _chances_pay(self) -> bool:
        """Adaptive: do second chances earn probation hits ``_GATE`` times as often as
        admissions (or have too few been given to tell)?"""
        admits, hits, chances, earned = self._earned
        return chances < _GATE_MIN or earned * admits >= _GATE * hits * chances

    def _remember(self, key: str) -> None:
        """Adaptive: note a refused candidate; keep the newest ``_GHOSTS`` per entry held
        (the share moves with the climber's position)."""
        if self._climber is None:
            return
        ghosts, h = self._ghosts, hash(key)
        ghosts[h] = True
        ghosts.move_to_end(h)
        low, high = _GHOSTS
        keep = int((low + (high - low) * self._climber.position) * len(self._index))
        while len(ghosts) > keep:
            ghosts.popitem(last=False)

    def _grow_sketch(self) -> None:
        """Size the sketch for twice the entries now held, keeping what it learned:
        a fresh node's popular head must survive the flood that fills it (Caffeine's
        ``ensureCapacity`` starts over; ``TinyLfu.grow`` copies)."""
        assert self._sketch is not None
        self._sketch.grow(2 * len(self._index))
