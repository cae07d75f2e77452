"""The broker interface: how events and live pushes travel between processes.

A broker keeps named, append-only *streams* of opaque byte entries. Each entry gets an
id from the broker, increasing within its stream, which is also the resume token a
reader presents to pick up where it stopped. Two ways of reading a stream:

- **fan-out** (`subscribe`): every subscriber, in every process, sees every entry
  published after it subscribed, or after the id it resumes from;
- **groups** (`read_group`, `ack`, `reclaim`): the consumers of one named group share
  the entries, each delivered to one consumer, and redelivered (`reclaim`) if that
  consumer stops without acknowledging it.

`MemoryBroker` (one process, the embedded default) and `RedisBroker` (Redis Streams,
many processes) implement it; events use it now, and live push will use the same one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

__all__ = ("Broker", "BrokerError", "BrokerFull", "BrokerUnavailable", "Entry", "entry_order")


def entry_order(entry_id: str) -> tuple[int, int]:
    """Return an entry id as a sortable pair: `"1700000000000-3"` (Redis) or `"42"` (memory).

    Raises:
        ValueError: the text is not an entry id.
    """
    head, _, tail = entry_id.partition("-")
    return int(head), int(tail) if tail else 0


class BrokerError(Exception):
    """Base of the errors a broker raises."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached (Redis is down); raised fast, never after a hang."""


class BrokerFull(BrokerError):
    """A bounded in-process stream stayed full for longer than the broker waits."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a stream: its id (the resume token) and its bytes."""

    id: str
    """The broker's id for the entry, increasing within its stream."""
    data: bytes
    """The entry's payload, opaque to the broker."""
    resync: bool = False
    """Set on the one entry a resuming subscriber gets instead of entries it can no longer
    be given (they left the stream's bounded history); `data` is then empty and `id` is
    the latest id, to resume from next time."""


class Broker(ABC):
    """Moves entries of named streams between publishers and readers, in one or many processes."""

    url: str = ""
    """The URL the broker was made from (`memory://`, `redis://host:port/db`)."""

    @abstractmethod
    async def publish(self, stream: str, data: bytes) -> str:
        """Append `data` to `stream` and return its entry id.

        Raises:
            BrokerUnavailable: the broker cannot be reached (within its timeout).
            BrokerFull: a bounded in-process stream stayed full past its wait.
        """

    async def publish_many(self, stream: str, items: Sequence[bytes]) -> list[str]:
        """Append several entries to `stream`, in order (one round trip where the broker can).

        Raises:
            BrokerUnavailable: the broker cannot be reached (within its timeout).
            BrokerFull: a bounded in-process stream stayed full past its wait.
        """
        return [await self.publish(stream, data) for data in items]

    async def position(self, stream: str) -> str:
        """Return the id of `stream`'s newest entry, a `since=` that misses nothing published after now.

        `api.events.subscribe` needs it; a broker used only by handler groups may leave it out.

        Raises:
            BrokerUnavailable: the broker cannot be reached (within its timeout).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement position()")

    @abstractmethod
    def subscribe(self, stream: str, *, since: str | None = None) -> AsyncIterator[Entry]:
        """Iterate every entry published to `stream` from now on, in order (fan-out).

        With `since` (an id this subscriber saw last), entries after it that the stream
        still holds come first, then live ones, with no duplicate. If some entries after
        `since` are gone, the first item is an `Entry` with `resync=True` instead.
        The iterator ends when the broker closes.
        """

    async def read_after(self, stream: str, since: str, count: int) -> tuple[list[Entry], bool]:
        """Return up to `count` entries after `since` that `stream` holds now, without waiting.

        The second value is True when some entries after `since` are gone (trimmed, or lost
        in a restart), or `since` is no id of this stream: the reader must resync instead.
        Live push replays a reconnecting subscriber's gap with it.

        Raises:
            BrokerUnavailable: the broker cannot be reached (within its timeout).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement read_after()")

    @abstractmethod
    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int = 100, block: float = 1.0
    ) -> list[Entry]:
        """Return up to `count` new entries for `consumer` of `group`, waiting up to `block` seconds.

        The group is created on first use, reading entries published after that. Each
        entry goes to one consumer of the group, and stays pending until acknowledged.
        Returns an empty list when nothing came within `block`.
        """

    @abstractmethod
    async def ack(self, stream: str, group: str, *ids: str) -> None:
        """Acknowledge entries of `group`: they are done and never redelivered."""

    @abstractmethod
    async def reclaim(
        self, stream: str, group: str, consumer: str, *, min_idle: float, count: int = 100
    ) -> list[Entry]:
        """Take over entries of `group` left pending longer than `min_idle` seconds (a dead consumer's)."""

    @abstractmethod
    async def park(self, stream: str, entry: Entry, reason: str) -> None:
        """Keep an entry that cannot be handled (undecodable, or failed every retry) aside.

        Parked entries go to the bounded dead-letter stream `{stream}.parked`, with the reason.
        """

    async def ensure_group(self, stream: str, group: str) -> None:  # noqa: B027 (optional hook)
        """Create `group` on `stream` if missing, reading entries published from now on."""

    async def backlog(self, stream: str, group: str) -> int:
        """Return how many entries `group` has not read or not acknowledged yet (0 if unknown)."""
        return 0

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Connect (idempotent); called before first use by the event bus."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections; subscriptions end."""
