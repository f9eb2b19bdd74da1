"""Fill and FillTable: single flight, read-while-writer, streaming window."""

from __future__ import annotations

import asyncio

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shared.engine.errors import TruncatedBody
from shared.engine.fills import Fill, FillDetached, FillHead, FillTable

EMPTY: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


def head(retain: bool = True, length: int | None = None) -> FillHead:
    return FillHead(200, EMPTY, length, retain, EMPTY)


async def collect(fill: Fill, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in fill.read(start, end)])


def test_filltable_join_or_lead_single_flight():
    """The first caller leads; every later caller joins the same fill until released."""
    table = FillTable()
    first, lead1 = table.join_or_lead("k")
    second, lead2 = table.join_or_lead("k")
    assert (lead1, lead2) == (True, False) and first is second
    table.release(first)
    third, lead3 = table.join_or_lead("k")
    assert lead3 and third is not first
    table.release(first)  # releasing a stale fill leaves the new one alone
    assert "k" in table and len(table) == 1


def test_filltable_private_fills_are_not_joinable():
    """A private fill is never returned to another caller."""
    table = FillTable()
    private = table.private("k")
    fill, lead = table.join_or_lead("k")
    assert lead and fill is not private


async def test_fill_readers_get_bytes_as_they_arrive():
    """A reader receives each chunk when it is appended, before the fill completes."""
    fill = Fill("k")
    fill.start(head())
    received: list[bytes] = []
    got_first = asyncio.Event()

    async def reader() -> None:
        async for chunk in fill.read():
            received.append(chunk)
            got_first.set()

    task = asyncio.get_running_loop().create_task(reader())
    fill.append(b"abc")
    await asyncio.wait_for(got_first.wait(), 1)
    assert received == [b"abc"] and not fill.done
    fill.append(b"def")
    fill.finish()
    await task
    assert received == [b"abc", b"def"]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, None, b"abcdefghij"),
        (2, 5, b"cde"),
        (3, None, b"defghij"),
        (0, 4, b"abcd"),
        (4, 7, b"efg"),
        (9, 10, b"j"),
    ],
)
async def test_fill_read_range_across_chunks(start, end, expected):
    """A range read spans chunk boundaries, is woken as bytes arrive, stops at its end."""
    fill = Fill("k")
    fill.start(head())
    reader = fill.read(start, end)
    loop = asyncio.get_running_loop()

    async def next_chunk(waiting: asyncio.Event) -> bytes:
        waiting.set()  # nothing suspends between here and the reader's wait for bytes
        return await anext(reader)

    received, pending = b"", None
    for chunk in (b"abc", b"defg", b"hij"):
        if pending is None and len(received) < len(expected):
            waiting = asyncio.Event()
            pending = loop.create_task(next_chunk(waiting))
            await waiting.wait()  # the reader waits for bytes not appended yet
        fill.append(chunk)
        arrived = expected[: max(0, min(fill.size, end or fill.size) - start)]
        while pending is not None and len(received) < len(arrived):
            received += await asyncio.wait_for(pending, 1)
            pending = None
            if len(received) < len(arrived):  # more is there already: no wait
                pending = loop.create_task(next_chunk(asyncio.Event()))
        assert received == arrived  # before the fill completes
    assert pending is None
    fill.finish()
    assert [chunk async for chunk in reader] == []  # the range has ended
    assert received == expected
    assert await collect(fill, start, end) == expected  # late reader, complete fill


async def read_into(fill: Fill, received: list[bytes], got: asyncio.Event) -> None:
    """Read ``fill`` whole, recording each chunk and setting ``got`` at the first."""
    async for chunk in fill.read():
        received.append(chunk)
        got.set()


async def test_fill_error_reaches_every_reader_after_buffered_bytes():
    """Readers get the bytes that arrived, then the fill's error."""
    fill = Fill("k")
    fill.start(head())
    fill.append(b"partial")
    loop = asyncio.get_running_loop()
    received: list[list[bytes]] = [[] for _ in range(5)]
    got = [asyncio.Event() for _ in range(5)]
    readers = [loop.create_task(read_into(fill, r, g)) for r, g in zip(received, got, strict=True)]
    for event in got:
        await event.wait()  # each reader has the buffered bytes and waits for more
    fill.fail(TruncatedBody("reset"))
    for task in readers:
        with pytest.raises(TruncatedBody):
            await task
    assert received == [[b"partial"]] * 5
    with pytest.raises(TruncatedBody):
        await collect(fill)


async def test_fill_wait_head_raises_error_before_head():
    """A fill failing before its head fails every waiter."""
    fill = Fill("k")
    waiting = asyncio.Event()

    async def waiter() -> FillHead:
        waiting.set()  # nothing suspends between here and the wait inside wait_head
        return await fill.wait_head()

    task = asyncio.get_running_loop().create_task(waiter())
    await waiting.wait()
    assert not task.done()
    fill.fail(TruncatedBody("refused"))
    with pytest.raises(TruncatedBody):
        await task


async def test_fill_slow_reader_does_not_hold_back_retained_fill():
    """In retained mode the writer never waits for readers."""
    fill = Fill("k", window=10)
    fill.start(head(retain=True))
    stalled = fill.read()
    fill.append(b"x" * 100)
    assert await stalled.__anext__() == b"x" * 100  # then never reads again
    for _ in range(99):
        fill.append(b"x" * 100)
        await asyncio.wait_for(fill.drained(), 0.1)  # returns at once
    fill.finish()
    assert fill.body() == b"x" * 10000
    await stalled.aclose()


async def test_fill_streaming_mode_bounds_buffer_and_drops_consumed():
    """An uncached fill keeps at most ~window bytes beyond the slowest reader."""
    fill = Fill("k", window=1000)
    fill.start(head(retain=False))
    reader = fill.read()
    fill.append(b"a" * 600)
    assert await reader.__anext__() == b"a" * 600
    for _ in range(3):
        fill.append(b"b" * 600)
    assert fill.backlog() == 1800
    waiting = asyncio.Event()
    resumed_at: list[int] = []

    async def writer() -> None:
        waiting.set()  # nothing suspends between here and the wait inside drained()
        await fill.drained()
        resumed_at.append(fill.backlog())

    async def read_one() -> bytes:
        # In a task: a writer the read wakes runs before this task's end wakes the test.
        return await reader.__anext__()

    loop = asyncio.get_running_loop()
    task = loop.create_task(writer())
    await waiting.wait()
    assert not task.done()  # the writer waits for the slow reader
    assert await loop.create_task(read_one()) == b"b" * 600
    assert not task.done()  # 1200 bytes ahead of the reader: still more than the window
    assert await loop.create_task(read_one()) == b"b" * 600
    await asyncio.wait_for(task, 1)
    assert resumed_at == [600]
    assert fill.backlog() == 600
    await reader.aclose()
    assert fill.readers == 0


async def test_fill_stop_retaining_turns_into_streaming():
    """A fill that outgrows the object limit drops what its readers consumed."""
    fill = Fill("k", window=100)
    fill.start(head(retain=True))
    reader = fill.read()
    fill.append(b"x" * 500)
    assert await reader.__anext__() == b"x" * 500
    fill.stop_retaining()
    assert not fill.retaining and fill.backlog() == 0
    await reader.aclose()


async def test_fill_repr_summarises_state():
    """repr names key, state, mode and sizes."""
    fill = Fill("k")
    fill.start(head())
    fill.append(b"abc")
    assert repr(fill) == "<Fill 'k' filling retained size=3 readers=0 joined=0>"


async def test_fill_streaming_keeps_fastest_pace_and_detaches_laggards():
    """A shared streaming fill waits for its fastest reader only; a reader more than the
    window behind is let go (FillDetached at its byte) and memory stays within a window."""
    fill = Fill("k", window=1000)
    fill.start(head(retain=False))
    fast, slow = fill.reader(), fill.reader()
    fast_body = fast.read()
    slow_body = slow.read()
    fill.append(b"a" * 300)
    assert await anext(fast_body) == b"a" * 300
    assert await anext(slow_body) == b"a" * 300  # then never reads again
    for i in range(10):
        fill.append(bytes([i]) * 600)
        assert await anext(fast_body) == bytes([i]) * 600
        await asyncio.wait_for(fill.drained(), 1)  # returns at once: the fast one is there
        assert fill.held <= fill.window + 600
    assert fill.readers == 1 and fill.detached == 1
    with pytest.raises(FillDetached) as detached:
        await anext(slow_body)
    assert detached.value.pos == 300
    await fast_body.aclose()
    fast.close()
    slow.close()


async def test_fill_range_far_ahead_is_detached_at_once():
    """A reader whose range starts more than the window past the bytes there does not
    wait reading up to it through a shared streaming fill; a nearer one skips to it."""
    fill = Fill("k", window=1000)
    fill.start(head(retain=False))
    far, near = fill.reader(), fill.reader()
    with pytest.raises(FillDetached) as detached:
        await anext(far.read(5000))
    assert detached.value.pos == 5000 and fill.readers == 1
    body = near.read(800, 1200)
    fill.append(b"x" * 600)
    fill.append(b"y" * 600)
    assert [chunk async for chunk in body] == [b"y" * 400]
    assert fill.held == 0  # the bytes it skipped are gone
    near.close()


async def test_fill_private_streaming_skip_drops_bytes_and_never_detaches():
    """A private streaming fill (one reader) paces its writer; a reader skipping to a far
    range start keeps only a window in memory and is never let go."""
    fill = Fill("k", window=1000, shared=False)
    fill.start(head(retain=False))
    reader = fill.reader()
    most = 0

    async def writer() -> None:
        nonlocal most
        for i in range(20):
            fill.append(bytes([i]) * 600)
            most = max(most, fill.held)
            await fill.drained()
        fill.finish()

    task = asyncio.get_running_loop().create_task(writer())
    got = b"".join([chunk async for chunk in reader.read(9000)])
    await asyncio.wait_for(task, 1)
    assert got == b"".join(bytes([i]) * 600 for i in range(15, 20))
    assert most <= 1000 + 600 and fill.detached == 0
    reader.close()


async def test_fill_whole_size_waits_without_pinning():
    """whole_size: the size of a complete retained fill; None as soon as it stops
    retaining (no cursor: it neither paces the writer nor keeps bytes)."""
    kept = Fill("k")
    kept.start(head())
    kept.append(b"abc")
    kept.finish()
    assert await kept.whole_size() == 3
    big = Fill("k")
    big.start(head())
    started = asyncio.Event()

    async def whole_size() -> int | None:
        started.set()  # nothing suspends between here and the wait inside whole_size
        return await big.whole_size()

    waiting = asyncio.get_running_loop().create_task(whole_size())
    await started.wait()
    big.append(b"x" * 10)
    assert not waiting.done() and big.readers == 0
    big.stop_retaining()
    assert await asyncio.wait_for(waiting, 1) is None
