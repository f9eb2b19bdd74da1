"""Cache admission: a TinyLFU frequency sketch with a doorkeeper.

Pure: no clock, no I/O, no randomness. The store calls ``record`` on every
client lookup and ``admit`` when an object wants room in a full cache; the
policy only names a verdict, the store evicts [Ristretto ``policy.Add``].

- Count-min sketch: 4 rows of one-byte counters saturating at 15 (TinyLFU's
  4-bit counters), indexed by double hashing of ``hash(key)``
  [Kirsch & Mitzenmacher 2006], updated conservatively (only the rows that
  hold the minimum grow), so collisions inflate estimates less.
- Doorkeeper: a Bloom filter in front of the sketch. A key's first sighting
  sets its bits only, so one-hit wonders never reach the counters
  [Einziger et al., TinyLFU §3.4.2].
- Reset: every ``sample_size`` = 10 x ``expected_objects`` records, every
  counter is halved and the doorkeeper is cleared, so old popularity fades
  [TinyLFU §3.3]. The sample count restarts at zero [Ristretto ``resetAt``]
  rather than being halved [Caffeine], so every period is a full W: on a
  static Zipf(0.8) catalog that closes 0.03 more of the LRU → Belady gap
  (``loadtest/zipf.py``).
- Growth keeps what was learned: every index is ``x & mask``, so doubling a
  row by copying it into both halves puts each key's counter (and each
  doorkeeper bit) at its old index or at that index's copy: no estimate moves.
  The narrower table's collisions come along and fade with the next resets;
  the sample period grows with the expected objects.
- Shrinking folds instead (a store whose budget went down): the halves of a row
  merge by taking the larger counter, the doorkeeper's by OR, so no estimate
  drops; keys that now share a counter may read higher, until the next resets.
  The sample period shrinks with the expected objects.
- Estimates are deterministic within a process only: builtin ``hash`` of a
  ``str`` is salted per process (PYTHONHASHSEED).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

__all__ = ["TinyLfu"]

MAX_COUNT = 15  # saturation of one counter (4 bits' worth)
SAMPLE_FACTOR = 10  # records per expected object between resets [TinyLFU: W/C]
_HALF = bytes(i >> 1 for i in range(256))  # bytearray.translate halves a row in C
_MAX_NIBBLES = bytes(max(i >> 4, i & 15) for i in range(256))  # folds two packed counters
_MASK64 = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15  # Fibonacci hashing: spreads hash(int) == int over 64 bits
_MIX2 = 0xBF58476D1CE4E5B9  # splitmix64: a second, independent hash for the doorkeeper
_COUNTERS_PER_OBJECT = 4  # per row: few keys share all four counters [Caffeine: 16 in 4 rows]
_DOOR_BITS_PER_OBJECT = 32  # ~3 bits per sampled record: few false "seen before"


def _pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (at least 2)."""
    return 1 << max(n - 1, 1).bit_length()


class TinyLfu:
    """Approximate access frequency of keys, for admit-or-reject decisions."""

    def __init__(self, expected_objects: int, *, sample_factor: int = SAMPLE_FACTOR) -> None:
        self.expected_objects = max(expected_objects, 16)
        width = _pow2(self.expected_objects * _COUNTERS_PER_OBJECT)
        self._mask = width - 1
        # guarded by: single event loop (the store's caller)
        self._rows = [bytearray(width) for _ in range(4)]
        door_bits = _pow2(self.expected_objects * _DOOR_BITS_PER_OBJECT)
        self._door_mask = door_bits - 1
        self._door = bytearray(door_bits // 8)
        self._sample_factor = sample_factor
        self.sample_size = sample_factor * self.expected_objects
        self._samples = 0
        self.resets = 0

    def record(self, key: Hashable) -> None:
        """Count one access to ``key``; halve everything once the sample is full."""
        h = (hash(key) * _MIX) & _MASK64
        # the doorkeeper (``_door_bits``, inline: this runs on every request): a key
        # is counted from its second record; the first only sets its two bits
        door, dm = self._door, self._door_mask
        g = ((h ^ (h >> 31)) * _MIX2) & _MASK64
        x, y = g & dm, (g >> 32) & dm
        bx, by = 1 << (x & 7), 1 << (y & 7)
        if door[x >> 3] & bx and door[y >> 3] & by:  # seen before: count it
            a, b, m = h & 0xFFFFFFFF, (h >> 32) | 1, self._mask
            r0, r1, r2, r3 = self._rows
            i0, i1, i2, i3 = a & m, (a + b) & m, (a + 2 * b) & m, (a + 3 * b) & m
            c0, c1, c2, c3 = r0[i0], r1[i1], r2[i2], r3[i3]
            low = min(c0, c1, c2, c3)
            if low < MAX_COUNT:  # conservative update: raise only the minimum rows
                if c0 == low:
                    r0[i0] = low + 1
                if c1 == low:
                    r1[i1] = low + 1
                if c2 == low:
                    r2[i2] = low + 1
                if c3 == low:
                    r3[i3] = low + 1
        else:
            door[x >> 3] |= bx
            door[y >> 3] |= by
        self._samples += 1
        if self._samples >= self.sample_size:
            self._reset()

    def estimate(self, key: Hashable) -> int:
        """Approximate recent accesses of ``key`` (0 … ``MAX_COUNT`` + 1)."""
        h = (hash(key) * _MIX) & _MASK64
        a, b, m = h & 0xFFFFFFFF, (h >> 32) | 1, self._mask
        r0, r1, r2, r3 = self._rows
        low = min(r0[a & m], r1[(a + b) & m], r2[(a + 2 * b) & m], r3[(a + 3 * b) & m])
        return low + self._door_has(h)

    def admit(self, candidate: Hashable, victims: Iterable[Hashable]) -> bool:
        """Should ``candidate`` replace all of ``victims``? Only if it beats the strongest.

        Ties reject: the incumbent has already paid its way in [Caffeine ``admit``].
        Size-awareness is the caller's: it names every victim the candidate displaces."""
        freq = self.estimate(candidate)
        return all(freq > self.estimate(v) for v in victims)

    def grow(self, expected_objects: int) -> None:
        """Size the sketch for ``expected_objects`` (never smaller), keeping every estimate.

        Widths stay powers of two, so a wider row is the old one repeated: index
        ``x & (k * width - 1)`` holds a copy of ``x & (width - 1)``'s counter. The
        sample count carries on; the next reset comes ``sample_factor`` records per
        expected object after the last one."""
        if expected_objects <= self.expected_objects:
            return
        self.expected_objects = expected_objects
        width = _pow2(expected_objects * _COUNTERS_PER_OBJECT)
        if width > self._mask + 1:
            copies = width // (self._mask + 1)
            self._rows = [row * copies for row in self._rows]
            self._mask = width - 1
        door_bits = _pow2(expected_objects * _DOOR_BITS_PER_OBJECT)
        if door_bits > self._door_mask + 1:  # bit p lives in byte p >> 3: bytes copy as bits do
            self._door = self._door * (door_bits // (self._door_mask + 1))
            self._door_mask = door_bits - 1
        self.sample_size = self._sample_factor * expected_objects

    def shrink(self, expected_objects: int) -> None:
        """Size the sketch for ``expected_objects`` (never larger), no estimate dropping.

        Index ``x & (width // 2 - 1)`` takes the larger of the counters at ``x`` and its
        other-half twin: counters are at most 15, so one byte packs both and a
        ``translate`` picks the larger in C. Doorkeeper halves are ORed."""
        expected_objects = max(expected_objects, 16)
        if expected_objects >= self.expected_objects:
            return
        self.expected_objects = expected_objects
        width = _pow2(expected_objects * _COUNTERS_PER_OBJECT)
        while self._mask + 1 > width:
            half = (self._mask + 1) // 2
            self._rows = [_fold(row, half, _MAX_NIBBLES) for row in self._rows]
            self._mask = half - 1
        door_bits = _pow2(expected_objects * _DOOR_BITS_PER_OBJECT)
        while self._door_mask + 1 > door_bits:
            half = len(self._door) // 2
            low = int.from_bytes(self._door[:half], "little")
            high = int.from_bytes(self._door[half:], "little")
            self._door = bytearray((low | high).to_bytes(half, "little"))
            self._door_mask = (self._door_mask + 1) // 2 - 1
        self.sample_size = self._sample_factor * expected_objects

    def _door_bits(self, h: int) -> tuple[int, int]:
        g = ((h ^ (h >> 31)) * _MIX2) & _MASK64
        return g & self._door_mask, (g >> 32) & self._door_mask

    def _door_has(self, h: int) -> bool:
        door = self._door
        x, y = self._door_bits(h)
        return bool(door[x >> 3] & (1 << (x & 7)) and door[y >> 3] & (1 << (y & 7)))

    def _reset(self) -> None:
        self._rows = [row.translate(_HALF) for row in self._rows]
        self._door = bytearray(len(self._door))
        self._samples = 0
        self.resets += 1

    def __repr__(self) -> str:
        return (
            f"<TinyLfu width={self._mask + 1} samples={self._samples}/{self.sample_size} "
            f"resets={self.resets}>"
        )


def _fold(row: bytearray, half: int, pick: bytes) -> bytearray:
    """``row``'s two halves as one: byte ``i`` is ``pick[row[i] << 4 | row[i + half]]``."""
    high = int.from_bytes(row[:half], "little") << 4  # counters <= 15: no carry
    packed = (high | int.from_bytes(row[half:], "little")).to_bytes(half, "little")
    return bytearray(packed.translate(pick))
