"""The bounded queue of messages waiting to go out on one WebSocket connection.

Invariant: the queue never holds more than `capacity` messages. Replies never wait for
room: a reply that finds the queue full means the client is not reading, and the
connection is closed with 1013. Subscription items wait while the queue is at least half
full, so a fast stream slows to the client's pace instead of filling the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import anyio
from starlette.types import Send

__all__ = ("Outbox", "Signal")


class Signal:
    """A reusable wake-up flag for one waiting task.

    `anyio.Event` is single-use and costs a backend lookup per instance; on every message
    that is measurable, so asyncio gets one clearable `asyncio.Event` (other backends a
    fresh `anyio.Event` per wait). Create it inside a running event loop.
    """

    __slots__ = ("_asyncio", "_event")

    def __init__(self) -> None:
        self._asyncio = _on_asyncio()
        self._event: asyncio.Event | anyio.Event = (
            asyncio.Event() if self._asyncio else anyio.Event()
        )

    def set(self) -> None:
        """Wake the waiting task (or let its next `wait` return at once)."""
        self._event.set()

    async def wait(self) -> None:
        """Wait until `set` is called, then reset the flag."""
        event = self._event
        await event.wait()
        if isinstance(event, asyncio.Event):
            event.clear()
        else:
            self._event = anyio.Event()


class Outbox:
    """Messages (JSON text) on their way out of one connection, in order.

    A message goes straight to `send` when nothing is queued or being sent (no task
    switch); otherwise it is queued for the sending task (`run`).
    """

    __slots__ = (
        "_messages",
        "_on_gone",
        "_on_overflow",
        "_ready",
        "_room",
        "_send",
        "_sending",
        "_waiting",
        "capacity",
        "high_water",
    )

    def __init__(
        self,
        capacity: int,
        send: Send,
        on_overflow: Callable[[], None],
        on_gone: Callable[[], None],
    ) -> None:
        self.capacity = capacity
        """Most messages the queue ever holds."""
        self.high_water = max(1, capacity // 2)
        """Subscription items wait while the queue holds this many messages."""
        self._messages: deque[bytes] = deque()
        self._send = send
        self._on_overflow = on_overflow
        self._on_gone = on_gone
        self._ready = Signal()
        self._waiting = False
        self._sending = False
        self._room: anyio.Event | None = None

    def put(self, message: bytes) -> None:
        """Queue a reply; when the queue is full, the client is too slow: call `on_overflow`."""
        if len(self._messages) >= self.capacity:
            self._on_overflow()
            return
        self._messages.append(message)
        if self._waiting and not self._sending:
            self._waiting = False
            self._ready.set()

    async def send(self, message: bytes) -> None:
        """Send a reply now if the way is clear, else queue it (see `put`)."""
        if self._sending or self._messages:
            self.put(message)
            return
        self._sending = True
        try:
            await self._send({"type": "websocket.send", "text": message.decode()})
        except Exception:  # the client went away
            self._on_gone()
            return
        finally:
            self._sending = False
        if self._messages and self._waiting:
            self._waiting = False
            self._ready.set()

    async def send_item(self, message: bytes) -> None:
        """Send a subscription item, first waiting while the queue is half full."""
        while len(self._messages) >= self.high_water:
            room = self._room
            if room is None:
                room = self._room = anyio.Event()
            await room.wait()
        await self.send(message)

    async def run(self) -> None:
        """Send queued messages as text frames, in order, until cancelled or the client leaves."""
        messages = self._messages
        send = self._send
        while True:
            if not messages or self._sending:
                self._waiting = True
                await self._ready.wait()
                continue
            data = messages.popleft()
            room = self._room
            if room is not None and len(messages) < self.high_water:
                self._room = None
                room.set()
            self._sending = True
            try:
                await send({"type": "websocket.send", "text": data.decode()})
            except Exception:  # the client went away
                self._on_gone()
                return
            finally:
                self._sending = False


def _on_asyncio() -> bool:
    """Say whether the running event loop is asyncio's (no sniffio: only trio brings it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
