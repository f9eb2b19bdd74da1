"""Fetcher: one fill per key, led and started by one verb; a fill outlives its readers;
its error reaches every reader and nothing partial is stored. Real loopback upstreams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from shared.dash import SegmentIndex
from shared.engine.budget import OriginBudget
from shared.engine.decide import FillKey
from shared.engine.errors import (
    TruncatedBody,
    UpstreamError,
    UpstreamErrorStatus,
    UpstreamUnavailable,
)
from shared.engine.fetcher import Fetcher
from shared.engine.fills import FillReader
from shared.engine.tasks import TaskGroup
from shared.engine.upstream import UpstreamPool
from shared.http import vary_key
from shared.policy.breaker import CircuitBreaker
from shared.service.metrics import Metrics
from shared.store import CachedObject, FileBody, MemoryStore
from tests.functional.rawserver import RawServer, head
from tests.helpers import Tally, url_of

URL = "/v/seg-1.m4s"
PAYLOAD = bytes(range(256)) * 64  # 16 KiB
EMPTY: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
GZIP = CIMultiDictProxy(CIMultiDict({"Accept-Encoding": "gzip"}))
BOUND = 5.0  # seconds any one wait may take before the test fails


def body_for(encoding: str = "identity") -> bytes:
    """What the origin answers a request with that Accept-Encoding."""
    return encoding.encode() + b":" + PAYLOAD


class Origin:
    """A real upstream the test paces: a request is counted as it arrives; its head and
    the first half of the body go out on ``release``, the rest on ``rest``."""

    def __init__(self) -> None:
        self.url = ""
        self.arrived = Tally()
        self.requests: list[CIMultiDictProxy[str]] = []  # headers of each request
        self.release = asyncio.Event()
        self.rest = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.headers)
        self.arrived.add()
        await self.release.wait()
        body = body_for(request.headers.get("Accept-Encoding", "identity"))
        resp = web.StreamResponse(
            headers={"Cache-Control": "public, max-age=600", "Vary": "Accept-Encoding"}
        )
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        await self.rest.wait()
        await resp.write(body[len(body) // 2 :])
        await resp.write_eof()
        return resp

    def answer(self) -> None:
        """Let every request (held or to come) complete."""
        self.release.set()
        self.rest.set()


@pytest.fixture
async def origin(aiohttp_server) -> AsyncIterator[Origin]:
    o = Origin()
    app = web.Application()
    app.router.add_get("/{tail:.*}", o.handle)
    o.url = url_of(await aiohttp_server(app))
    yield o
    o.answer()  # no handler left waiting when the server stops


MakeFetcher = Callable[..., Awaitable[Fetcher]]


@pytest.fixture
async def make_fetcher() -> AsyncIterator[MakeFetcher]:
    """A Fetcher over ``parent``, wired as ``shared.engine.node.Node`` wires one."""
    made: list[Fetcher] = []

    async def make(parent: str, stale_if_error: float = 0.0) -> Fetcher:
        metrics = Metrics.create()
        upstream = UpstreamPool(
            [parent],
            connect_timeout=2.0,
            read_timeout=BOUND,
            connections=8,
            metrics=metrics,
            fallback="",
            breaker=lambda: CircuitBreaker(min_requests=100, cooldown=1.0),
        )
        await upstream.start()
        fetcher = Fetcher(
            via="1.1 test",
            store=MemoryStore(1 << 20),
            upstream=upstream,
            budget=OriginBudget(rate=0, burst=50, concurrency=0, max_wait=0.5),
            metrics=metrics,
            segments=SegmentIndex(),
            tasks=TaskGroup(),
            clock=time.time,
            max_object_bytes=1 << 20,
            heuristic_max_age=3600,
            pass_ttl=30,
            stale_if_error=stale_if_error,
        )
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        await fetcher.tasks.close()
        await fetcher.upstream.close()


T = TypeVar("T")


async def within(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, BOUND)


async def read_all(reader: FillReader) -> bytes:
    with reader:
        await reader.wait_head()
        return b"".join([chunk async for chunk in reader.read()])


def stored_bodies(fetcher: Fetcher, url: str = URL) -> list[bytes | FileBody]:
    return [o.body for o in fetcher.store.peek(url)]


async def test_fetcher_fetch_joins_the_fill_in_flight(origin, make_fetcher):
    """Every fetch of a key while its fill runs, before or after the upstream has the
    request, returns that fill; only the first leads; upstream sees one request."""
    fetcher = await make_fetcher(origin.url)
    key = FillKey(URL)
    fill, leads = fetcher.fetch(key, EMPTY)
    again, joins = fetcher.fetch(key, EMPTY)
    await within(origin.arrived.reached(1))
    late, late_leads = fetcher.fetch(key, EMPTY)
    assert again is fill and late is fill
    assert (leads, joins, late_leads) == (True, False, False)
    readers = [fill.reader() for _ in range(3)]
    origin.answer()
    bodies = await within(asyncio.gather(*map(read_all, readers)))
    await within(fetcher.tasks.join())
    assert bodies == [body_for()] * 3
    assert len(origin.requests) == 1 and origin.arrived.value == 1
    assert stored_bodies(fetcher) == [body_for()]
    assert not fetcher.joinable(key)  # released once done: the next fetch leads anew


async def test_fetcher_leader_starts_the_fill(origin, make_fetcher):
    """Leading a fill starts its fetch: the upstream has the request though the caller
    awaited nothing but the upstream's own arrival."""
    fetcher = await make_fetcher(origin.url)
    key = FillKey(URL)
    fill, leads = fetcher.fetch(key, EMPTY)
    assert leads and fetcher.joinable(key) and fill.head is None
    await within(origin.arrived.reached(1))
    assert fetcher.in_flight == 1
    origin.answer()
    await within(fetcher.tasks.join())
    assert fill.done and fill.error is None and fetcher.in_flight == 0
    assert stored_bodies(fetcher) == [body_for()]


def cut_after(first: bytes, *, reset: bool) -> Callable[..., Awaitable[None]]:
    """A RawServer script: a cacheable head, ``first``, then (when ``cut`` is set) a
    reset or a clean close, short of the promised body."""

    async def script(reader, writer, cut: asyncio.Event) -> None:
        writer.write(first)
        await writer.drain()
        await cut.wait()
        if reset:
            writer.transport.abort()
        else:
            writer.close()

    return script


@pytest.mark.parametrize(
    ("first", "reset"),
    [
        pytest.param(head(1000) + b"x" * 10, False, id="content-length-then-close"),
        pytest.param(head(1000) + b"x" * 10, True, id="content-length-then-reset"),
        pytest.param(head(None) + b"a\r\nxxxxxxxxxx\r\n", True, id="chunked-then-reset"),
    ],
)
async def test_fetcher_failure_reaches_every_reader_and_stores_nothing(make_fetcher, first, reset):
    """A body cut short fails the fill: each reader gets the bytes that came, then
    TruncatedBody; a late reader too; nothing is stored and the key is free again."""
    cut = asyncio.Event()
    script = cut_after(first, reset=reset)
    async with RawServer(lambda r, w: script(r, w, cut)).running() as server:
        fetcher = await make_fetcher(server.url)
        key = FillKey(URL)
        fill, _ = fetcher.fetch(key, EMPTY)
        joined, _ = fetcher.fetch(key, EMPTY)
        assert joined is fill
        readers = [fill.reader(), fill.reader()]
        streams = [r.read() for r in readers]
        for reader, stream in zip(readers, streams, strict=True):
            assert (await within(reader.wait_head())).status == 200
            got = b""
            while len(got) < 10:  # however the bytes were split on the way
                got += await within(anext(stream))
            assert got == b"x" * 10
        cut.set()
        for stream in streams:
            with pytest.raises(TruncatedBody):
                await within(anext(stream))
        await within(fetcher.tasks.join())
        assert isinstance(fill.error, TruncatedBody) and isinstance(fill.error, UpstreamError)
        with pytest.raises(TruncatedBody):
            await read_all(fill.reader())  # a reader arriving after the failure
        assert fetcher.store.peek(URL) == [] and len(fetcher.store) == 0
        # the fill, and one Range request that could not continue it (the same cut body)
        assert not fetcher.joinable(key) and server.requests == 2


async def test_fetcher_fill_outlives_readers_that_leave(origin, make_fetcher):
    """The leader's task cancelled while awaiting the head, and a reader cancelled
    mid-body, do not stop the fill: the reader that stays gets the whole body, and
    the object is stored."""
    fetcher = await make_fetcher(origin.url)
    loop = asyncio.get_running_loop()
    fill, leads = fetcher.fetch(FillKey(URL), EMPTY)

    registered = asyncio.Event()

    async def leader() -> None:  # as the driver does: lead, then wait for the head
        with fill.reader() as reader:
            registered.set()  # nothing suspends between here and wait_head's wait
            await reader.wait_head()
            raise AssertionError("cancelled before the head arrives")

    waiting = loop.create_task(leader())
    await within(origin.arrived.reached(1))
    await within(registered.wait())
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    got_first = asyncio.Event()

    async def leaver() -> None:
        with fill.reader() as reader:
            async for _ in reader.read():
                got_first.set()

    leaving = loop.create_task(leaver())
    stayer = fill.reader()
    origin.release.set()
    await within(got_first.wait())
    leaving.cancel()  # waiting for the second half
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert fill.readers == 1 and not fill.done
    origin.rest.set()
    assert await within(read_all(stayer)) == body_for()
    await within(fetcher.tasks.join())
    assert leads and fill.error is None
    assert stored_bodies(fetcher) == [body_for()] and len(origin.requests) == 1


async def test_fetcher_private_fills_are_never_joined(origin, make_fetcher):
    """A private fill is not in the table: every private fetch leads its own, and a
    shared fetch of the same key leads a separate one that later fetches join."""
    fetcher = await make_fetcher(origin.url)
    key = FillKey(URL)
    first, first_leads = fetcher.fetch(key, EMPTY, private=True)
    second, second_leads = fetcher.fetch(key, EMPTY, private=True)
    assert not fetcher.joinable(key)
    shared, shared_leads = fetcher.fetch(key, EMPTY)
    joined, joined_leads = fetcher.fetch(key, EMPTY)
    assert (first_leads, second_leads, shared_leads, joined_leads) == (True, True, True, False)
    assert len({id(first), id(second), id(shared)}) == 3 and joined is shared
    assert not first.shared and not second.shared and shared.shared
    await within(origin.arrived.reached(3))
    origin.answer()
    bodies = await within(asyncio.gather(*(read_all(f.reader()) for f in (first, second, shared))))
    assert bodies == [body_for()] * 3 and len(origin.requests) == 3


async def test_fetcher_vary_key_is_its_own_fill(origin, make_fetcher):
    """A Vary'd key and the plain key of one URL are two fills, each forwarding its
    own request fields and stored as its own variant."""
    fetcher = await make_fetcher(origin.url)
    gzip = FillKey(URL, vary_key(("accept-encoding",), GZIP))
    plain, plain_leads = fetcher.fetch(FillKey(URL), EMPTY)
    zipped, zipped_leads = fetcher.fetch(gzip, GZIP)
    again, again_leads = fetcher.fetch(gzip, GZIP)
    assert (plain_leads, zipped_leads, again_leads) == (True, True, False)
    assert zipped is not plain and again is zipped
    await within(origin.arrived.reached(2))
    assert sorted(h.get("Accept-Encoding", "") for h in origin.requests) == ["", "gzip"]
    origin.answer()
    assert await within(read_all(plain.reader())) == body_for()
    assert await within(read_all(zipped.reader())) == body_for("gzip")
    await within(fetcher.tasks.join())
    variants = {o.vary_key: o.body for o in fetcher.store.peek(URL)}
    assert variants == {("accept-encoding",): body_for(), gzip.vary: body_for("gzip")}


@pytest.mark.parametrize(
    ("when", "purged", "kept"),
    [
        pytest.param("after-head", URL, False, id="after-head"),
        pytest.param("before-head", URL, False, id="before-head"),
        pytest.param("before-head", "/v/other.m4s", True, id="other-url"),
    ],
)
async def test_fetcher_abandon_stores_nothing(origin, make_fetcher, when, purged, kept):
    """A fill of an abandoned (purged) URL still serves its readers whole but stores
    nothing, and later fetches do not join it; other URLs' fills are untouched."""
    fetcher = await make_fetcher(origin.url)
    key = FillKey(URL)
    fill, _ = fetcher.fetch(key, EMPTY)
    reader = fill.reader()
    await within(origin.arrived.reached(1))
    if when == "after-head":
        origin.release.set()
        await within(reader.wait_head())
    fetcher.abandon(lambda url: url == purged)
    assert fetcher.joinable(key) is kept
    origin.answer()
    assert await within(read_all(reader)) == body_for()
    await within(fetcher.tasks.join())
    assert fill.error is None
    assert stored_bodies(fetcher) == ([body_for()] if kept else [])
    assert URL not in fetcher.pass_marks  # purged, not uncacheable: later requests queue


# -- stale on upstream errors (RFC 5861 §4) ---------------------------------------------


def stale_copy(cache_control: str) -> CachedObject:
    """A stored 200 of ``URL`` that expired 40 s ago (max-age=60, received 100 s ago)."""
    received = time.time() - 100
    fields = {"Cache-Control": cache_control, "ETag": '"v1"'}
    return CachedObject(
        key=URL,
        vary_names=(),
        vary_key=(),
        status=200,
        headers=CIMultiDictProxy(CIMultiDict(fields)),
        body=b"stale body",
        request_time=received,
        response_time=received,
        lifetime=60.0,
        initial_age=0.0,
        must_validate="no-cache" in cache_control,
    )


@pytest.fixture
async def failing(aiohttp_server) -> Callable[[int], Awaitable[tuple[str, list[str]]]]:
    """An upstream answering every request with ``status`` and its own body."""

    async def start(status: int) -> tuple[str, list[str]]:
        seen: list[str] = []

        async def handle(request: web.Request) -> web.Response:
            seen.append(request.headers.get("If-None-Match", ""))
            return web.Response(status=status, text=f"origin says {status}")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        return url_of(await aiohttp_server(app)), seen

    return start


@pytest.mark.parametrize(
    ("status", "cache_control", "policy", "stands_in"),
    [
        pytest.param(503, "max-age=60", 300.0, True, id="503-policy-window"),
        pytest.param(500, "max-age=60, stale-if-error=300", 0.0, True, id="500-own-window"),
        pytest.param(502, "max-age=60", 300.0, True, id="502"),
        pytest.param(504, "max-age=60", 300.0, True, id="504"),
        pytest.param(503, "max-age=60, stale-if-error=10", 300.0, False, id="past-own-window"),
        pytest.param(503, "max-age=60", 30.0, False, id="past-policy-window"),
        pytest.param(503, "max-age=60, must-revalidate", 300.0, False, id="must-revalidate"),
        pytest.param(503, "max-age=60, proxy-revalidate", 300.0, False, id="proxy-revalidate"),
        pytest.param(503, "no-cache, max-age=60", 300.0, False, id="no-cache"),
        pytest.param(501, "max-age=60", 300.0, False, id="501-is-an-answer"),
    ],
)
async def test_fetcher_upstream_5xx_fails_fill_when_stale_may_stand_in(
    failing, make_fetcher, status, cache_control, policy, stands_in
):
    """A revalidating fill answered 500/502/503/504 fails before its head when the
    stored copy may be served stale-if-error (its readers serve it); else the
    upstream's own answer is the fill's head. The stored copy is kept either way."""
    parent, seen = await failing(status)
    fetcher = await make_fetcher(parent, stale_if_error=policy)
    stale = stale_copy(cache_control)
    fetcher.store.put(stale)
    fill, _ = fetcher.fetch(
        FillKey(URL), EMPTY, stale=stale, conditional=(("If-None-Match", '"v1"'),)
    )
    reader = fill.reader()
    if stands_in:
        with pytest.raises(UpstreamErrorStatus) as failed:
            await within(reader.wait_head())
        assert failed.value.status == status
    else:
        assert await within(read_all(reader)) == f"origin says {status}".encode()
        assert fill.head is not None and fill.head.status == status
    await within(fetcher.tasks.join())
    assert seen == ['"v1"'] and stored_bodies(fetcher) == [b"stale body"]


@pytest.mark.parametrize(
    ("cache_control", "asked"),
    [
        pytest.param("max-age=60", False, id="stale-copy-fails-fast"),
        pytest.param("max-age=60, must-revalidate", True, id="unusable-copy-last-route"),
        pytest.param(None, True, id="no-copy-last-route"),
    ],
)
async def test_fetcher_every_breaker_open_fails_fast_only_with_a_stale_copy(
    origin, make_fetcher, cache_control, asked
):
    """With the only parent's breaker open, a fill whose stored copy may stand in fails
    at once without asking upstream; any other fill still goes upstream (the last
    route is never closed) and gets the answer."""
    fetcher = await make_fetcher(origin.url, stale_if_error=300.0)
    breaker = fetcher.upstream.breakers[origin.url] = CircuitBreaker(min_requests=1, cooldown=60)
    breaker.record(False, time.monotonic())
    stale = stale_copy(cache_control) if cache_control else None
    origin.answer()
    fill, _ = fetcher.fetch(FillKey(URL), EMPTY, stale=stale)
    reader = fill.reader()
    if asked:
        assert await within(read_all(reader)) == body_for()
    else:
        with pytest.raises(UpstreamUnavailable):
            await within(reader.wait_head())
    await within(fetcher.tasks.join())
    assert len(origin.requests) == (1 if asked else 0)
    metric = (
        "tiercdn_upstream_last_route_total" if asked else "tiercdn_upstream_breaker_refused_total"
    )
    assert fetcher.metrics.registry.get_sample_value(metric) == 1
