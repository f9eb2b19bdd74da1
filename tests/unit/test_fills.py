"""Fill and FillTable: single flight, read-while-writer, streaming window."""

from __future__ import annotations

import asyncio

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from shared.engine.errors import TruncatedBody
from shared.engine.fills import Fill, FillHead, FillTable

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
    """A range read spans chunk boundaries and stops at its end."""
    fill = Fill("k")
    fill.start(head())
    task = asyncio.get_running_loop().create_task(collect(fill, start, end))
    for chunk in (b"abc", b"defg", b"hij"):
        await asyncio.sleep(0)
        fill.append(chunk)
    fill.finish()
    assert await task == expected
    assert await collect(fill, start, end) == expected  # late reader, complete fill


async def test_fill_error_reaches_every_reader_after_buffered_bytes():
    """Readers get the bytes that arrived, then the fill's error."""
    fill = Fill("k")
    fill.start(head())
    fill.append(b"partial")
    readers = [asyncio.get_running_loop().create_task(collect(fill)) for _ in range(5)]
    await asyncio.sleep(0)
    fill.fail(TruncatedBody("reset"))
    for task in readers:
        with pytest.raises(TruncatedBody):
            await task
    with pytest.raises(TruncatedBody):
        await collect(fill)


async def test_fill_wait_head_raises_error_before_head():
    """A fill failing before its head fails every waiter."""
    fill = Fill("k")
    waiter = asyncio.get_running_loop().create_task(fill.wait_head())
    await asyncio.sleep(0)
    fill.fail(TruncatedBody("refused"))
    with pytest.raises(TruncatedBody):
        await waiter


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
    drained = asyncio.get_running_loop().create_task(fill.drained())
    await asyncio.sleep(0.01)
    assert not drained.done()  # the writer waits for the slow reader
    assert await reader.__anext__() == b"b" * 600
    assert await reader.__anext__() == b"b" * 600
    await asyncio.wait_for(drained, 1)
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
