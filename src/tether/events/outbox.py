"""The durable outbox: events kept in a database before the answer, relayed to the broker at least once.

In durable mode a call's events are written to the outbox after the function returned and
before the answer is sent (`Outbox.write`); a failed write turns the answer into a 503.
`OutboxRelay` then moves the rows to the broker, in id order, and marks them sent (for a
broker that loses its entries with the process, only once they were handled: its `settle`
hook). Each step survives a crash: a row is sent at least once, and a handler skips the
event ids it has recorded as processed (`seen`, `mark_processed`). The one repeat left is
a crash between a handler's own commit and its processed record: a handler whose effects
live elsewhere makes them idempotent on `event_id` to be exactly-once.

One code path serves SQLite (through aiosqlite, in WAL mode) and PostgreSQL (through
asyncpg), with SQLAlchemy 2's asyncio engine. Two tables, created if missing at `start()`:

- `{prefix}outbox`: `id` (in write order), `event_id` (unique: writing an event twice
  keeps one row), `stream`, `data`, `created_at`, `sent_at`, `claimed_by`,
  `claimed_until`, `attempts`. Times are seconds since the epoch (floats).
- `{prefix}processed`: `(handler, event_id)` pairs already handled, with `processed_at`.

Relays claim rows with a lease (`claimed_by`, `claimed_until`): a row is claimable while
unsent and unclaimed or its lease has expired, so the rows of a relay that died are picked
up by another once the lease runs out. On PostgreSQL the claim locks the rows it takes
with `FOR UPDATE SKIP LOCKED`, so concurrent relays never take one row at the same time;
SQLite serializes writers, and the claim is a single `UPDATE ... RETURNING` statement.

Within one process the outbox commits concurrent writes as a group: one transaction (one
disk flush on SQLite) carries the events of every call waiting at that moment. SQLite runs
with `synchronous=FULL`: an event acknowledged to a client survives a power cut too.

The outbox needs asyncio (aiosqlite and asyncpg do), and the `outbox` or `postgres` extra:
`pip install 'tether[outbox]'` or `'tether[postgres]'`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio

from ..brokers.base import Broker, BrokerError
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ("Outbox", "OutboxRecord", "OutboxRelay", "OutboxUnavailable")

logger = logging.getLogger("tether")

DEFAULT_URL = "sqlite+aiosqlite:///tether-outbox.sqlite3"
_DIALECTS = {"sqlite+aiosqlite": "sqlite", "postgresql+asyncpg": "postgresql"}


class OutboxUnavailable(Exception):
    """The outbox database could not be read or written within the outbox's timeout."""


class OutboxRecord(NamedTuple):
    """One claimed outbox row: what the relay publishes."""

    id: int
    """The row's id, in write order."""
    event_id: str
    """The event's id (unique in the outbox)."""
    stream: str
    """The broker stream the entry goes to."""
    data: bytes
    """The entry's bytes (an encoded `EventEnvelope`)."""


class _PendingWrite:
    """Rows of one call waiting for a group commit (outbox or processed rows), and its future."""

    __slots__ = ("future", "processed", "rows")

    def __init__(
        self, rows: list[dict[str, Any]], processed: bool, future: asyncio.Future[None]
    ) -> None:
        self.rows = rows
        self.processed = processed
        """True: rows of the processed table; False: of the outbox."""
        self.future = future


class Outbox:
    """The outbox tables in SQLite or PostgreSQL: durable events, relay claims, processed ids.

    Args:
        url: `sqlite+aiosqlite:///path` or `postgresql+asyncpg://user@host:port/db`.
        batch: rows a relay claims and publishes at a time.
        lease: seconds a claim lasts before another relay may take the rows.
        poll: seconds an idle relay waits before it looks again (a write also wakes it).
        table_prefix: prefix of the two table names.
        timeout: seconds an operation may take, waiting for the database included.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        batch: int = 100,
        lease: float = 30.0,
        poll: float = 0.5,
        table_prefix: str = "tether_",
        timeout: float = 5.0,
    ) -> None:
        driver = url.split(":", 1)[0]
        if driver not in _DIALECTS:
            raise ConfigurationError(
                f"Outbox({url!r}): the URL must start with sqlite+aiosqlite:// or "
                "postgresql+asyncpg://"
            )
        if batch < 1 or lease <= 0 or poll <= 0 or timeout <= 0:
            raise ConfigurationError("Outbox: batch, lease, poll and timeout must be positive")
        self.url = url
        """The SQLAlchemy URL of the database."""
        self.batch = batch
        """How many rows a relay claims and publishes at a time."""
        self.lease = lease
        """Seconds a relay's claim lasts; after that, another relay may take the rows."""
        self.poll = poll
        """Seconds an idle relay waits before looking for rows again (it is also woken)."""
        self.timeout = timeout
        """Seconds a write may take (waiting for the database included) before it fails."""
        self.dialect = _DIALECTS[driver]
        """`sqlite` or `postgresql`."""
        self._outbox, self._processed = _tables(table_prefix)
        self._engine: AsyncEngine | None = None
        self._start_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Group commit: `write` calls queue here; whoever holds `_writing` commits them all.
        self._queued: list[_PendingWrite] = []
        self._writing: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Outbox({self._display_url()!r})"

    def _display_url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and create the tables if missing (idempotent within one event loop)."""
        loop = asyncio.get_running_loop()
        if self._engine is not None and self._loop is loop:
            return
        if self._start_lock is None or self._loop is not loop:
            # Connections, locks and futures belong to one loop. A loop that ended without
            # `close()` (one loop per test) left them unusable: start afresh in this one.
            self._start_lock = asyncio.Lock()
            self._engine, self._loop, self._queued = None, loop, []
        async with self._start_lock:
            if self._engine is not None:  # another start() won the lock
                return
            engine = self._make_engine()
            try:
                await self._create_tables(engine)
            except BaseException:
                await engine.dispose()
                raise
            self._writing = asyncio.Lock()
            self._engine = engine

    async def _started(self) -> None:
        """Wait for a `start()` in progress (a handler may run before the bus has started us)."""
        starting = self._start_lock
        if self._engine is None and starting is not None and starting.locked():
            try:
                async with asyncio.timeout(self.timeout * 2), starting:
                    pass
            except TimeoutError as error:
                raise OutboxUnavailable(f"{self!r} is still starting") from error

    async def close(self) -> None:
        """Close the database connections; `start()` opens them again."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    def _make_engine(self) -> AsyncEngine:
        from sqlalchemy import event
        from sqlalchemy.ext.asyncio import create_async_engine

        if self.dialect == "postgresql":
            return create_async_engine(
                self.url, connect_args={"timeout": self.timeout, "command_timeout": self.timeout}
            )
        engine = create_async_engine(self.url)
        # SQLite gives up waiting for another writer a little before `timeout` runs out, so a
        # locked database fails with its own error rather than a cancelled statement.
        busy_ms = int(self.timeout * 800)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # busy_timeout first: switching to WAL takes a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.close()

        return engine

    async def _create_tables(self, engine: AsyncEngine) -> None:
        from sqlalchemy.exc import DBAPIError

        metadata = self._outbox.metadata
        for attempt in range(3):
            try:
                async with asyncio.timeout(self.timeout * 2), engine.begin() as connection:
                    await connection.run_sync(metadata.create_all)
                return
            except DBAPIError as error:
                # Two processes starting together both see the tables missing: one wins,
                # the other's CREATE fails, and a second look finds them.
                if attempt == 2:
                    raise OutboxUnavailable(
                        f"{self!r}: cannot create the tables: {error}"
                    ) from error
            except (OSError, TimeoutError) as error:
                raise OutboxUnavailable(f"{self!r}: cannot connect: {error}") from error

    @asynccontextmanager
    async def _transaction(self, *, serial: bool) -> AsyncIterator[AsyncConnection]:
        """A transaction that fails with OutboxUnavailable (never hangs past the timeout).

        `serial` statements write on SQLite: one at a time within the process, so that they
        queue on a lock here rather than in SQLite's busy handler (which sleeps up to 100 ms).
        """
        from sqlalchemy.exc import DBAPIError

        await self._started()
        engine = self._engine
        if engine is None or self._writing is None:
            raise OutboxUnavailable(f"{self!r} is not started")
        lock = self._writing if serial and self.dialect == "sqlite" else nullcontext()
        try:
            async with asyncio.timeout(self.timeout), lock, engine.begin() as connection:
                yield connection
        except TimeoutError as error:
            raise OutboxUnavailable(f"{self!r} did not answer within {self.timeout:g} s") from error
        except (DBAPIError, OSError) as error:
            raise OutboxUnavailable(f"{self!r}: {error}") from error

    def _insert(self, table: Table) -> Any:
        from sqlalchemy.dialects import postgresql, sqlite

        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    # -- writing -----------------------------------------------------------------------

    async def write(self, records: Sequence[tuple[str, str, bytes]]) -> None:
        """Store events as `(event_id, stream, data)` in one transaction; an event_id already there is kept.

        Concurrent writes of this process share one transaction (a group commit): one disk
        flush for the events of every call that waits at that moment.

        Raises:
            OutboxUnavailable: the database could not be written within the timeout.
        """
        if not records:
            return
        now = time.time()
        rows = [
            {"event_id": event_id, "stream": stream, "data": data, "created_at": now}
            for event_id, stream, data in records
        ]
        await self._write_grouped(rows, processed=False)

    async def _write_grouped(self, rows: list[dict[str, Any]], *, processed: bool) -> None:
        """Queue rows for the next group commit and wait for it (or make it, holding the lock)."""
        await self._started()
        if self._writing is None or self._engine is None:
            raise OutboxUnavailable(f"{self!r} is not started")
        mine = _PendingWrite(rows, processed, asyncio.get_running_loop().create_future())
        self._queued.append(mine)
        try:
            async with asyncio.timeout(self.timeout):
                async with self._writing:
                    if not mine.future.done():
                        await self._commit_queued(mine)
            mine.future.result()
        except TimeoutError as error:
            raise OutboxUnavailable(
                f"{self!r} could not be written within {self.timeout:g} s"
            ) from error
        finally:
            if mine in self._queued:
                self._queued.remove(mine)

    async def _commit_queued(self, mine: _PendingWrite) -> None:
        """Commit every queued write in one transaction, and settle their futures (holding `_writing`)."""
        from sqlalchemy.exc import DBAPIError

        group, self._queued = self._queued, []
        engine = self._engine
        events = [row for entry in group if not entry.processed for row in entry.rows]
        # Sorted by key: two processes recording overlapping pairs take their locks in one
        # order (PostgreSQL), never in opposite ones. Outbox rows keep their order: it is
        # the order the relay sends them in.
        processed = sorted(
            (row for entry in group if entry.processed for row in entry.rows),
            key=lambda row: (row["handler"], row["event_id"]),
        )
        try:
            if engine is None:
                raise OutboxUnavailable(f"{self!r} is not started")
            async with engine.begin() as connection:
                if events:
                    await connection.execute(
                        self._insert(self._outbox).on_conflict_do_nothing(
                            index_elements=["event_id"]
                        ),
                        events,
                    )
                if processed:
                    await connection.execute(
                        self._insert(self._processed).on_conflict_do_nothing(
                            index_elements=["handler", "event_id"]
                        ),
                        processed,
                    )
        except (DBAPIError, OSError, OutboxUnavailable) as error:
            failure = (
                error
                if isinstance(error, OutboxUnavailable)
                else OutboxUnavailable(f"{self!r} could not be written: {error}")
            )
            for entry in group:
                if not entry.future.done():
                    entry.future.set_exception(failure)
            # Marked retrieved: a caller that stopped waiting must not leave a warning.
            for entry in group:
                entry.future.exception()
            raise failure from error
        except BaseException:
            # Cancelled (our caller left, or timed out) mid-commit: the others' rows go back
            # in the queue for the next holder of the lock. Writes are idempotent on event_id,
            # so rows that did reach the database are not doubled.
            self._queued[:0] = [entry for entry in group if entry is not mine]
            raise
        for entry in group:
            if not entry.future.done():
                entry.future.set_result(None)

    # -- relaying ----------------------------------------------------------------------

    async def claim(self, relay: str, limit: int) -> list[OutboxRecord]:
        """Lease up to `limit` unsent rows to `relay`, oldest first (free or expired leases only)."""
        from sqlalchemy import or_, select, update

        table = self._outbox
        now = time.time()
        claimable = (
            select(table.c.id)
            .where(
                table.c.sent_at.is_(None),
                or_(table.c.claimed_until.is_(None), table.c.claimed_until < now),
            )
            .order_by(table.c.id)
            .limit(limit)
            # PostgreSQL: rows another relay is claiming right now are skipped, not waited
            # for nor taken twice. SQLite has no row locks (the clause is not rendered): its
            # writers are serialized, and this is one statement.
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(table)
            .where(table.c.id.in_(claimable))
            .values(claimed_by=relay, claimed_until=now + self.lease, attempts=table.c.attempts + 1)
            .returning(table.c.id, table.c.event_id, table.c.stream, table.c.data)
        )
        async with self._transaction(serial=True) as connection:
            rows = (await connection.execute(statement)).all()
        return sorted(OutboxRecord(row[0], row[1], row[2], bytes(row[3])) for row in rows)

    async def mark_sent(self, ids: Sequence[int]) -> None:
        """Record that the rows were published: they are never claimed again."""
        from sqlalchemy import update

        if not ids:
            return
        table = self._outbox
        statement = (
            update(table)
            .where(table.c.id.in_(list(ids)))
            .values(sent_at=time.time(), claimed_by=None, claimed_until=None)
        )
        async with self._transaction(serial=True) as connection:
            await connection.execute(statement)

    async def release(self, ids: Sequence[int]) -> None:
        """Give claimed rows back (their publish failed): any relay may claim them again now."""
        from sqlalchemy import update

        if not ids:
            return
        table = self._outbox
        statement = (
            update(table)
            .where(table.c.id.in_(list(ids)), table.c.sent_at.is_(None))
            .values(claimed_by=None, claimed_until=None)
        )
        async with self._transaction(serial=True) as connection:
            await connection.execute(statement)

    async def pending(self) -> int:
        """Return how many rows are not sent yet."""
        from sqlalchemy import func, select

        table = self._outbox
        statement = select(func.count()).select_from(table).where(table.c.sent_at.is_(None))
        async with self._transaction(serial=False) as connection:
            return int((await connection.execute(statement)).scalar_one())

    async def purge(self, older_than: float, *, processed_older_than: float | None = None) -> int:
        """Delete rows sent more than `older_than` seconds ago; return how many went.

        With `processed_older_than`, processed-id records older than that go too (keep them
        longer than a duplicate delivery can arrive: a lease, a broker's redelivery).
        """
        from sqlalchemy import delete

        now = time.time()
        outbox, processed = self._outbox, self._processed
        async with self._transaction(serial=True) as connection:
            result = await connection.execute(
                delete(outbox).where(
                    outbox.c.sent_at.is_not(None), outbox.c.sent_at < now - older_than
                )
            )
            if processed_older_than is not None:
                await connection.execute(
                    delete(processed).where(processed.c.processed_at < now - processed_older_than)
                )
        return int(result.rowcount)

    # -- processed ids -----------------------------------------------------------------

    async def seen(self, handler: str, event_id: str) -> bool:
        """Return whether `handler` already processed the event `event_id`."""
        from sqlalchemy import select

        table = self._processed
        statement = (
            select(table.c.event_id)
            .where(table.c.handler == handler, table.c.event_id == event_id)
            .limit(1)
        )
        async with self._transaction(serial=False) as connection:
            return (await connection.execute(statement)).first() is not None

    async def mark_processed(self, handler: str, event_id: str) -> None:
        """Record that `handler` processed `event_id` (idempotent).

        Concurrent records of this process share one transaction with each other and with
        concurrent `write`s (a group commit): the window in which a crash leaves a handled
        event unrecorded stays short under load.

        Raises:
            OutboxUnavailable: the database could not be written within the timeout.
        """
        row = {"handler": handler, "event_id": event_id, "processed_at": time.time()}
        await self._write_grouped([row], processed=True)


def _tables(prefix: str) -> tuple[Table, Table]:
    """The outbox and processed tables, named with `prefix`."""
    try:
        from sqlalchemy import (
            BigInteger,
            Column,
            Float,
            Index,
            Integer,
            LargeBinary,
            MetaData,
            String,
            Table,
        )
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ConfigurationError(
            "The outbox needs SQLAlchemy: pip install 'tether[outbox]' (SQLite) "
            "or 'tether[postgres]'"
        ) from error

    metadata = MetaData()
    outbox = Table(
        f"{prefix}outbox",
        metadata,
        # INTEGER PRIMARY KEY on SQLite (the rowid, increasing), BIGINT identity on PostgreSQL.
        Column(
            "id",
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("stream", String(255), nullable=False),
        Column("data", LargeBinary(), nullable=False),
        Column("created_at", Float(), nullable=False),
        Column("sent_at", Float(), nullable=True),
        Column("claimed_by", String(255), nullable=True),
        Column("claimed_until", Float(), nullable=True),
        Column("attempts", Integer(), nullable=False, default=0, server_default="0"),
    )
    # The relay's scan: unsent rows in id order, without reading the sent ones.
    Index(
        f"{prefix}outbox_unsent",
        outbox.c.id,
        sqlite_where=outbox.c.sent_at.is_(None),
        postgresql_where=outbox.c.sent_at.is_(None),
    )
    Index(f"{prefix}outbox_sent_at", outbox.c.sent_at)
    processed = Table(
        f"{prefix}processed",
        metadata,
        Column("handler", String(255), primary_key=True),
        Column("event_id", String(64), primary_key=True),
        Column("processed_at", Float(), nullable=False),
    )
    Index(f"{prefix}processed_at", processed.c.processed_at)
    return outbox, processed


def _relay_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OutboxRelay:
    """Moves outbox rows to the broker, in id order, at least once; runs until cancelled."""

    def __init__(
        self,
        outbox: Outbox,
        broker: Broker,
        *,
        name: str | None = None,
        settle: Callable[[str, Sequence[str]], Awaitable[None]] | None = None,
        max_backoff: float = 5.0,
        retention: float = 3600.0,
        processed_retention: float = 7 * 86400.0,
        purge_every: float = 300.0,
    ) -> None:
        self.outbox = outbox
        """The outbox the rows come from."""
        self.broker = broker
        """The broker they go to."""
        self.settle = settle
        """Awaited with a stream and the entry ids of rows just published to it, before they
        are marked sent. For a broker that loses its entries with the process (memory), the
        bus passes one that returns once every handler group has acknowledged them: a crash
        before that leaves the rows in the outbox, to be sent again. It may raise (or run
        past the lease) to leave them unsent. None: sent means published."""
        self.name = name or _relay_name()
        """This relay's name in the rows it claims (host, PID and a random part by default)."""
        self.max_backoff = max_backoff
        """The longest wait, in seconds, between tries while the broker or database is down."""
        self.retention = retention
        """Seconds a sent row is kept (idempotent writes of a retried event need it) before purge."""
        self.processed_retention = processed_retention
        """Seconds a processed-id record is kept before purge."""
        self.purge_every = purge_every
        """Seconds between purges."""
        self.sent = 0
        """How many rows this relay published."""
        self._wakeup: asyncio.Event | None = None

    def wake(self) -> None:
        """Tell the relay rows were written, so it publishes them now rather than at its next poll."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def run(self) -> None:
        """Relay until cancelled: claim a batch, publish it, mark it sent; back off while down."""
        self._wakeup = wakeup = asyncio.Event()
        backoff = 0.0
        next_purge = time.monotonic() + self.purge_every
        while True:
            # Cleared before the claim: a write during the batch sets it again, and the loop
            # goes round at once instead of sleeping on rows it did not see.
            wakeup.clear()
            try:
                moved = await self.relay_batch()
                if time.monotonic() >= next_purge:
                    next_purge = time.monotonic() + self.purge_every
                    await self.outbox.purge(
                        self.retention, processed_older_than=self.processed_retention
                    )
            except (BrokerError, OutboxUnavailable, TimeoutError) as error:
                backoff = min(max(backoff * 2, 0.05), self.max_backoff)
                logger.warning(
                    "outbox relay %s: %s; the rows stay in the outbox, retrying in %.2f s",
                    self.name,
                    error,
                    backoff,
                )
                await asyncio.sleep(backoff)
                continue
            except Exception:
                backoff = min(max(backoff * 2, 0.05), self.max_backoff)
                logger.exception("outbox relay %s failed; retrying in %.2f s", self.name, backoff)
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if moved >= self.outbox.batch:
                continue
            try:
                async with asyncio.timeout(self.outbox.poll):
                    await wakeup.wait()
            except TimeoutError:
                pass

    async def relay_batch(self) -> int:
        """Claim one batch, publish it in id order and mark it sent; return how many were sent.

        On a publish failure the rows published so far are marked sent, the others released
        (so they stay in the outbox for the next try), and the error is raised. With `settle`,
        rows are marked sent only once it returned for them.
        """
        records = await self.outbox.claim(self.name, self.outbox.batch)
        if not records:
            return 0
        # Stop short of the lease's end: past it, another relay may take the same rows.
        deadline = time.monotonic() + self.outbox.lease * 0.8
        published: list[int] = []
        entries: dict[str, list[str]] = {}
        settled = self.settle is None
        try:
            for record in records:
                if time.monotonic() > deadline:
                    break
                entry_id = await self.broker.publish(record.stream, record.data)
                published.append(record.id)
                entries.setdefault(record.stream, []).append(entry_id)
            if self.settle is not None:
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    for stream, ids in entries.items():
                        await self.settle(stream, ids)
                settled = True
        finally:
            # Rows never published go back at once. Rows published but not known to be
            # handled (`settle` did not return) keep their lease, and are sent again when it
            # runs out: the handlers' processed ids absorb the repeat.
            sent = published if settled else []
            self.sent += len(sent)
            tried = set(published)
            unsent = [record.id for record in records if record.id not in tried]
            try:
                # Shielded: when the bus stops the relay (an anyio cancel scope, which cancels
                # every later await too), what was published is still recorded.
                with anyio.move_on_after(self.outbox.timeout, shield=True):
                    await self.outbox.mark_sent(sent)
                    await self.outbox.release(unsent)
            except OutboxUnavailable as error:
                # The leases run out and the rows are claimed again: sent twice at worst,
                # which the handlers' processed ids absorb.
                logger.warning("outbox relay %s could not record its batch: %s", self.name, error)
        return len(sent)
