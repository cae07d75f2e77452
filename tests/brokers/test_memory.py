"""MemoryBroker alone, on asyncio and trio: what is specific to the in-process broker.

tests/brokers/test_contract.py runs the contract every broker keeps (fan-out, since, resync,
groups, ack, park, close) on memory and Redis; this module covers the memory broker's own
promises: its ids, the ring that never grows past `maxlen`, publishers that wait for a
lagging group and then get `BrokerFull`, blocking group reads, `start` after `close`, and a
broker reused by a second event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import orjson
import pytest

from tether.brokers import BrokerFull, Entry, MemoryBroker, broker_from
from tether.errors import ConfigurationError


def ring(broker: MemoryBroker, stream: str) -> int:
    """How many entries the broker holds in memory for `stream`."""
    return len(broker._streams[stream].entries)


async def take(entries: AsyncIterator[Entry], count: int) -> list[Entry]:
    with anyio.fail_after(5):
        return [await anext(entries) for _ in range(count)]


async def test_ids_count_up_from_one_per_stream() -> None:
    broker = MemoryBroker()
    assert [await broker.publish("a", b"x") for _ in range(3)] == ["1", "2", "3"]
    assert await broker.publish("b", b"y") == "1"
    assert await broker.publish("a", b"z") == "4"


def test_maxlen_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxlen must be at least 1"):
        MemoryBroker(maxlen=0)


def test_broker_from_makes_a_memory_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_BROKER", raising=False)
    assert isinstance(broker_from(None), MemoryBroker)
    assert isinstance(broker_from("memory://"), MemoryBroker)
    mine = MemoryBroker(maxlen=5)
    assert broker_from(mine) is mine
    monkeypatch.setenv("TETHER_BROKER", "memory://")
    assert broker_from(None).url == "memory://"
    with pytest.raises(ConfigurationError, match="unknown broker"):
        broker_from("kafka://somewhere")
    monkeypatch.setenv("TETHER_BROKER", "nats://x")
    with pytest.raises(ConfigurationError, match=r"\$TETHER_BROKER='nats://x': unknown broker"):
        broker_from(None)
    with pytest.raises(ConfigurationError, match="takes a Broker or a URL"):
        broker_from(42)


async def test_without_groups_the_ring_overwrites_and_never_grows() -> None:
    broker = MemoryBroker(maxlen=4, full_timeout=10)
    with anyio.fail_after(2):  # no group lags: a publish never waits
        for n in range(100):
            await broker.publish("s", str(n).encode())
    assert ring(broker, "s") == 4
    # Ids 97 to 100 (data 96 to 99) are held: after 96, all of them; after 95, a gap.
    entries = broker.subscribe("s", since="96")
    assert [e.data for e in await take(entries, 4)] == [b"96", b"97", b"98", b"99"]
    await entries.aclose()  # type: ignore[attr-defined]
    entries = broker.subscribe("s", since="95")
    assert await take(entries, 1) == [Entry("100", b"", resync=True)]
    await entries.aclose()  # type: ignore[attr-defined]


async def test_subscribe_from_now_skips_what_came_before() -> None:
    broker = MemoryBroker()
    await broker.publish("s", b"old")
    entries = broker.subscribe("s")
    got: list[Entry] = []

    async def read() -> None:
        got.extend(await take(entries, 1))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        await anyio.wait_all_tasks_blocked()  # subscribed, waiting
        await broker.publish("s", b"new")
    assert got == [Entry("2", b"new")]
    await entries.aclose()  # type: ignore[attr-defined]


async def test_since_zero_replays_everything_still_held() -> None:
    broker = MemoryBroker(maxlen=10)
    for n in range(3):
        await broker.publish("s", str(n).encode())
    entries = broker.subscribe("s", since="0")
    assert [e.id for e in await take(entries, 3)] == ["1", "2", "3"]
    await entries.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("since", ["99", "not-an-id", "-5"])
async def test_since_an_id_this_broker_never_gave_resyncs(since: str) -> None:
    # An id from before a restart, or garbage: start afresh at the newest entry.
    broker = MemoryBroker(maxlen=10)
    await broker.publish("s", b"a")
    await broker.publish("s", b"b")
    entries = broker.subscribe("s", since=since)
    assert await take(entries, 1) == [Entry("2", b"", resync=True)]
    await broker.publish("s", b"c")
    assert await take(entries, 1) == [Entry("3", b"c")]
    await entries.aclose()  # type: ignore[attr-defined]


async def test_a_lagging_subscriber_resyncs_at_the_newest_entry() -> None:
    broker = MemoryBroker(maxlen=3)
    entries = broker.subscribe("s", since="0")
    await broker.publish("s", b"1")
    assert await take(entries, 1) == [Entry("1", b"1")]
    for n in range(2, 10):  # the subscriber does not read: it falls 8 behind a ring of 3
        await broker.publish("s", str(n).encode())
    assert await take(entries, 1) == [Entry("9", b"", resync=True)]
    await broker.publish("s", b"10")
    assert await take(entries, 1) == [Entry("10", b"10")]
    await entries.aclose()  # type: ignore[attr-defined]


async def test_a_group_starts_at_the_newest_entry_and_shares_entries() -> None:
    broker = MemoryBroker()
    await broker.publish("s", b"before")
    await broker.ensure_group("s", "g")
    await broker.ensure_group("s", "g")  # idempotent: the cursor stays
    for n in range(5):
        await broker.publish("s", str(n).encode())
    a = await broker.read_group("s", "g", "a", count=2)
    b = await broker.read_group("s", "g", "b", count=10)
    assert [e.data for e in a] == [b"0", b"1"]
    assert [e.data for e in b] == [b"2", b"3", b"4"]
    assert await broker.backlog("s", "g") == broker.backlog_of("s", "g") == 5
    await broker.ack("s", "g", *(e.id for e in a + b))
    assert await broker.backlog("s", "g") == 0
    assert await broker.backlog("s", "other") == 0  # unknown group
    assert await broker.backlog("nothing", "g") == 0  # unknown stream
    await broker.ack("nothing", "g", "1")  # unknown: ignored
    assert await broker.reclaim("s", "g", "a", min_idle=0) == []  # nothing, in one process


async def test_a_blocked_group_read_wakes_on_publish_or_times_out() -> None:
    broker = MemoryBroker()
    await broker.ensure_group("s", "g")
    start = anyio.current_time()
    assert await broker.read_group("s", "g", "c", block=0.05) == []
    assert anyio.current_time() - start >= 0.05 * 0.9
    assert await broker.read_group("s", "g", "c", block=0) == []  # no wait at all
    got: list[Entry] = []

    async def read() -> None:
        got.extend(await broker.read_group("s", "g", "c", block=5))

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await broker.publish("s", b"x")
    assert got == [Entry("1", b"x")]


async def test_a_lagging_group_makes_publishes_wait_then_refuses() -> None:
    broker = MemoryBroker(maxlen=3, full_timeout=0.1)
    await broker.ensure_group("s", "g")
    for n in range(3):
        await broker.publish("s", str(n).encode())
    start = anyio.current_time()
    with pytest.raises(BrokerFull, match=r"stream 's' is full: a consumer group has 3 unread"):
        await broker.publish("s", b"lost")
    assert anyio.current_time() - start >= 0.1 * 0.9
    assert ring(broker, "s") == 3
    # Nothing was overwritten: the group still reads every entry it had not read.
    assert [e.data for e in await broker.read_group("s", "g", "c")] == [b"0", b"1", b"2"]
    # Read (even unacknowledged) entries may go: publishing goes on.
    await broker.publish("s", b"3")
    assert ring(broker, "s") == 3


async def test_a_waiting_publish_goes_on_once_the_group_reads() -> None:
    broker = MemoryBroker(maxlen=2, full_timeout=5)
    await broker.ensure_group("s", "g")
    await broker.publish("s", b"a")
    await broker.publish("s", b"b")
    published: list[str] = []

    async def publish() -> None:
        published.append(await broker.publish("s", b"c"))

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(publish)
            await anyio.wait_all_tasks_blocked()
            assert published == []  # waiting for room
            assert [e.data for e in await broker.read_group("s", "g", "c", count=1)] == [b"a"]
    assert published == ["3"]
    assert [e.data for e in await broker.read_group("s", "g", "c")] == [b"b", b"c"]


async def test_a_subscriber_never_holds_publishers_back() -> None:
    broker = MemoryBroker(maxlen=2, full_timeout=10)
    entries = broker.subscribe("s", since="0")
    with anyio.fail_after(2):
        for n in range(10):
            await broker.publish("s", str(n).encode())
    assert (await take(entries, 1))[0].resync
    await entries.aclose()  # type: ignore[attr-defined]


async def test_park_keeps_a_bounded_record_with_the_reason() -> None:
    broker = MemoryBroker(maxlen=3)
    assert broker.parked("s") == []
    for n in range(5):
        await broker.park("s", Entry(str(n), b"\xffbad" if n == 4 else b"ok"), f"reason {n}")
    records = [orjson.loads(e.data) for e in broker.parked("s")]
    assert [r["reason"] for r in records] == ["reason 2", "reason 3", "reason 4"]
    assert records[-1] == {"id": "4", "reason": "reason 4", "data": "\ufffdbad"}


async def test_close_ends_subscriptions_and_group_reads_and_start_reopens() -> None:
    broker = MemoryBroker()
    await broker.ensure_group("s", "g")
    ended: list[str] = []

    async def subscribe() -> None:
        async for _ in broker.subscribe("s"):
            pass
        ended.append("subscription")

    async def read() -> None:
        assert await broker.read_group("s", "g", "c", block=30) == []
        ended.append("read")

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(subscribe)
            tasks.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await broker.close()
    assert sorted(ended) == ["read", "subscription"]
    # Closed: reads do not wait.
    with anyio.fail_after(1):
        assert await broker.read_group("s", "g", "c", block=30) == []
    await broker.start()
    entries = broker.subscribe("s")
    got: list[Entry] = []

    async def read_one() -> None:
        got.extend(await take(entries, 1))

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read_one)
        await anyio.wait_all_tasks_blocked()
        await broker.publish("s", b"again")
    assert got == [Entry("1", b"again")]
    await entries.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "backends", [("asyncio", "asyncio"), ("asyncio", "trio"), ("trio", "asyncio")]
)
def test_one_broker_serves_one_loop_after_another(backends: tuple[str, str]) -> None:
    # Tests run one event loop each; an app's broker outlives them.
    broker = MemoryBroker()

    async def round_trip(data: bytes) -> Entry:
        entries = broker.subscribe("s")
        got: list[Entry] = []

        async def read() -> None:
            got.extend(await take(entries, 1))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read)
            await anyio.wait_all_tasks_blocked()
            await broker.publish("s", data)
        await entries.aclose()  # type: ignore[attr-defined]
        return got[0]

    first = anyio.run(round_trip, b"one", backend=backends[0])
    second = anyio.run(round_trip, b"two", backend=backends[1])
    assert (first, second) == (Entry("1", b"one"), Entry("2", b"two"))
