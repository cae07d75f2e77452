"""The broker contract, run against every broker: MemoryBroker (asyncio and trio) and RedisBroker.

What the event bus and live push rely on, whichever broker an app picks: fan-out in order,
resuming after an id, one resync entry instead of entries that are gone, consumer groups
(each entry to one consumer of a group, every group sees every entry), acknowledgement,
parking, and subscriptions ending on close. RedisBroker runs on asyncio only (redis-py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import pytest

from tether.brokers.base import Broker, Entry
from tether.brokers.memory import MemoryBroker
from tether.brokers.redis import RedisBroker

pytestmark = pytest.mark.parametrize(
    ("anyio_backend", "kind"),
    [("asyncio", "memory"), ("trio", "memory"), ("asyncio", "redis")],
)

SMALL = 10
"""The maxlen of the brokers made for the resync tests."""


@pytest.fixture
def make(kind: str, request: pytest.FixtureRequest) -> Any:
    """`make(maxlen=...)`: a new broker of the kind under test (closed by the test)."""
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""

    def make(maxlen: int = 10_000) -> Broker:
        if kind == "redis":
            return RedisBroker(url, maxlen=maxlen, batch=maxlen)
        return MemoryBroker(maxlen=maxlen)

    return make


@pytest.fixture
async def broker(make: Any) -> AsyncIterator[Broker]:
    broker: Broker = make()
    await broker.start()
    yield broker
    await broker.close()


def fresh() -> str:
    return f"contract.{uuid.uuid4().hex[:12]}"


async def next_entry(entries: AsyncIterator[Entry]) -> Entry:
    with anyio.fail_after(10):
        return await anext(entries)


async def live(broker: Broker, stream: str, entries: AsyncIterator[Entry]) -> None:
    """Wait until a fresh subscription reads (publishing markers), and skip past the markers."""
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:

            async def markers() -> None:
                while True:
                    await broker.publish(stream, b"marker")
                    await anyio.sleep(0.05)

            tasks.start_soon(markers)
            first = await anext(entries)
            tasks.cancel_scope.cancel()
    assert first.data == b"marker"
    await broker.publish(stream, b"go")
    while (await next_entry(entries)).data != b"go":
        pass


async def many(broker: Broker, stream: str, count: int) -> list[str]:
    return [await broker.publish(stream, str(n).encode()) for n in range(count)]


async def test_every_subscriber_sees_every_later_entry_in_order(broker: Broker) -> None:
    stream = fresh()
    await broker.publish(stream, b"before")
    one, two = broker.subscribe(stream), broker.subscribe(stream)
    await live(broker, stream, one)
    await live(broker, stream, two)
    await broker.publish(stream, b"both")
    while (await next_entry(one)).data != b"both":
        pass
    assert (await next_entry(two)).data == b"both"
    ids = await many(broker, stream, 120)
    for entries in (one, two):
        got = [await next_entry(entries) for _ in ids]
        assert [(entry.id, entry.data) for entry in got] == [
            (entry_id, str(n).encode()) for n, entry_id in enumerate(ids)
        ]
        await entries.aclose()  # type: ignore[attr-defined]
    assert len(set(ids)) == len(ids)


async def test_since_resumes_after_that_entry(broker: Broker) -> None:
    stream = fresh()
    first = await broker.publish(stream, b"a")
    await broker.publish(stream, b"b")
    await broker.publish(stream, b"c")
    entries = broker.subscribe(stream, since=first)
    assert [(await next_entry(entries)).data for _ in range(2)] == [b"b", b"c"]
    later = await broker.publish(stream, b"d")
    assert await next_entry(entries) == Entry(id=later, data=b"d")
    await entries.aclose()  # type: ignore[attr-defined]


async def test_since_of_entries_that_are_gone_yields_one_resync_then_live_entries(
    make: Any,
) -> None:
    broker: Broker = make(maxlen=SMALL)
    stream = fresh()
    try:
        gone = await broker.publish(stream, b"old")
        latest = (await many(broker, stream, 300))[-1]
        entries = broker.subscribe(stream, since=gone)
        assert await next_entry(entries) == Entry(id=latest, data=b"", resync=True)
        new = await broker.publish(stream, b"new")
        assert await next_entry(entries) == Entry(id=new, data=b"new")
        await entries.aclose()  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_a_subscriber_left_behind_gets_a_resync(make: Any) -> None:
    broker: Broker = make(maxlen=SMALL)
    stream = fresh()
    try:
        entries = broker.subscribe(stream)
        await live(broker, stream, entries)
        latest = (await many(broker, stream, 300))[-1]  # while it does not read
        assert await next_entry(entries) == Entry(id=latest, data=b"", resync=True)
        new = await broker.publish(stream, b"new")
        assert await next_entry(entries) == Entry(id=new, data=b"new")
        await entries.aclose()  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_each_entry_goes_to_one_consumer_of_a_group_and_to_every_group(
    broker: Broker,
) -> None:
    stream = fresh()
    for group in ("billing", "search"):
        await broker.ensure_group(stream, group)
    ids = await many(broker, stream, 30)
    first = await broker.read_group(stream, "billing", "c1", count=10)
    second = await broker.read_group(stream, "billing", "c2", count=100)
    assert len(first) == 10
    assert [entry.id for entry in first + second] == ids
    assert [entry.data for entry in second] == [str(n).encode() for n in range(10, 30)]
    assert await broker.read_group(stream, "billing", "c1", block=0.05) == []
    everything = await broker.read_group(stream, "search", "c9", count=100)
    assert [entry.id for entry in everything] == ids


async def test_a_group_made_on_first_read_gets_what_is_published_afterwards(
    broker: Broker,
) -> None:
    stream = fresh()
    await broker.publish(stream, b"before the group")
    assert await broker.read_group(stream, "g", "c", block=0.01) == []
    published = await broker.publish(stream, b"after")
    assert await broker.read_group(stream, "g", "c") == [Entry(id=published, data=b"after")]


async def test_acknowledged_entries_leave_the_backlog(broker: Broker) -> None:
    stream = fresh()
    await broker.ensure_group(stream, "g")
    await many(broker, stream, 5)
    assert await broker.backlog(stream, "g") == 5
    taken = await broker.read_group(stream, "g", "c", count=3)
    assert await broker.backlog(stream, "g") == 5  # 2 unread, 3 unacknowledged
    await broker.ack(stream, "g", *(entry.id for entry in taken))
    assert await broker.backlog(stream, "g") == 2
    rest = await broker.read_group(stream, "g", "c")
    await broker.ack(stream, "g", *(entry.id for entry in rest))
    assert await broker.backlog(stream, "g") == 0


async def test_parked_entries_reach_the_parked_stream_with_their_reason(broker: Broker) -> None:
    stream = fresh()
    parked = broker.subscribe(f"{stream}.parked")
    await live(broker, f"{stream}.parked", parked)
    entry_id = await broker.publish(stream, b"not json")
    await broker.park(stream, Entry(id=entry_id, data=b"not json"), "undecodable")
    record = orjson.loads((await next_entry(parked)).data)
    assert record == {"id": entry_id, "reason": "undecodable", "data": "not json"}
    await parked.aclose()  # type: ignore[attr-defined]


async def test_close_ends_subscriptions(make: Any) -> None:
    broker: Broker = make()
    stream = fresh()
    entries = broker.subscribe(stream)
    await live(broker, stream, entries)
    ended = anyio.Event()

    async def read_on() -> None:
        async for _ in entries:
            pass
        ended.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_on)
            await anyio.sleep(0.1)
            await broker.close()
            await ended.wait()


async def test_position_is_a_since_that_misses_nothing_after_it(broker: Broker) -> None:
    stream = fresh()
    before = await broker.position(stream)  # a stream with no entry yet
    first = await broker.publish(stream, b"one")
    at = await broker.position(stream)
    assert at == first
    await broker.publish(stream, b"two")
    for since, expected in ((before, [b"one", b"two"]), (at, [b"two"])):
        entries = broker.subscribe(stream, since=since)
        try:
            got = [await next_entry(entries) for _ in expected]
        finally:
            await entries.aclose()  # type: ignore[attr-defined]
        assert [entry.data for entry in got] == expected
        assert not any(entry.resync for entry in got)


async def test_read_after_returns_what_follows_an_id_without_waiting(broker: Broker) -> None:
    stream = fresh()
    start = await broker.position(stream)
    with anyio.fail_after(5):  # never blocks for entries to come
        assert await broker.read_after(stream, start, 10) == ([], False)
    ids = [await broker.publish(stream, data) for data in (b"a", b"b", b"c")]
    expected = [
        Entry(id=entry_id, data=data)
        for entry_id, data in zip(ids, (b"a", b"b", b"c"), strict=True)
    ]
    assert await broker.read_after(stream, start, 10) == (expected, False)
    assert await broker.read_after(stream, ids[0], 10) == (expected[1:], False)
    assert await broker.read_after(stream, ids[0], 1) == (expected[1:2], False)
    assert await broker.read_after(stream, ids[-1], 10) == ([], False)


async def test_read_after_an_id_that_is_gone_or_no_id_of_the_stream_says_so(make: Any) -> None:
    broker: Broker = make(maxlen=SMALL)
    stream = fresh()
    try:
        gone = await broker.publish(stream, b"old")
        latest = (await many(broker, stream, 300))[-1]
        head, dash, tail = latest.partition("-")
        beyond = f"{int(head) + 1000}{dash}{tail}"  # later than anything the stream made
        for since in (gone, "not-an-id", beyond):
            assert await broker.read_after(stream, since, 10) == ([], True), since
        held, lost = await broker.read_after(stream, latest, 10)
        assert (held, lost) == ([], False)
    finally:
        await broker.close()
