"""Redis Streams as a broker: the events of every process of an app, on one Redis.

`RedisBroker("redis://host:port/db")` implements `Broker` with redis-py's asyncio client, so
it runs on asyncio only (uvicorn's default loop), not on trio. What it keeps in Redis:

- a broker stream is the Redis stream of the same name; an entry's bytes are its one field
  `d` (`XADD name MAXLEN ~ maxlen * d <bytes>`), so a stream holds about `maxlen` entries
  (trimmed a node at a time, never below `maxlen`);
- entry ids are Redis's own (`1700000000000-0`): the resume tokens of `subscribe(since=...)`;
- a group is a Redis consumer group, made at `$` (with MKSTREAM) on first use; `ack` is
  XACK, and `reclaim` takes a dead consumer's pending entries over with XAUTOCLAIM;
- `park` adds the entry to the stream `{name}.parked` (capped at `parked_maxlen`): its field
  `d` is the JSON record `{"id", "reason", "data"}` that MemoryBroker parks too, and its field
  `reason` repeats the reason for people reading with `redis-cli`.

Faults. A call (`publish`, `ack`, ...) that Redis does not answer within `timeout` seconds,
because it is down, unreachable or stuck, raises `BrokerUnavailable`: a request never waits
for a reconnection loop (a pooled connection broken by a Redis restart is retried once, at
once, within the same `timeout`). Subscriptions outlive an outage instead: they reconnect with
backoff and resume after the last id they yielded. When entries they had not yet yielded are
gone (trimmed while they lagged, or lost by a Redis restarted without persistence, which they
notice by its new run id), they yield one `Entry(resync=True)` whose id is the stream's latest,
and go on from there.

Each blocking reader (a subscription; a group's consumer) has a connection of its own, so a
blocking read never holds up publishers; its read waits at most its BLOCK time plus `timeout`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import anyio
import orjson
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    RedisError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
)

from .base import Broker, BrokerError, BrokerUnavailable, Entry

__all__ = ("RedisBroker",)

T = TypeVar("T")

_FIELD = b"d"
_ZERO = "0-0"
_SUBSCRIBE_BLOCK = 5.0
"""Seconds a subscription's XREAD blocks before asking again (a silent dead link shows then)."""
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a broken, refused or silent connection raises (builtin TimeoutError is an OSError)."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _order(entry_id: str) -> tuple[int, int]:
    """Return an id (`"ms-seq"` or `"ms"`) as a pair that sorts as Redis orders ids."""
    ms, _, seq = entry_id.partition("-")
    pair = int(ms), int(seq or 0)
    if not all(0 <= part < 2**64 for part in pair):
        raise ValueError(f"not a stream id: {entry_id!r}")
    return pair


def _read(reply: Any) -> list[Entry]:
    """Entries of an XREAD / XREADGROUP reply on one stream (None when the BLOCK ran out)."""
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3: {stream: [[entries]]}
        return _entries(next(iter(reply.values()))[0])
    return _entries(reply[0][1])  # RESP2: [[stream, [entries]]]


def _entries(items: Iterable[tuple[bytes, dict[bytes, bytes] | None]]) -> list[Entry]:
    """Entries from Redis's `[(id, fields)]`, skipping ids whose entry was deleted meanwhile.

    An entry without the field `d` (not written by a broker) comes with empty data, so that
    whoever decodes it parks it instead of stalling on it.
    """
    return [
        Entry(id=_text(entry_id), data=fields.get(_FIELD, b""))
        for entry_id, fields in items
        if fields is not None
    ]


class RedisBroker(Broker):
    """A broker on Redis Streams, shared by every process of an app (scale-out).

    Args:
        url: `redis://[user:password@]host:port/db` (or `rediss://`).
        maxlen: about how many entries each stream keeps (`XADD MAXLEN ~`).
        timeout: seconds a call may wait for Redis before raising `BrokerUnavailable`.
        parked_maxlen: about how many entries each `{stream}.parked` keeps.
        batch: at most this many entries per read of a subscription.
        max_connections: connections for commands, at most (a call waits for a free one).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        maxlen: int = 100_000,
        timeout: float = 2.0,
        parked_maxlen: int = 10_000,
        batch: int = 100,
        max_connections: int = 100,
    ) -> None:
        if min(maxlen, parked_maxlen, batch, max_connections) < 1 or not timeout > 0:
            raise ValueError(
                "RedisBroker: maxlen, parked_maxlen, batch, max_connections and timeout must be > 0"
            )
        self.url = url
        self.maxlen = maxlen
        """About how many entries each stream keeps."""
        self.timeout = timeout
        """Seconds a call may wait for Redis before it raises `BrokerUnavailable`."""
        self.parked_maxlen = parked_maxlen
        """About how many entries each `{stream}.parked` keeps."""
        self.max_connections = max_connections
        """At most this many connections for commands (blocking readers have their own)."""
        # A reader that lags by more than a batch may have lost entries to trimming; a batch
        # no larger than maxlen makes "a full batch" a sure sign of lag worth checking.
        self._batch = min(batch, maxlen)
        parts = urlsplit(url)  # for messages: never the password
        self._where = (
            parts.path
            if parts.scheme == "unix"
            else f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path}"
        )
        self._client: Redis | None = None
        self._readers: dict[tuple[str, str, str], Redis] = {}
        self._subscribers: set[Redis] = set()
        self._groups: set[tuple[str, str]] = set()
        self._closed: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        return f"RedisBroker({self._where!r}, maxlen={self.maxlen})"

    # -- connections -------------------------------------------------------------------

    def _connect(
        self, *, blocking: bool, on_connect: Callable[[Connection], Awaitable[None]] | None = None
    ) -> Redis:
        """A client with a pool of its own (closed with it).

        Commands share one pool of up to `max_connections`; a call waits for a free one within
        its `timeout`. A blocking reader has a pool of its own, whose socket waits as long as
        its call may (BLOCK + `timeout`, enforced around the call by `_bounded`).
        """
        options: dict[str, Any] = {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": None if blocking else self.timeout,
            # Commands: one immediate retry, for a pooled connection that a Redis restart broke
            # (no backoff, no retry of a timeout: `timeout` bounds the whole call). Readers:
            # none, so that they notice an outage, and check what they may have missed.
            "retry": Retry(
                NoBackoff(), 0 if blocking else 1, supported_errors=(RedisConnectionError,)
            ),
        }
        if on_connect is not None:
            options["redis_connect_func"] = on_connect
        if blocking:
            pool = ConnectionPool.from_url(self.url, **options)
        else:
            pool = BlockingConnectionPool.from_url(
                self.url, max_connections=self.max_connections, timeout=self.timeout, **options
            )
        return Redis.from_pool(pool)

    def _started(self) -> tuple[Redis, asyncio.Future[None]]:
        closed = self._closed
        if (
            self._client is None
            or closed is None
            or closed.done()
            or closed.get_loop() is not asyncio.get_running_loop()
        ):
            # First use, after close(), or on a new event loop (tests run one per test): the
            # connections of a loop that has ended are of no use on this one.
            self._readers.clear()
            self._subscribers.clear()
            self._groups.clear()
            self._client = self._connect(blocking=False)
            self._closed = closed = asyncio.get_running_loop().create_future()
        return self._client, closed

    async def start(self) -> None:
        """Make the connection pool (no round trip: Redis may come up later)."""
        self._started()

    async def close(self) -> None:
        """Close every connection; subscriptions and blocked group reads end."""
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        clients = [*self._readers.values(), *self._subscribers]
        if self._client is not None:
            clients.append(self._client)
        self._client = None
        self._readers.clear()
        self._subscribers.clear()
        self._groups.clear()
        for client in clients:
            await client.aclose()

    async def _bounded(self, awaitable: Awaitable[T], what: str, seconds: float) -> T:
        """Await a Redis call for at most `seconds`; connection faults become BrokerUnavailable."""
        try:
            async with asyncio.timeout(seconds):
                return await awaitable
        except _UNAVAILABLE as error:
            raise BrokerUnavailable(
                f"Redis at {self._where} did not answer {what} within {seconds:g} s: "
                f"{error or type(error).__name__}"
            ) from error
        except RedisError as error:
            raise BrokerError(f"Redis at {self._where} refused {what}: {error}") from error

    async def _call(self, awaitable: Awaitable[T], what: str) -> T:
        return await self._bounded(awaitable, what, self.timeout)

    async def _unless_closed(
        self, awaitable: Awaitable[T], closed: asyncio.Future[None]
    ) -> T | None:
        """Await a blocking read, or return None as soon as the broker closes."""
        read = asyncio.ensure_future(awaitable)
        try:
            await asyncio.wait((read, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not read.done():
                read.cancel()
                read.add_done_callback(_consume)
        return read.result() if read.done() else None

    # -- publishing --------------------------------------------------------------------

    async def publish(self, stream: str, data: bytes) -> str:
        """XADD `data` (field `d`) to `stream`, capped at about `maxlen`; return the entry id.

        Raises:
            BrokerUnavailable: Redis did not answer within `timeout` seconds.
        """
        client, _ = self._started()
        entry_id = await self._call(
            client.xadd(stream, {_FIELD: data}, maxlen=self.maxlen, approximate=True), "XADD"
        )
        return _text(entry_id)

    async def publish_many(self, stream: str, items: Sequence[bytes]) -> list[str]:
        """XADD every item to `stream` in one pipeline (one round trip), in order; return their ids.

        Raises:
            BrokerUnavailable: Redis did not answer within `timeout` seconds.
        """
        if len(items) < 2:
            return [await self.publish(stream, data) for data in items]
        client, _ = self._started()

        async def run() -> list[Any]:
            async with client.pipeline(transaction=False) as pipe:
                for data in items:
                    pipe.xadd(stream, {_FIELD: data}, maxlen=self.maxlen, approximate=True)
                return list(await pipe.execute())

        return [_text(entry_id) for entry_id in await self._call(run(), "XADD")]

    async def park(self, stream: str, entry: Entry, reason: str) -> None:
        """XADD the entry to `{stream}.parked` (capped), as MemoryBroker keeps it.

        Field `d` holds the JSON `{"id", "reason", "data"}` (data as text), the record every
        broker parks, so a reader of `{stream}.parked` need not know which broker it reads;
        field `reason` repeats the reason, for `redis-cli XRANGE` readers.
        """
        client, _ = self._started()
        record = orjson.dumps(
            {"id": entry.id, "reason": reason, "data": entry.data.decode("utf-8", "replace")}
        )
        fields: dict[Any, Any] = {_FIELD: record, b"reason": reason}
        await self._call(
            client.xadd(f"{stream}.parked", fields, maxlen=self.parked_maxlen, approximate=True),
            "XADD (park)",
        )

    # -- fan-out -----------------------------------------------------------------------

    async def subscribe(self, stream: str, *, since: str | None = None) -> AsyncIterator[Entry]:
        """Yield every entry of `stream` after `since` (default: after now), across outages.

        The subscription starts reading when first iterated. If entries after `since` (or
        after the last one yielded, on a reconnection) are gone, it yields one
        `Entry(resync=True)` with the stream's latest id first. It ends when the broker closes.
        """
        _, closed = self._started()
        connections = _Connections()
        reader = self._connect(blocking=True, on_connect=connections.made)
        self._subscribers.add(reader)
        last, server, seen, failures = since, "", -1, 0
        try:
            while not closed.done():
                resync: Entry | None = None
                entries: list[Entry] = []
                try:
                    if connections.count != seen:  # first connection, or a new one since
                        current = await self._unless_closed(self._server_id(reader), closed)
                        if current is None:
                            return
                        seen = connections.count
                        # A new run id: a restarted Redis, which may have lost entries.
                        restarted = bool(server) and current != server
                        if last is None:
                            last = await self._call(self._latest(reader, stream), "XINFO")
                        elif await self._call(
                            self._lost_after(reader, stream, last, restarted=restarted), "XINFO"
                        ):
                            last = await self._call(self._latest(reader, stream), "XINFO")
                            resync = Entry(id=last, data=b"", resync=True)
                        server = current
                    if resync is None:
                        assert last is not None
                        found: Any = await self._unless_closed(
                            self._bounded(
                                reader.xread(
                                    {stream: last},
                                    count=self._batch,
                                    block=int(_SUBSCRIBE_BLOCK * 1000),
                                ),
                                "XREAD",
                                _SUBSCRIBE_BLOCK + self.timeout,
                            ),
                            closed,
                        )
                        if found is None:
                            return
                        if connections.count != seen:
                            # The pool replaced a connection broken meanwhile: check what
                            # this server still holds before yielding anything it read.
                            continue
                        entries = _read(found)
                        if len(entries) == self._batch and await self._call(
                            self._lost_after(reader, stream, last, restarted=False), "XINFO"
                        ):
                            # A full batch: this reader lags, and some entries it never saw
                            # were trimmed before it read them.
                            last = await self._call(self._latest(reader, stream), "XINFO")
                            resync, entries = Entry(id=last, data=b"", resync=True), []
                    failures = 0
                except BrokerUnavailable:
                    failures += 1
                    delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (failures - 1))
                    await self._unless_closed(asyncio.sleep(delay * random.uniform(0.5, 1)), closed)
                    seen = -1
                    continue
                if resync is not None:
                    yield resync
                for entry in entries:
                    last = entry.id
                    yield entry
        finally:
            # Shielded: a cancelled reader (its subscriber stopped) must still close its
            # connection now, not leave it to the garbage collector.
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.timeout):
                await reader.aclose()
            self._subscribers.discard(reader)

    async def read_after(self, stream: str, since: str, count: int) -> tuple[list[Entry], bool]:
        """XRANGE up to `count` entries after `since`; True when some after it are gone.

        Raises:
            BrokerUnavailable: Redis did not answer within `timeout` seconds.
        """
        client, _ = self._started()
        if await self._call(self._lost_after(client, stream, since, restarted=False), "XINFO"):
            return [], True
        found: Any = await self._call(client.xrange(stream, min=f"({since}", count=count), "XRANGE")
        return _entries(found or []), False

    async def position(self, stream: str) -> str:
        """Return the stream's last generated id (`0-0` before the first entry).

        Raises:
            BrokerUnavailable: Redis did not answer within `timeout` seconds.
        """
        client, _ = self._started()
        return await self._call(self._latest(client, stream), "XINFO")

    async def _server_id(self, client: Redis) -> str:
        """The run id of the Redis server behind `client` (a restarted server has a new one)."""
        info = await self._call(client.info("server"), "INFO")
        return _text(info.get("run_id", ""))

    async def _latest(self, client: Redis, stream: str) -> str:
        """The stream's last generated id (`0-0` if there is no such stream)."""
        try:
            info = await client.xinfo_stream(stream)
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return _ZERO
            raise
        return _text(info["last-generated-id"])

    async def _lost_after(self, client: Redis, stream: str, since: str, *, restarted: bool) -> bool:
        """Whether entries after `since` may be gone from the stream (trimmed or lost in a restart).

        Certain when `since` is still an entry (nothing after it was trimmed: trimming takes the
        oldest first); otherwise decided from XINFO, erring on the side of a resync.
        """
        try:
            position = _order(since)
        except ValueError:
            return True  # a token that is no id of ours: start over
        if await client.xrange(stream, min=since, max=since, count=1):
            return False
        if restarted:
            return True  # a new server that lacks our last entry: what followed it is lost
        try:
            info = await client.xinfo_stream(stream)
        except ResponseError as error:
            if "no such key" in str(error).lower():
                return position != (0, 0)  # the stream is gone, with what followed `since`
            raise
        last = _order(_text(info["last-generated-id"]))
        if position >= last:
            return position > last  # beyond the stream's last id: the stream was made anew
        first = info.get("first-entry")
        if not first:
            return True  # entries after `since` existed, and none is left
        if position > _order(_text(first[0])):
            return False  # inside the retained range: everything after `since` is there
        # Before the first retained entry: lost only if anything was ever removed.
        added = info.get("entries-added")
        return added is None or int(added) > int(info["length"])

    # -- groups ------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str) -> None:
        """XGROUP CREATE `group` at `$` (with MKSTREAM) if it does not exist yet."""
        client, _ = self._started()
        await self._ensure_group(client, stream, group, start="$")

    async def _ensure_group(self, client: Redis, stream: str, group: str, *, start: str) -> None:
        if (stream, group) in self._groups:
            return
        try:
            await self._call(client.xgroup_create(stream, group, id=start, mkstream=True), "XGROUP")
        except BrokerError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._groups.add((stream, group))

    async def backlog(self, stream: str, group: str) -> int:
        """Entries of `stream` that `group` has not read (its lag) or not acknowledged (pending)."""
        client, _ = self._started()
        try:
            groups = await self._call(client.xinfo_groups(stream), "XINFO GROUPS")
        except BrokerError as error:
            if "no such key" in str(error).lower():
                return 0
            raise
        for info in groups:
            if _text(info["name"]) != group:
                continue
            pending = int(info["pending"])
            lag = info.get("lag")
            if lag is None or int(lag) > 0:
                # Redis < 7 has no lag; Redis 7 has none, or a stale one, around deleted
                # entries: whether any entry follows the last delivered one settles it.
                after = f"({_text(info['last-delivered-id'])}"
                later: Any = await self._call(client.xrange(stream, min=after, count=1), "XRANGE")
                lag = (lag or 1) if later else 0
            return pending + int(lag)
        return 0

    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int = 100, block: float = 1.0
    ) -> list[Entry]:
        """XREADGROUP `>` for `consumer` of `group` (made at `$` first), blocking up to `block` s.

        Returns an empty list when nothing came, or when the broker closes meanwhile.
        """
        client, closed = self._started()
        key = (stream, group, consumer)
        reader = self._readers.get(key)
        if reader is None:
            reader = self._readers[key] = self._connect(blocking=True)
        block_ms = int(block * 1000) if block > 0 else None
        start = "$"
        while True:
            await self._ensure_group(client, stream, group, start=start)
            try:
                found: Any = await self._unless_closed(
                    self._bounded(
                        reader.xreadgroup(
                            group, consumer, {stream: ">"}, count=count, block=block_ms
                        ),
                        "XREADGROUP",
                        max(block, 0) + self.timeout,
                    ),
                    closed,
                )
            except BrokerError as error:
                if "NOGROUP" not in str(error) or start == _ZERO:
                    raise
                # The group vanished (a Redis restarted without persistence): make it again,
                # from the stream's start, so entries published since the restart are not missed.
                self._groups.discard((stream, group))
                start = _ZERO
                continue
            return _read(found)

    async def ack(self, stream: str, group: str, *ids: str) -> None:
        """XACK the entries: `group` is done with them."""
        if ids:
            client, _ = self._started()
            await self._call(client.xack(stream, group, *ids), "XACK")

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Entry]:
        """XAUTOCLAIM for `consumer` up to `count` entries pending longer than `min_idle` s."""
        client, _ = self._started()
        claimed: list[Entry] = []
        cursor = _ZERO
        while len(claimed) < count:
            try:
                reply = await self._call(
                    client.xautoclaim(
                        stream,
                        group,
                        consumer,
                        min_idle_time=int(min_idle * 1000),
                        start_id=cursor,
                        count=count - len(claimed),
                    ),
                    "XAUTOCLAIM",
                )
            except BrokerError as error:
                if "NOGROUP" in str(error):
                    return claimed  # no such group (yet): nothing is pending
                raise
            claimed.extend(_entries(cast(Any, reply)[1]))
            cursor = _text(reply[0])
            if cursor == _ZERO:
                break
        return claimed


class _Connections:
    """Counts the connections a reader's pool made: a new one may lead to a restarted Redis."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    async def made(self, connection: Connection) -> None:
        """Set the new connection up as redis-py would (AUTH, SELECT...), and count it."""
        await connection.on_connect()
        self.count += 1


def _consume(task: asyncio.Future[Any]) -> None:
    """Retrieve a cancelled read's outcome, so that asyncio never logs it as unretrieved."""
    if not task.cancelled():
        task.exception()
