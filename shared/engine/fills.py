"""Fills: one upstream fetch per cache key, streamed to every reader as it grows.

``FillTable.join_or_lead(key)`` returns the one in-flight ``Fill`` for a key
and whether the caller leads it; ``engine/fetcher.py`` is its only caller, and
starts the fetch of every fill it leads. A ``Fill`` is a
growing body: readers stream from any offset at their own pace and are woken
when bytes arrive, never by polling (read-while-writer). A fill belongs to the
node, not to a request: a reader leaving never stops it.

Two modes, chosen when the response head arrives:
- *retained* (the response will be stored): every chunk is kept until the
  fill completes; memory is bounded by ``max_object_bytes`` per fill.
- *streaming* (uncacheable or too large): chunks every reader has consumed
  are dropped, and the writer keeps the pace of the *fastest* reader: it waits
  while even that one is more than ``window`` bytes behind. Readers of a shared
  fill that fall more than ``window`` behind it, or whose range starts more
  than ``window`` past what has arrived, are *detached*: their next read raises
  ``FillDetached`` with the byte they need, and the caller continues them on a
  stream of their own. So a streaming fill holds at most ``window`` + one chunk,
  and no reader waits for another. Late readers cannot join such a fill: the
  table forgets it as soon as it stops retaining.

A fill's error reaches every reader; a fill that fails is never stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import AsyncGenerator, Hashable

from multidict import CIMultiDictProxy

from shared.engine.errors import UpstreamUnavailable

__all__ = ["Fill", "FillDetached", "FillHead", "FillReader", "FillTable"]


@dataclasses.dataclass(frozen=True, slots=True)
class FillHead:
    """The response head every reader of a fill answers from."""

    status: int
    headers: CIMultiDictProxy[str]
    content_length: int | None
    retain: bool  # the body will be kept whole (and stored if complete)
    request_headers: CIMultiDictProxy[str]  # the leader's, to check Vary for joiners
    revalidated: bool = False
    # Client headers built once per fill and Cache-Status member, copied per reader:
    # a storm's thousand joiners share one build [guarded by: single event loop].
    client_headers: dict[str, CIMultiDictProxy[str]] = dataclasses.field(
        default_factory=dict, compare=False
    )


class FillDetached(UpstreamUnavailable):
    """This reader was let go by a shared streaming fill, which no longer holds the
    bytes it needs from ``pos`` on: continue it on a stream of its own. A caller
    that cannot sees a failed fill (its client is aborted, never sent wrong bytes)."""

    def __init__(self, pos: int) -> None:
        super().__init__(f"reader detached at byte {pos}")
        self.pos = pos


class _Cursor:
    """A reader's position: byte offset and the chunk that holds it."""

    __slots__ = ("detached", "index", "offset", "pos")

    def __init__(self, pos: int, index: int, offset: int) -> None:
        self.pos = pos  # absolute byte offset
        self.index = index  # absolute chunk number holding ``pos``
        self.offset = offset  # offset of ``pos`` inside that chunk
        self.detached = False  # let go by a streaming fill: its bytes may be gone


class Fill:
    """A response body that grows while any number of readers stream it."""

    def __init__(self, key: Hashable, *, window: int = 1 << 20, shared: bool = True) -> None:
        self.key = key
        self.shared = shared  # in the table, joinable (False: private to one request)
        self.window = window
        self.head: FillHead | None = None
        self.error: BaseException | None = None
        self.done = False
        self.size = 0  # bytes appended so far
        self.joined = 0  # readers that ever joined
        self.detached = 0  # readers let go (fell behind, or asked for bytes far ahead)
        # guarded by: single event loop
        self._chunks: deque[bytes] = deque()
        self._base = 0  # byte offset of _chunks[0] (non-zero once streaming drops data)
        self._dropped = 0  # chunks dropped from the front (streaming mode)
        self._retain = True
        self._cursors: set[_Cursor] = set()
        self._grew = asyncio.Event()
        self._drained = asyncio.Event()

    # -- writer side: plain methods, called by the fill task ------------------

    def start(self, head: FillHead) -> None:
        self.head = head
        self._retain = self._retain and head.retain  # a purge before the head: still not kept
        self._wake()

    def append(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.append(chunk)
            self.size += len(chunk)
            self._wake()

    def stop_retaining(self) -> None:
        """Switch to streaming mode (the object turned out too large to store)."""
        self._retain = False
        self._trim()
        self._wake()  # whoever waits for a whole body stops waiting

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self.done:
            self.error = exc
            self.done = True
            self._wake()

    @property
    def retaining(self) -> bool:
        return self._retain

    @property
    def readers(self) -> int:
        return len(self._cursors)

    @property
    def held(self) -> int:
        """Body bytes kept in memory now."""
        return self.size - self._base

    def backlog(self) -> int:
        """Bytes buffered ahead of the slowest reader (streaming mode)."""
        if not self._cursors:
            return self.size - self._base
        return self.size - min(c.pos for c in self._cursors)

    async def drained(self) -> None:
        """Streaming mode: wait until the fastest reader is within the window, then
        (a shared fill) detach the readers further behind than that."""
        while not self._retain and self._cursors and self._lead() > self.window:
            self._drained.clear()
            await self._drained.wait()
        if not self._retain and self.shared:
            for cursor in [c for c in self._cursors if self.size - c.pos > self.window]:
                self._detach(cursor)
            self._trim()

    def body(self) -> bytes:
        """The whole body of a complete, retained fill."""
        assert self.done and self.error is None and self._retain and self._base == 0
        return b"".join(self._chunks)

    # -- reader side -----------------------------------------------------------

    async def wait_head(self) -> FillHead:
        """The response head, once it arrives; raises the fill's error."""
        while self.head is None:
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.head

    async def whole_size(self) -> int | None:
        """The size of a retained fill once complete (raises its error); None once it
        stops retaining. Waits without a cursor: it paces and pins nothing."""
        while self._retain and not self.done:
            await self._wait()
        if self.error is not None:
            raise self.error
        return self.size if self._retain else None

    def reader(self) -> FillReader:
        """Register a reader at offset 0 *now*, so streaming mode keeps its bytes
        from the first one on, even before it starts reading."""
        return FillReader(self)

    async def read(self, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Yield the body bytes in ``[start, end)`` as they arrive (a one-off reader)."""
        with self.reader() as reader:
            async for chunk in reader.read(start, end):
                yield chunk

    # -- internals ---------------------------------------------------------------

    def _take(self, cursor: _Cursor, end: int | None) -> bytes:
        """The bytes from ``cursor`` to the end of its chunk (or ``end``); advance."""
        chunk = self._chunks[cursor.index - self._dropped]
        hi = len(chunk)
        if end is not None:
            hi = min(hi, cursor.offset + end - cursor.pos)
        piece = chunk if cursor.offset == 0 and hi == len(chunk) else chunk[cursor.offset : hi]
        cursor.pos += len(piece)
        if hi == len(chunk):
            cursor.index += 1
            cursor.offset = 0
        else:
            cursor.offset = hi
        return piece

    def _lead(self) -> int:
        """Bytes buffered ahead of the fastest reader."""
        return self.size - max(c.pos for c in self._cursors)

    def _detach(self, cursor: _Cursor) -> None:
        cursor.detached = True
        self._cursors.discard(cursor)
        self.detached += 1

    def _trim(self) -> None:
        """Drop the chunks every reader has passed (streaming mode); wake the writer."""
        if self._retain:
            return
        low = min((c.pos for c in self._cursors), default=self.size)
        while self._chunks and self._base + len(self._chunks[0]) <= low:
            self._base += len(self._chunks.popleft())
            self._dropped += 1
        self._drained.set()  # a reader moved: the writer checks its window again

    async def _wait(self) -> None:
        await self._grew.wait()

    def _wake(self) -> None:
        grew, self._grew = self._grew, asyncio.Event()
        grew.set()
        self._drained.set()

    def __repr__(self) -> str:
        state = "failed" if self.error else "done" if self.done else "filling"
        mode = "retained" if self._retain else "streaming"
        detached = f" detached={self.detached}" if self.detached else ""
        return (
            f"<Fill {self.key!r} {state} {mode} size={self.size} "
            f"readers={len(self._cursors)} joined={self.joined}{detached}>"
        )


class FillReader:
    """One reader's place in a fill; close it (or use ``with``) when done."""

    def __init__(self, fill: Fill) -> None:
        if fill._base > 0:
            raise RuntimeError("fill no longer holds its first bytes")
        self.fill = fill
        self._cursor = _Cursor(0, 0, 0)
        fill.joined += 1
        fill._cursors.add(self._cursor)

    async def wait_head(self) -> FillHead:
        return await self.fill.wait_head()

    async def read(self, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Yield the body bytes in ``[start, end)`` as they arrive.

        Raises the fill's error if it fails before ``end`` (or its end), and
        ``FillDetached`` if a shared streaming fill let this reader go."""
        fill, cursor = self.fill, self._cursor
        while end is None or cursor.pos < end:
            if cursor.detached:
                raise FillDetached(max(cursor.pos, start))
            if cursor.pos < fill.size:
                skip = cursor.pos < start  # to the start of the range, dropping as it goes
                chunk = fill._take(cursor, start if skip else end)
                fill._trim()  # before yielding: the consumer may not come back soon
                if not skip:
                    yield chunk
            elif fill.error is not None:
                raise fill.error
            elif fill.done:
                return
            elif start - fill.size > fill.window and fill.shared and not fill.retaining:
                fill._detach(cursor)  # its range is far ahead: don't wait reading up to it
                fill._trim()
            else:
                await fill._wait()

    def close(self) -> None:
        self.fill._cursors.discard(self._cursor)
        self.fill._trim()

    def __enter__(self) -> FillReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FillTable:
    """The node's in-flight fills, one per cache key (single flight)."""

    def __init__(self, window: int = 1 << 20) -> None:
        self.window = window
        self._fills: dict[Hashable, Fill] = {}  # guarded by: single event loop

    def join_or_lead(self, key: Hashable) -> tuple[Fill, bool]:
        """The fill for ``key`` and True if the caller must start it."""
        fill = self._fills.get(key)
        if fill is not None:
            return fill, False
        fill = self._fills[key] = Fill(key, window=self.window)
        return fill, True

    def private(self, key: Hashable) -> Fill:
        """A fill nobody else may join (Authorization, no-store, pass)."""
        return Fill(key, window=self.window, shared=False)

    def get(self, key: Hashable) -> Fill | None:
        return self._fills.get(key)

    def release(self, fill: Fill) -> None:
        """Forget ``fill`` so later requests start a new one."""
        if self._fills.get(fill.key) is fill:
            del self._fills[fill.key]

    def __len__(self) -> int:
        return len(self._fills)

    def __contains__(self, key: object) -> bool:
        return key in self._fills

    def in_flight(self) -> list[Hashable]:
        return list(self._fills)

    def __repr__(self) -> str:
        return f"<FillTable in_flight={len(self._fills)}>"
