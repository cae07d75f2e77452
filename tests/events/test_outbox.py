"""The durable outbox and its relay, against SQLite (a temp file) and a real PostgreSQL.

Every test runs on both databases (the `outbox` fixture), with the same code. Only asyncio:
aiosqlite and asyncpg run on asyncio alone, so this module overrides `anyio_backend`.
"""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import anyio
import pytest

from tests.conftest import free_port
from tether.brokers.base import Broker, BrokerUnavailable, Entry
from tether.brokers.memory import MemoryBroker
from tether.errors import ConfigurationError
from tether.events.outbox import Outbox, OutboxRecord, OutboxRelay, OutboxUnavailable


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Outbox]:
    """Make Outbox objects on one database: a SQLite file, or PostgreSQL with fresh tables."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.sqlite3'}"
        prefix = "tether_"
    else:
        url = request.getfixturevalue("postgres_url")
        # Tables of their own per test: the cluster lives for the session.
        prefix = f"t{uuid.uuid4().hex[:10]}_"

    def make(**options: object) -> Outbox:
        return Outbox(url, table_prefix=prefix, **options)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def outbox(outbox_factory: Callable[..., Outbox]) -> AsyncIterator[Outbox]:
    box = outbox_factory(lease=60.0)
    await box.start()
    yield box
    await _drop_tables(box)
    await box.close()


async def _drop_tables(box: Outbox) -> None:
    if box.dialect != "postgresql":
        return
    engine = box._engine
    assert engine is not None
    async with engine.begin() as connection:
        await connection.run_sync(box._outbox.metadata.drop_all)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def records(n: int, start: int = 0, stream: str = "tether.events") -> list[tuple[str, str, bytes]]:
    return [(f"event-{i}", stream, f"data-{i}".encode()) for i in range(start, start + n)]


class RecordingBroker(Broker):
    """A broker that records what is published; it can be down, or fail on given publishes."""

    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.down = False
        self.attempts = 0
        self.failures = 0
        self.fail_on = fail_on or set()
        """1-based numbers of the publish attempts that fail."""
        self.hang_on: set[int] = set()
        """1-based numbers of the publish attempts that never return."""
        self.hanging = asyncio.Event()

    async def publish(self, stream: str, data: bytes) -> str:
        self.attempts += 1
        if self.attempts in self.hang_on:
            self.hanging.set()
            await asyncio.Event().wait()
        if self.down or self.attempts in self.fail_on:
            self.failures += 1
            raise BrokerUnavailable("the test broker is down")
        self.published.append((stream, data))
        return str(len(self.published))

    def subscribe(self, stream: str, *, since: str | None = None) -> AsyncIterator[Entry]:
        raise NotImplementedError

    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int = 100, block: float = 1.0
    ) -> list[Entry]:
        raise NotImplementedError

    async def ack(self, stream: str, group: str, *ids: str) -> None:
        raise NotImplementedError

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Entry]:
        raise NotImplementedError

    async def park(self, stream: str, entry: Entry, reason: str) -> None:
        raise NotImplementedError


async def running(relay: OutboxRelay) -> asyncio.Task[None]:
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(0)
    return task


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task


# -- the outbox ---------------------------------------------------------------------------


async def test_write_claim_mark_sent(outbox: Outbox) -> None:
    await outbox.write(records(3))
    assert await outbox.pending() == 3

    claimed = await outbox.claim("relay-a", 10)
    assert [(r.event_id, r.stream, r.data) for r in claimed] == records(3)
    assert [r.id for r in claimed] == sorted(r.id for r in claimed)
    assert all(isinstance(r, OutboxRecord) and isinstance(r.data, bytes) for r in claimed)
    # Claimed rows are leased: nobody else gets them.
    assert await outbox.claim("relay-b", 10) == []

    await outbox.mark_sent([claimed[0].id, claimed[1].id])
    assert await outbox.pending() == 1
    await outbox.release([claimed[2].id])
    again = await outbox.claim("relay-b", 10)
    assert [r.event_id for r in again] == ["event-2"]
    await outbox.mark_sent([again[0].id])
    assert await outbox.pending() == 0
    assert await outbox.claim("relay-b", 10) == []


async def test_claim_takes_the_oldest_rows_up_to_the_limit(outbox: Outbox) -> None:
    await outbox.write(records(5))
    await outbox.write(records(5, start=5))
    first = await outbox.claim("relay", 4)
    second = await outbox.claim("relay", 4)
    third = await outbox.claim("relay", 4)
    assert [r.event_id for r in first + second + third] == [f"event-{i}" for i in range(10)]
    assert len(third) == 2


async def test_writes_are_idempotent_on_event_id(outbox: Outbox) -> None:
    await outbox.write([("same", "s", b"first")])
    await outbox.write([("same", "s", b"second"), ("other", "s", b"x")])
    # Twice in one write, too.
    await outbox.write([("twice", "s", b"1"), ("twice", "s", b"2")])
    assert await outbox.pending() == 3
    claimed = await outbox.claim("relay", 10)
    assert {r.event_id: r.data for r in claimed} == {"same": b"first", "other": b"x", "twice": b"1"}
    # A retried write of an event already sent does not send it again.
    await outbox.mark_sent([r.id for r in claimed])
    await outbox.write([("same", "s", b"first")])
    assert await outbox.pending() == 0


async def test_concurrent_writes_all_land_once(outbox: Outbox) -> None:
    await asyncio.gather(*(outbox.write(records(1, start=i)) for i in range(300)))
    assert await outbox.pending() == 300
    claimed = await outbox.claim("relay", 1000)
    assert sorted(r.event_id for r in claimed) == sorted(f"event-{i}" for i in range(300))


async def test_a_cancelled_writer_does_not_lose_the_others(outbox: Outbox) -> None:
    writers = [asyncio.create_task(outbox.write(records(1, start=i))) for i in range(50)]
    await asyncio.sleep(0)
    writers[0].cancel()
    writers[25].cancel()
    results = await asyncio.gather(*writers, return_exceptions=True)
    kept = {f"event-{i}" for i, result in enumerate(results) if result is None}
    assert len(kept) >= 48
    stored = {r.event_id for r in await outbox.claim("relay", 100)}
    # Every write that returned is stored (a cancelled one may or may not be).
    assert kept <= stored


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    box = Outbox(f"sqlite+aiosqlite:///{path}")
    await box.start()
    try:
        await box.write(records(1))
        with sqlite3.connect(path) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        await box.close()


async def test_leases_expire_and_rows_are_claimed_again(
    outbox_factory: Callable[..., Outbox],
) -> None:
    box = outbox_factory(lease=0.3)
    await box.start()
    try:
        await box.write(records(2))
        taken = await box.claim("dead-relay", 10)
        assert len(taken) == 2
        assert await box.claim("live-relay", 10) == []
        await asyncio.sleep(0.4)
        again = await box.claim("live-relay", 10)
        assert [r.id for r in again] == [r.id for r in taken]
        assert await box.claim("third-relay", 10) == []
    finally:
        await _drop_tables(box)
        await box.close()


async def test_concurrent_claimers_never_share_a_row(
    outbox_factory: Callable[..., Outbox],
) -> None:
    """Two Outbox objects (two engines, as two processes), several claimers each: disjoint."""
    first, second = outbox_factory(lease=60.0), outbox_factory(lease=60.0)
    await first.start()
    await second.start()
    total = 2000
    try:
        await first.write(records(total))
        claims: list[list[int]] = []

        async def claimer(box: Outbox, name: str) -> None:
            while batch := await box.claim(name, 7):
                claims.append([r.id for r in batch])
                await asyncio.sleep(0)

        await asyncio.gather(
            *(
                claimer(box, f"{box_name}-{i}")
                for i in range(6)
                for box_name, box in (("first", first), ("second", second))
            )
        )
        every = [row_id for batch in claims for row_id in batch]
        assert len(every) == len(set(every)) == total
        assert len(claims) >= total // 7
    finally:
        await _drop_tables(first)
        await first.close()
        await second.close()


async def test_processed_records(outbox: Outbox) -> None:
    assert not await outbox.seen("index", "e1")
    await outbox.mark_processed("index", "e1")
    assert await outbox.seen("index", "e1")
    # Idempotent: a second record of the same pair changes nothing.
    await outbox.mark_processed("index", "e1")
    assert await outbox.seen("index", "e1")
    # Recorded together with concurrent writes (one group commit), each kept.
    await asyncio.gather(
        *(outbox.mark_processed("index", f"many-{i}") for i in range(50)),
        outbox.write(records(5)),
        outbox.mark_processed("index", "e1"),
    )
    assert all([await outbox.seen("index", f"many-{i}") for i in range(50)])
    assert await outbox.pending() == 5
    # Per handler.
    assert not await outbox.seen("billing", "e1")
    assert not await outbox.seen("index", "e2")


async def test_purge_deletes_old_sent_rows_only(outbox: Outbox) -> None:
    await outbox.write(records(3))
    claimed = await outbox.claim("relay", 10)
    await outbox.mark_sent([claimed[0].id, claimed[1].id])
    await outbox.mark_processed("index", "event-0")
    assert await outbox.purge(3600.0) == 0
    await asyncio.sleep(0.05)
    assert await outbox.purge(0.01) == 2
    assert await outbox.pending() == 1
    assert await outbox.seen("index", "event-0")
    assert await outbox.purge(0.01, processed_older_than=0.01) == 0
    assert not await outbox.seen("index", "event-0")
    # The unsent row is still there and still claimable once released.
    await outbox.release([claimed[2].id])
    assert [r.event_id for r in await outbox.claim("relay", 10)] == ["event-2"]


async def test_start_is_idempotent_and_tables_survive_a_restart(
    outbox_factory: Callable[..., Outbox],
) -> None:
    box = outbox_factory()
    await box.start()
    await box.start()
    await box.write(records(2))
    await box.close()
    reopened = outbox_factory()
    await reopened.start()
    try:
        assert await reopened.pending() == 2
    finally:
        await _drop_tables(reopened)
        await reopened.close()


async def test_a_locked_sqlite_database_fails_within_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite3"
    box = Outbox(f"sqlite+aiosqlite:///{path}", timeout=0.5)
    await box.start()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(OutboxUnavailable):
            await box.write(records(1))
        assert time.monotonic() - started < 1.5
        blocker.execute("ROLLBACK")
        # And it works again once the lock is gone.
        await box.write(records(1))
        assert await box.pending() == 1
    finally:
        blocker.close()
        await box.close()


async def test_an_unreachable_postgres_fails_fast() -> None:
    box = Outbox(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(OutboxUnavailable):
        await box.start()
    assert time.monotonic() - started < 5.0


async def test_writes_before_start_fail_clearly(tmp_path: Path) -> None:
    box = Outbox(f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}")
    with pytest.raises(OutboxUnavailable, match="not started"):
        await box.write(records(1))


def test_bad_configuration() -> None:
    with pytest.raises(ConfigurationError, match="sqlite"):
        Outbox("mysql://localhost/db")
    with pytest.raises(ConfigurationError, match="positive"):
        Outbox(batch=0)
    assert "secret" not in repr(Outbox("postgresql+asyncpg://u:secret@localhost/db"))


# -- the relay ----------------------------------------------------------------------------


async def test_relay_delivers_into_a_memory_broker_in_order(outbox: Outbox) -> None:
    broker = MemoryBroker()
    relay = OutboxRelay(outbox, broker)
    await outbox.write(records(250))
    task = await running(relay)
    try:
        await eventually(lambda: _none_pending(outbox))
    finally:
        await stop(task)
    assert relay.sent == 250
    got: list[bytes] = []
    async for entry in broker.subscribe("tether.events", since="0"):
        got.append(entry.data)
        if len(got) == 250:
            break
    assert got == [data for _, _, data in records(250)]
    await broker.close()


async def _none_pending(outbox: Outbox) -> bool:
    return await outbox.pending() == 0


async def test_wake_sends_at_once_rather_than_at_the_next_poll(
    outbox_factory: Callable[..., Outbox],
) -> None:
    box = outbox_factory(poll=30.0)
    await box.start()
    broker = RecordingBroker()
    relay = OutboxRelay(box, broker)
    task = await running(relay)
    try:
        await asyncio.sleep(0.2)  # idle now: waiting for a wake or 30 s
        await box.write(records(1))
        relay.wake()
        started = time.monotonic()
        await eventually(lambda: _none_pending(box), within=5.0)
        assert time.monotonic() - started < 2.0
        assert broker.published == [("tether.events", b"data-0")]
    finally:
        await stop(task)
        await _drop_tables(box)
        await box.close()


async def test_rows_stay_in_the_outbox_while_the_broker_is_down(outbox: Outbox) -> None:
    broker = RecordingBroker()
    broker.down = True
    relay = OutboxRelay(outbox, broker, max_backoff=0.1)
    await outbox.write(records(5))
    task = await running(relay)
    try:
        await eventually(lambda: _failed(broker, 3))
        assert await outbox.pending() == 5
        assert broker.published == []
        broker.down = False
        await eventually(lambda: _none_pending(outbox))
    finally:
        await stop(task)
    # Each row once, in order: a failed publish gives its batch back, sent rows stay sent.
    assert [data for _, data in broker.published] == [data for _, _, data in records(5)]


async def _failed(broker: RecordingBroker, n: int) -> bool:
    return broker.failures >= n


async def test_a_failure_mid_batch_keeps_what_was_sent_and_retries_the_rest(
    outbox: Outbox,
) -> None:
    broker = RecordingBroker(fail_on={3, 4, 5})
    relay = OutboxRelay(outbox, broker, max_backoff=0.1)
    await outbox.write(records(6))
    task = await running(relay)
    try:
        await eventually(lambda: _none_pending(outbox))
    finally:
        await stop(task)
    assert broker.failures == 3
    assert [data for _, data in broker.published] == [data for _, _, data in records(6)]
    assert relay.sent == 6


async def test_relay_picks_up_the_rows_of_a_dead_relay(
    outbox_factory: Callable[..., Outbox],
) -> None:
    box = outbox_factory(lease=0.5)
    await box.start()
    await box.write(records(3))
    assert len(await box.claim("a-relay-that-died", 10)) == 3
    broker = RecordingBroker()
    task = await running(OutboxRelay(box, broker))
    try:
        await asyncio.sleep(0.2)
        assert broker.published == []  # leased to the dead relay still
        await eventually(lambda: _none_pending(box))
        assert len(broker.published) == 3
    finally:
        await stop(task)
        await _drop_tables(box)
        await box.close()


async def test_two_relays_send_each_row_once(outbox_factory: Callable[..., Outbox]) -> None:
    first, second = outbox_factory(batch=10), outbox_factory(batch=10)
    await first.start()
    await second.start()
    broker = RecordingBroker()
    tasks = [
        await running(OutboxRelay(first, broker, name="relay-1")),
        await running(OutboxRelay(second, broker, name="relay-2")),
    ]
    try:
        for start in range(0, 600, 50):
            await first.write(records(50, start=start))
        await eventually(lambda: _none_pending(first))
    finally:
        await stop(*tasks)
        await _drop_tables(first)
        await first.close()
        await second.close()
    sent = [data for _, data in broker.published]
    assert len(sent) == len(set(sent)) == 600


async def test_relay_purges_old_sent_rows(outbox_factory: Callable[..., Outbox]) -> None:
    box = outbox_factory()
    await box.start()
    broker = RecordingBroker()
    relay = OutboxRelay(box, broker, retention=0.0, purge_every=0.05)
    await box.write(records(3))
    task = await running(relay)
    try:
        await eventually(lambda: _none_pending(box))

        async def purged() -> bool:
            relay.wake()
            return (
                await box.purge(3600.0) == 0
                and not await box.claim("x", 10)
                and (await _rows(box) == 0)
            )

        await eventually(purged)
    finally:
        await stop(task)
        await _drop_tables(box)
        await box.close()
    assert len(broker.published) == 3


async def _rows(box: Outbox) -> int:
    from sqlalchemy import func, select

    engine = box._engine
    assert engine is not None
    async with engine.connect() as connection:
        result = await connection.execute(select(func.count()).select_from(box._outbox))
        return int(result.scalar_one())


async def test_settle_holds_rows_until_it_returns(outbox: Outbox) -> None:
    """With `settle` (a broker that loses entries with the process), sent means handled."""
    broker = MemoryBroker()
    handled = asyncio.Event()
    calls: list[tuple[str, list[str]]] = []

    async def settle(stream: str, ids: Sequence[str]) -> None:
        calls.append((stream, list(ids)))
        await handled.wait()

    relay = OutboxRelay(outbox, broker, settle=settle)
    await outbox.write(records(3))
    task = await running(relay)
    try:
        await eventually(lambda: _true(bool(calls)))
        await asyncio.sleep(0.1)
        assert await outbox.pending() == 3  # published, not yet handled: still in the outbox
        handled.set()
        await eventually(lambda: _none_pending(outbox))
    finally:
        await stop(task)
        await broker.close()
    assert calls == [("tether.events", ["1", "2", "3"])]
    assert relay.sent == 3


async def test_rows_whose_settle_failed_are_sent_again_after_the_lease(
    outbox_factory: Callable[..., Outbox],
) -> None:
    box = outbox_factory(lease=0.5)
    await box.start()
    broker = RecordingBroker()
    attempts = 0

    async def settle(stream: str, ids: Sequence[str]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise TimeoutError("the handlers did not finish")  # as a crash would leave them

    relay = OutboxRelay(box, broker, settle=settle, max_backoff=0.05)
    await box.write(records(2))
    task = await running(relay)
    try:
        await eventually(lambda: _true(attempts >= 1))
        await asyncio.sleep(0.2)
        # Not released at once: they keep the lease of the relay that published them.
        assert await box.pending() == 2
        assert len(broker.published) == 2
        await eventually(lambda: _none_pending(box))
    finally:
        await stop(task)
        await _drop_tables(box)
        await box.close()
    assert attempts == 2
    assert [data for _, data in broker.published] == [b"data-0", b"data-1"] * 2


async def _true(value: bool) -> bool:
    return value


async def test_a_relay_stopped_mid_batch_records_what_it_published(outbox: Outbox) -> None:
    """Stopped by an anyio cancel scope (as the bus stops it): sent rows marked, others freed."""
    broker = RecordingBroker()
    broker.hang_on = {3}
    await outbox.write(records(4))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(OutboxRelay(outbox, broker).run)
        await broker.hanging.wait()
        tasks.cancel_scope.cancel()
    assert len(broker.published) == 2
    assert await outbox.pending() == 2
    # Given back, not left leased to the stopped relay: claimable at once.
    assert [r.event_id for r in await outbox.claim("next-relay", 10)] == ["event-2", "event-3"]


# The first loop's connections cannot be closed once it has ended: they warn when collected.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_new_event_loop_starts_afresh(outbox_factory: Callable[..., Outbox]) -> None:
    """A loop that ended without `close()` (one loop per test) does not break the next one."""
    box = outbox_factory()

    async def first() -> None:
        await box.start()
        await box.write(records(1))

    async def second() -> int:
        await box.start()
        await box.write(records(1, start=1))
        try:
            return await box.pending()
        finally:
            await _drop_tables(box)
            await box.close()

    asyncio.run(first())
    assert asyncio.run(second()) == 2
    gc.collect()  # here, where the warnings are expected, not in a later test


class BrokenOnceBroker(RecordingBroker):
    """Raises an unexpected error on its first publish (a bug, not an outage)."""

    async def publish(self, stream: str, data: bytes) -> str:
        if self.attempts == 0:
            self.attempts += 1
            raise RuntimeError("a bug in the broker")
        return await super().publish(stream, data)


async def test_an_unexpected_error_is_logged_and_the_relay_goes_on(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    broker = BrokenOnceBroker()
    relay = OutboxRelay(outbox, broker, name="relay-x", max_backoff=0.05)
    await outbox.write(records(2))
    with caplog.at_level("WARNING", logger="tether"):
        task = await running(relay)
        try:
            await eventually(lambda: _none_pending(outbox))
        finally:
            await stop(task)
    assert [data for _, data in broker.published] == [b"data-0", b"data-1"]
    failures = [r for r in caplog.records if "relay-x failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "a bug in the broker" in str(failures[0].exc_info[1])


async def test_calls_during_start_wait_for_it(outbox_factory: Callable[..., Outbox]) -> None:
    """A handler may run before the bus has finished starting the outbox: it waits, not fails."""
    box = outbox_factory()
    starting = asyncio.create_task(box.start())
    await asyncio.sleep(0)  # start() holds its lock, creating the tables
    try:
        assert not await box.seen("index", "e1")
        await box.mark_processed("index", "e1")
        await box.write(records(1))
        assert await box.pending() == 1
        await starting
    finally:
        await _drop_tables(box)
        await box.close()
