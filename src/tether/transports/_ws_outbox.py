"""The bounded queue of messages waiting to go out on one WebSocket connection.

Invariant: the queue never holds more than `capacity` messages. Replies never wait for
room: a reply that finds the queue full means the client is not reading, and the
connection is closed with 1013. Subscription items wait while the queue is at least half
full, so a fast stream slows to the client's pace instead of filling the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import anyio
from starlette.types import Send

__all__ = ("Outbox",)


class Outbox:
    """Messages (JSON text) waiting for the connection's one sending task."""

    __slots__ = ("_messages", "_on_overflow", "_ready", "_room", "capacity", "high_water")

    def __init__(self, capacity: int, on_overflow: Callable[[], None]) -> None:
        self.capacity = capacity
        """Most messages the queue ever holds."""
        self.high_water = max(1, capacity // 2)
        """Subscription items wait while the queue holds this many messages."""
        self._messages: deque[bytes] = deque()
        self._on_overflow = on_overflow
        self._ready: anyio.Event | None = None
        self._room: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, message: bytes) -> None:
        """Queue a reply; when the queue is full, the client is too slow: call `on_overflow`."""
        if len(self._messages) >= self.capacity:
            self._on_overflow()
            return
        self._messages.append(message)
        ready = self._ready
        if ready is not None:
            self._ready = None
            ready.set()

    async def put_item(self, message: bytes) -> None:
        """Queue a subscription item, first waiting while the queue is half full."""
        while len(self._messages) >= self.high_water:
            room = self._room
            if room is None:
                room = self._room = anyio.Event()
            await room.wait()
        self.put(message)

    async def run(self, send: Send) -> None:
        """Send queued messages as text frames, in order, until cancelled.

        Raises:
            Exception: whatever `send` raises once the client has gone.
        """
        messages = self._messages
        while True:
            if not messages:
                ready = self._ready = anyio.Event()
                await ready.wait()
                continue
            data = messages.popleft()
            room = self._room
            if room is not None and len(messages) < self.high_water:
                self._room = None
                room.set()
            await send({"type": "websocket.send", "text": data.decode()})
