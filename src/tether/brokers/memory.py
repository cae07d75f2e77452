"""The in-process broker: bounded streams in memory, for one process (the embedded default).

Each stream is a ring of its last `maxlen` entries, with ids 1, 2, 3... as strings.
Fan-out subscribers read it at their own pace through a cursor: one that falls more than
`maxlen` entries behind, or resumes from an id the ring no longer holds, gets one
`resync` entry and goes on from the newest entries. Groups read it through a shared
cursor; their entries are never overwritten before the group has read them: a publish
that would overwrite one waits up to `full_timeout` seconds for the group to catch up,
then raises `BrokerFull`. Nothing grows without limit.

Works on asyncio and on trio. Ack and reclaim are kept for the interface's sake: in one
process a consumer that stops takes its pending entries with it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Sequence

import anyio
import orjson

from .._runtime import runner_token
from .base import Broker, BrokerFull, Entry

__all__ = ("MemoryBroker",)

DEFAULT_MAXLEN = 10_000


class _Group:
    __slots__ = ("cursor", "pending")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        """Sequence number of the last entry handed to a consumer of the group."""
        self.pending: dict[str, Entry] = {}
        """Entries handed out and not yet acknowledged."""


class _Stream:
    __slots__ = ("entries", "groups", "head", "runner", "wake")

    def __init__(self, maxlen: int) -> None:
        self.entries: deque[Entry] = deque(maxlen=maxlen)
        self.head = 0
        """Sequence number of the newest entry (0: none yet)."""
        self.groups: dict[str, _Group] = {}
        self.wake: anyio.Event | None = None
        self.runner: object = None

    @property
    def first(self) -> int:
        """Sequence number of the oldest entry still held."""
        return self.head - len(self.entries) + 1

    def signal(self) -> None:
        wake = self.wake
        if wake is not None:
            self.wake = None
            wake.set()

    def waiter(self) -> anyio.Event:
        runner = runner_token()
        if self.wake is None or self.runner is not runner:
            self.wake = anyio.Event()
            self.runner = runner
        return self.wake

    def since(self, seq: int) -> list[Entry]:
        """Entries after `seq` that the ring still holds, in order."""
        start = max(seq + 1, self.first)
        if start > self.head:
            return []
        offset = start - self.first
        return [self.entries[i] for i in range(offset, len(self.entries))]


class MemoryBroker(Broker):
    """Streams in memory, for one process: bounded, and waiting (not growing) when full.

    Args:
        maxlen: entries a stream holds (default 10,000): the replay history of
            subscribers, and the most a group may lag behind publishers.
        full_timeout: seconds a publish waits for a lagging group before `BrokerFull`.
    """

    def __init__(self, *, maxlen: int = DEFAULT_MAXLEN, full_timeout: float = 5.0) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self.url = "memory://"
        self.maxlen = maxlen
        """Entries each stream holds."""
        self.full_timeout = full_timeout
        """Seconds a publish waits for a lagging group before raising `BrokerFull`."""
        self._streams: dict[str, _Stream] = {}
        self._closing = False

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream(self.maxlen)
        return stream

    def backlog_of(self, stream: str, group: str) -> int:
        """Entries of `stream` that `group` has not read yet, plus those it has not acknowledged."""
        state = self._streams.get(stream)
        if state is None or group not in state.groups:
            return 0
        lagging = state.groups[group]
        return state.head - lagging.cursor + len(lagging.pending)

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create `group` at the stream's newest entry, if missing."""
        state = self._stream(stream)
        if group not in state.groups:
            state.groups[group] = _Group(state.head)

    def acknowledged(self, stream: str, group: str, ids: Sequence[str]) -> bool:
        """Whether `group` has read and acknowledged every entry of `ids` (false for an unknown group)."""
        state = self._streams.get(stream)
        lagging = state.groups.get(group) if state is not None else None
        if lagging is None:
            return False
        return all(
            _seq(entry_id) <= lagging.cursor and entry_id not in lagging.pending for entry_id in ids
        )

    async def backlog(self, stream: str, group: str) -> int:
        """Entries `group` has not read or not acknowledged yet."""
        return self.backlog_of(stream, group)

    async def publish(self, stream: str, data: bytes) -> str:
        """Append `data`, waiting (up to `full_timeout`) while a group would lose an unread entry."""
        state = self._stream(stream)
        if state.groups and self._full(state):
            with anyio.move_on_after(self.full_timeout):
                while self._full(state):
                    await state.waiter().wait()
            if self._full(state):
                raise BrokerFull(
                    f"stream {stream!r} is full: a consumer group has {self.maxlen} unread"
                    f" entries and did not catch up within {self.full_timeout} s"
                )
        state.head += 1
        entry = Entry(str(state.head), data)
        state.entries.append(entry)
        state.signal()
        return entry.id

    def _full(self, state: _Stream) -> bool:
        # Appending drops the oldest entry when the ring is full: refused while a group
        # has not read it yet.
        return len(state.entries) == self.maxlen and any(
            group.cursor < state.first for group in state.groups.values()
        )

    async def position(self, stream: str) -> str:
        """Return the id of the stream's newest entry ("0" before the first)."""
        return str(self._stream(stream).head)

    async def subscribe(self, stream: str, *, since: str | None = None) -> AsyncIterator[Entry]:
        """Iterate entries published from now on (or after `since`), with a resync entry on a gap."""
        state = self._stream(stream)
        if since is None:
            cursor = state.head
        else:
            cursor = _seq(since)
            if cursor > state.head or cursor + 1 < state.first:
                # Unknown (from before a restart) or no longer held: start afresh.
                cursor = state.head
                yield Entry(str(cursor), b"", resync=True)
        while not self._closing:
            if cursor + 1 < state.first:
                cursor = state.head
                yield Entry(str(cursor), b"", resync=True)
                continue
            batch = state.since(cursor)
            if not batch:
                await state.waiter().wait()
                continue
            for entry in batch:
                cursor = int(entry.id)
                yield entry

    async def read_after(self, stream: str, since: str, count: int) -> tuple[list[Entry], bool]:
        """Return up to `count` held entries after `since`; True when some are gone (or `since` is unknown)."""
        state = self._stream(stream)
        cursor = _seq(since)
        if cursor < 0 or cursor > state.head or cursor + 1 < state.first:
            return [], True
        return state.since(cursor)[:count], False

    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int = 100, block: float = 1.0
    ) -> list[Entry]:
        """Hand up to `count` unread entries to `consumer`, waiting up to `block` seconds for one."""
        state = self._stream(stream)
        await self.ensure_group(stream, group)
        lagging = state.groups[group]
        if lagging.cursor >= state.head and block > 0 and not self._closing:
            with anyio.move_on_after(block):
                while lagging.cursor >= state.head and not self._closing:
                    await state.waiter().wait()
        batch = state.since(lagging.cursor)[:count]
        if batch:
            lagging.cursor = int(batch[-1].id)
            for entry in batch:
                lagging.pending[entry.id] = entry
            state.signal()  # publishers waiting for room
        return batch

    async def ack(self, stream: str, group: str, *ids: str) -> None:
        """Forget acknowledged entries."""
        state = self._streams.get(stream)
        lagging = state.groups.get(group) if state is not None else None
        if lagging is not None:
            for entry_id in ids:
                lagging.pending.pop(entry_id, None)

    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Entry]:
        """Nothing to reclaim in one process: a consumer that stops takes its entries with it."""
        return []

    async def park(self, stream: str, entry: Entry, reason: str) -> None:
        """Keep the entry in the bounded `{stream}.parked` stream: `{"id", "reason", "data"}`."""
        data = entry.data.decode("utf-8", "replace")
        state = self._stream(f"{stream}.parked")
        state.head += 1
        # Copied to its exact size: orjson's bytes keep a 4 KB buffer, and parked entries stay.
        record = bytes(memoryview(orjson.dumps({"id": entry.id, "reason": reason, "data": data})))
        state.entries.append(Entry(str(state.head), record))
        state.signal()

    def parked(self, stream: str) -> list[Entry]:
        """Return the parked entries of `stream` still held (for inspection and tests)."""
        state = self._streams.get(f"{stream}.parked")
        return list(state.entries) if state is not None else []

    async def start(self) -> None:
        """Open the broker again after `close()` (an app served twice, in tests)."""
        self._closing = False

    async def close(self) -> None:
        """End every subscription and group read."""
        self._closing = True
        for state in self._streams.values():
            state.signal()


def _seq(entry_id: str) -> int:
    try:
        return int(entry_id)
    except ValueError:
        return -1
