"""RedisBroker against a real Redis (Debian's redis-server on a loopback port).

redis-py's client is asyncio-only, so these tests run on asyncio alone. Each test uses its own
stream names; the tests that stop, pause or restart Redis run their own server.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from redis.asyncio import Redis

from tests._redis_server import RedisServer, running_redis
from tether.brokers.base import BrokerError, BrokerUnavailable, Entry
from tether.brokers.redis import RedisBroker


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fresh(name: str = "s") -> str:
    """A stream name no other test uses."""
    return f"test.{name}.{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker(redis_url, timeout=2.0)
    await broker.start()
    yield broker
    await broker.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def next_entry(entries: AsyncIterator[Entry]) -> Entry:
    async with asyncio.timeout(10):
        return await anext(entries)


async def live(broker: RedisBroker, stream: str, entries: AsyncIterator[Entry]) -> None:
    """Wait until `entries` (a fresh subscription) reads: publish markers until one arrives.

    Afterwards the subscription has consumed every marker, and yields only what comes next.
    """
    first = asyncio.ensure_future(anext(entries))
    async with asyncio.timeout(10):
        while not first.done():
            await broker.publish(stream, b"marker")
            await asyncio.wait([first], timeout=0.05)
    assert first.result().data == b"marker"
    await broker.publish(stream, b"go")
    while (await next_entry(entries)).data != b"go":
        pass


async def test_subscribers_see_every_entry_after_subscribing_in_order(broker: RedisBroker) -> None:
    stream = fresh()
    await broker.publish(stream, b"before")
    one, two = broker.subscribe(stream), broker.subscribe(stream)
    await live(broker, stream, one)
    await live(broker, stream, two)
    await broker.publish(stream, b"both")
    while (await next_entry(one)).data != b"both":  # the markers of `two`
        pass
    assert (await next_entry(two)).data == b"both"
    ids = [await broker.publish(stream, str(n).encode()) for n in range(250)]
    for entries in (one, two):
        got = [await next_entry(entries) for _ in range(250)]
        assert [entry.data for entry in got] == [str(n).encode() for n in range(250)]
        assert [entry.id for entry in got] == ids
        assert not any(entry.resync for entry in got)
    await one.aclose()  # type: ignore[attr-defined]
    await two.aclose()  # type: ignore[attr-defined]


async def test_since_resumes_after_that_entry_without_duplicates(broker: RedisBroker) -> None:
    stream = fresh()
    first = await broker.publish(stream, b"a")
    await broker.publish(stream, b"b")
    await broker.publish(stream, b"c")
    entries = broker.subscribe(stream, since=first)
    assert [(await next_entry(entries)).data for _ in range(2)] == [b"b", b"c"]
    await broker.publish(stream, b"d")
    assert (await next_entry(entries)).data == b"d"
    await entries.aclose()  # type: ignore[attr-defined]


async def test_since_zero_replays_a_whole_stream_and_since_on_a_missing_one_resyncs(
    broker: RedisBroker,
) -> None:
    stream = fresh()
    entries = broker.subscribe(stream, since="5-0")  # a stream that is gone (or never was)
    assert (await next_entry(entries)).resync
    await entries.aclose()  # type: ignore[attr-defined]
    for data in (b"a", b"b"):
        await broker.publish(stream, data)
    entries = broker.subscribe(stream, since="0-0")
    assert [(await next_entry(entries)).data for _ in range(2)] == [b"a", b"b"]
    await entries.aclose()  # type: ignore[attr-defined]


async def test_since_older_than_the_retained_history_yields_one_resync_first(
    redis_url: str,
) -> None:
    broker = RedisBroker(redis_url, maxlen=10)
    stream = fresh()
    try:
        gone = await broker.publish(stream, b"old")
        for n in range(400):  # MAXLEN ~ trims whole nodes (100 entries): make sure `old` goes
            latest = await broker.publish(stream, str(n).encode())
        entries = broker.subscribe(stream, since=gone)
        resync = await next_entry(entries)
        assert resync == Entry(id=latest, data=b"", resync=True)
        new = await broker.publish(stream, b"new")
        assert await next_entry(entries) == Entry(id=new, data=b"new")
        await entries.aclose()  # type: ignore[attr-defined]

        # A token that is not an id resyncs too; so does one beyond the stream (made anew).
        for token in ("garbage", "1-2-3", "-1", str(2**64), "99999999999999-0"):
            entries = broker.subscribe(stream, since=token)
            assert (await next_entry(entries)).resync
            await entries.aclose()  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_a_subscriber_lagging_past_the_cap_resyncs_instead_of_skipping_silently(
    redis_url: str,
) -> None:
    broker = RedisBroker(redis_url, maxlen=10, batch=10)
    stream = fresh()
    try:
        entries = broker.subscribe(stream)
        await live(broker, stream, entries)
        for n in range(400):  # while the subscriber does not read
            latest = await broker.publish(stream, str(n).encode())
        resync = await next_entry(entries)
        assert resync == Entry(id=latest, data=b"", resync=True)
        await broker.publish(stream, b"after")
        assert (await next_entry(entries)).data == b"after"
        await entries.aclose()  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_the_stream_length_stays_near_maxlen(redis_url: str, raw: Redis) -> None:
    broker = RedisBroker(redis_url, maxlen=50)
    stream = fresh()
    try:
        for n in range(1000):
            await broker.publish(stream, str(n).encode())
        # MAXLEN ~ keeps at least maxlen, and trims a node (100 entries by default) at a time.
        assert 50 <= await raw.xlen(stream) <= 50 + 100
        last = await raw.xrevrange(stream, count=1)
        assert last[0][1] == {b"d": b"999"}  # the data is the one field `d`
    finally:
        await broker.close()


async def test_each_entry_reaches_one_consumer_of_a_group_and_every_group(
    broker: RedisBroker,
) -> None:
    stream = fresh()
    for group in ("billing", "search"):  # groups start at `$`: make them before publishing
        assert await broker.read_group(stream, group, "c1", block=0.01) == []
    ids = [await broker.publish(stream, str(n).encode()) for n in range(30)]
    first = await broker.read_group(stream, "billing", "c1", count=10)
    second = await broker.read_group(stream, "billing", "c2", count=100)
    assert len(first) == 10
    assert [entry.id for entry in first + second] == ids
    assert [entry.data for entry in second] == [str(n).encode() for n in range(10, 30)]
    assert await broker.read_group(stream, "billing", "c1", block=0.05) == []
    everything = await broker.read_group(stream, "search", "c9", count=100)
    assert [entry.id for entry in everything] == ids


async def test_a_blocked_group_read_returns_what_is_published_meanwhile(
    broker: RedisBroker,
) -> None:
    stream = fresh()
    await broker.read_group(stream, "g", "c", block=0.01)
    reading = asyncio.ensure_future(broker.read_group(stream, "g", "c", block=5))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    published = await broker.publish(stream, b"x")  # a blocked reader holds up no publisher
    assert time.monotonic() - started < 0.5
    got = await asyncio.wait_for(reading, 5)
    assert [entry.id for entry in got] == [published]


async def test_unacknowledged_entries_of_a_dead_consumer_are_reclaimed(
    broker: RedisBroker, raw: Redis
) -> None:
    stream = fresh()
    await broker.read_group(stream, "g", "dead", block=0.01)
    ids = [await broker.publish(stream, str(n).encode()) for n in range(5)]
    taken = await broker.read_group(stream, "g", "dead")
    assert [entry.id for entry in taken] == ids
    await broker.ack(stream, "g", *ids[:2])
    await broker.ack(stream, "g")  # nothing: a no-op
    assert await broker.reclaim(stream, "g", "alive", min_idle=5.0) == []  # not idle long enough
    await asyncio.sleep(0.15)
    reclaimed = await broker.reclaim(stream, "g", "alive", min_idle=0.1, count=2)
    assert [entry.id for entry in reclaimed] == ids[2:4]
    reclaimed += await broker.reclaim(stream, "g", "alive", min_idle=0.1)
    assert [(entry.id, entry.data) for entry in reclaimed] == [
        (entry_id, str(n).encode()) for n, entry_id in enumerate(ids) if n >= 2
    ]
    await broker.ack(stream, "g", *(entry.id for entry in reclaimed))
    assert (await raw.xpending(stream, "g"))["pending"] == 0
    await asyncio.sleep(0.15)
    assert await broker.reclaim(stream, "g", "alive", min_idle=0.1) == []
    assert await broker.reclaim(stream, "no-such-group", "alive", min_idle=0) == []


async def test_parked_entries_go_to_the_capped_parked_stream_with_their_reason(
    redis_url: str, raw: Redis
) -> None:
    broker = RedisBroker(redis_url, parked_maxlen=20)
    stream = fresh()
    try:
        entry_id = await broker.publish(stream, b"\xffnot json")
        await broker.park(stream, Entry(id=entry_id, data=b"\xffnot json"), "undecodable")
        parked = await raw.xrange(f"{stream}.parked")
        assert len(parked) == 1
        fields = parked[0][1]
        assert fields[b"reason"] == b"undecodable"
        assert orjson.loads(fields[b"d"]) == {
            "id": entry_id,
            "reason": "undecodable",
            "data": "\ufffdnot json",
        }
        for n in range(300):
            await broker.park(stream, Entry(id=f"{n}-1", data=b"x"), "failed")
        assert await raw.xlen(f"{stream}.parked") <= 20 + 100
    finally:
        await broker.close()


async def test_backlog_counts_what_a_group_has_not_read_or_not_acknowledged(
    broker: RedisBroker, raw: Redis
) -> None:
    stream = fresh()
    assert await broker.backlog(stream, "g") == 0  # no stream
    await broker.ensure_group(stream, "g")
    await broker.ensure_group(stream, "g")  # idempotent
    other = RedisBroker(broker.url)
    await other.ensure_group(stream, "g")  # BUSYGROUP: made by another process
    await other.close()
    assert await broker.backlog(stream, "other") == 0  # no such group
    ids = [await broker.publish(stream, b"x") for _ in range(4)]
    assert await broker.backlog(stream, "g") == 4
    taken = await broker.read_group(stream, "g", "c", count=3)
    assert await broker.backlog(stream, "g") == 4  # 1 unread + 3 pending
    await broker.ack(stream, "g", *(entry.id for entry in taken))
    assert await broker.backlog(stream, "g") == 1
    ids.append(await broker.publish(stream, b"x"))
    await raw.xdel(stream, ids[3])  # Redis cannot count the lag past a deleted entry...
    assert await broker.backlog(stream, "g") == 1  # ...which is then looked up
    rest = await broker.read_group(stream, "g", "c")
    assert [entry.id for entry in rest] == [ids[4]]
    assert await broker.backlog(stream, "g") == 1
    await broker.ack(stream, "g", ids[4])
    assert await broker.backlog(stream, "g") == 0


async def test_an_entry_without_the_data_field_reads_as_empty_data(
    broker: RedisBroker, raw: Redis
) -> None:
    stream = fresh()
    await broker.read_group(stream, "g", "c", block=0.01)
    foreign = (await raw.xadd(stream, {"other": "x"})).decode()
    entries = broker.subscribe(stream, since="0-0")
    assert await next_entry(entries) == Entry(id=foreign, data=b"")
    assert await broker.read_group(stream, "g", "c") == [Entry(id=foreign, data=b"")]
    await entries.aclose()  # type: ignore[attr-defined]


async def test_a_redis_error_that_is_no_outage_is_a_broker_error(
    broker: RedisBroker, raw: Redis
) -> None:
    stream = fresh()
    await raw.set(stream, "a string, not a stream")
    for call in (
        lambda: broker.publish(stream, b"x"),
        lambda: broker.ensure_group(stream, "g"),
        lambda: broker.read_group(stream, "g", "c", block=0.01),
        lambda: broker.backlog(stream, "g"),
        lambda: anext(broker.subscribe(stream)),
        lambda: anext(broker.subscribe(stream, since="1-0")),
    ):
        with pytest.raises(BrokerError) as raised:
            await call()
        assert not isinstance(raised.value, BrokerUnavailable)
        assert "WRONGTYPE" in str(raised.value)


async def test_a_subscription_made_before_its_stream_exists_sees_the_first_entry(
    broker: RedisBroker, raw: Redis
) -> None:
    stream = fresh()
    entries = broker.subscribe(stream)
    first = asyncio.ensure_future(anext(entries))
    async with asyncio.timeout(10):  # until it blocks in XREAD (it has taken its position)
        while b"cmd=xread" not in await raw.execute_command("CLIENT", "LIST"):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    published = await broker.publish(stream, b"first")
    assert await asyncio.wait_for(first, 10) == Entry(id=published, data=b"first")
    await entries.aclose()  # type: ignore[attr-defined]


async def test_since_an_entry_deleted_resumes_after_it_unless_all_after_it_are_gone(
    broker: RedisBroker, raw: Redis
) -> None:
    stream = fresh()
    a, b, c = [await broker.publish(stream, data) for data in (b"a", b"b", b"c")]
    await raw.xdel(stream, b)
    entries = broker.subscribe(stream, since=b)  # gone, but nothing after it is
    assert await next_entry(entries) == Entry(id=c, data=b"c")
    await entries.aclose()  # type: ignore[attr-defined]
    await raw.xdel(stream, a, c)  # the stream is empty now: what followed `a` is gone
    entries = broker.subscribe(stream, since=a)
    assert await next_entry(entries) == Entry(id=c, data=b"", resync=True)
    await entries.aclose()  # type: ignore[attr-defined]


async def test_close_ends_subscriptions_and_blocked_group_reads_at_once(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    stream = fresh()
    entries = broker.subscribe(stream)
    await live(broker, stream, entries)
    waiting = asyncio.ensure_future(anext(entries))
    await broker.read_group(stream, "g", "c", block=0.01)
    reading = asyncio.ensure_future(broker.read_group(stream, "g", "c", block=30))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await broker.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 2)
    assert await asyncio.wait_for(reading, 2) == []
    assert time.monotonic() - started < 1
    # A closed broker starts again on next use.
    assert await broker.publish(stream, b"again")
    await broker.close()


async def test_redis_down_raises_broker_unavailable_within_the_timeout(
    own_redis: RedisServer,
) -> None:
    timeout = 0.5
    broker = RedisBroker(own_redis.url, timeout=timeout)
    stream = fresh()
    try:
        await broker.publish(stream, b"up")
        await broker.read_group(stream, "g", "c", block=0.01)

        own_redis.pause()  # connections open, nothing answers: the slow case
        try:
            for call in (
                lambda: broker.publish(stream, b"x"),
                lambda: broker.read_group(stream, "g", "c", block=0.2),
                lambda: broker.ack(stream, "g", "1-0"),
            ):
                started = time.monotonic()
                with pytest.raises(BrokerUnavailable, match="did not answer"):
                    await call()
                assert time.monotonic() - started < timeout + 0.2 + 1
        finally:
            own_redis.resume()

        own_redis.stop()  # nobody listening: refused at once
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            await broker.publish(stream, b"x")
        with pytest.raises(BrokerUnavailable):
            await broker.reclaim(stream, "g", "c", min_idle=0)
        assert time.monotonic() - started < timeout + 1

        own_redis.start()  # back: the next call works, without a wait for reconnection
        assert await broker.publish(stream, b"back")
    finally:
        await broker.close()


async def test_a_subscriber_survives_a_restart_and_resyncs_when_entries_were_lost(
    own_redis: RedisServer,
) -> None:
    broker = RedisBroker(own_redis.url, timeout=0.5)
    stream = fresh()
    try:
        entries = broker.subscribe(stream)
        await live(broker, stream, entries)
        waiting = asyncio.ensure_future(anext(entries))
        own_redis.restart()  # without persistence: the stream is gone
        async with asyncio.timeout(20):
            while True:  # publish until the reconnected subscriber reads
                try:
                    await broker.publish(stream, b"after")
                except BrokerUnavailable:
                    pass
                await asyncio.wait([waiting], timeout=0.1)
                if waiting.done():
                    break
        assert waiting.result().resync
        later = await broker.publish(stream, b"later")  # resumes from the resync entry's id
        assert await next_entry(entries) == Entry(id=later, data=b"later")
        await entries.aclose()  # type: ignore[attr-defined]
    finally:
        await broker.close()


async def test_a_subscriber_resumes_without_loss_after_a_restart_that_kept_the_data() -> None:
    with running_redis(persistent=True) as server:
        broker = RedisBroker(server.url, timeout=0.5)
        stream = fresh()
        try:
            entries = broker.subscribe(stream)
            await live(broker, stream, entries)
            waiting = asyncio.ensure_future(anext(entries))
            server.stop()
            await asyncio.sleep(0.3)  # the subscriber notices and retries meanwhile
            server.start()
            sent = [await broker.publish(stream, str(n).encode()) for n in range(3)]
            first = await asyncio.wait_for(waiting, 20)
            got = [first, *[await next_entry(entries) for _ in range(2)]]
            assert [(entry.id, entry.resync) for entry in got] == [(i, False) for i in sent]
            await entries.aclose()  # type: ignore[attr-defined]
        finally:
            await broker.close()


async def test_group_reads_recover_when_a_restart_lost_the_group(own_redis: RedisServer) -> None:
    broker = RedisBroker(own_redis.url, timeout=0.5)
    stream = fresh()
    try:
        await broker.read_group(stream, "g", "c", block=0.01)
        own_redis.restart()  # the group is gone with the data
        published = await broker.publish(stream, b"after restart")
        # Made again from the start of the new stream: nothing published since is missed.
        got = await broker.read_group(stream, "g", "c", block=1)
        assert [entry.id for entry in got] == [published]
    finally:
        await broker.close()


async def test_a_resp3_connection_reads_the_same(redis_url: str) -> None:
    broker = RedisBroker(f"{redis_url}?protocol=3")  # RESP3 replies are shaped differently
    stream = fresh()
    try:
        await broker.ensure_group(stream, "g")
        first = await broker.publish(stream, b"a")
        second = await broker.publish(stream, b"b")
        entries = broker.subscribe(stream, since=first)
        assert await next_entry(entries) == Entry(id=second, data=b"b")
        await entries.aclose()  # type: ignore[attr-defined]
        assert [entry.id for entry in await broker.read_group(stream, "g", "c")] == [first, second]
        assert await broker.backlog(stream, "g") == 2
        await asyncio.sleep(0.05)
        reclaimed = await broker.reclaim(stream, "g", "other", min_idle=0.01)
        assert [entry.data for entry in reclaimed] == [b"a", b"b"]
    finally:
        await broker.close()


async def test_closing_a_broker_never_started_is_harmless(redis_url: str) -> None:
    await RedisBroker(redis_url).close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        RedisBroker(maxlen=0)
    assert repr(RedisBroker("redis://:secret@10.0.0.1:6390/2")) == (
        "RedisBroker('10.0.0.1:6390/2', maxlen=100000)"
    )
    assert repr(RedisBroker("unix:///run/redis.sock", maxlen=5)) == (
        "RedisBroker('/run/redis.sock', maxlen=5)"
    )


async def test_publish_many_is_one_pipeline_in_order(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    stream = f"many-{uuid.uuid4().hex}"
    try:
        ids = await broker.publish_many(stream, [b"a", b"b", b"c"])
        assert len(ids) == 3
        assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
        assert await broker.publish_many(stream, [b"d"]) != []
        assert await broker.publish_many(stream, []) == []
        client = Redis.from_url(redis_url)
        try:
            entries = await client.xrange(stream)
        finally:
            await client.aclose()
        assert [fields[b"d"] for _, fields in entries] == [b"a", b"b", b"c", b"d"]
        assert [entry_id.decode() for entry_id, _ in entries][:3] == ids
    finally:
        await broker.close()
