"""The bounded queue of messages waiting to go out on one WebSocket connection.

Invariant: the queue never holds more than `capacity` messages. Replies never wait for
room: a reply that finds the queue full means the client is not reading, and the
connection is closed with 1013. Subscription items wait while the queue is at least half
full, so a fast stream slows to the client's pace instead of filling the queue.

An idle connection costs the outbox no task and no buffer: the queue is created when a
message first has to wait, and a sending task runs only while messages wait (it ends,
dropping the queue, once they are all sent).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
from starlette.types import Send

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ("Outbox", "Signal")


class Signal:
    """A reusable wake-up flag for one waiting task.

    `anyio.Event` is single-use and costs a backend lookup per instance; on every message
    that is measurable, so asyncio gets a flag and a future made only while a task waits
    (lighter than a clearable `asyncio.Event`, whose waiter deque every idle worker would
    hold); other backends get a fresh `anyio.Event` per wait. Create it inside a running
    event loop.
    """

    __slots__ = ("_event", "_flag", "_loop", "_waiter")

    def __init__(self) -> None:
        self._loop = _running_loop()
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None
        self._event: anyio.Event | None = None if self._loop is not None else anyio.Event()

    def set(self) -> None:
        """Wake the waiting task (or let its next `wait` return at once)."""
        if self._event is not None:
            self._event.set()
            return
        if self._flag:
            return
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, seconds: float | None = None) -> bool:
        """Wait until `set` is called, then reset the flag and return True.

        Given `seconds`, return False if `set` was not called within that many seconds.
        """
        event = self._event
        if event is not None:
            if seconds is None:
                await event.wait()
            else:
                with anyio.move_on_after(seconds):
                    await event.wait()
                if not event.is_set():
                    return False
            self._event = anyio.Event()
            return True
        if not self._flag:
            loop = self._loop
            assert loop is not None
            waiter = self._waiter = loop.create_future()
            timer = None if seconds is None else loop.call_later(seconds, _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self._flag:  # the time ran out first
                return False
        self._flag = False
        return True


class Outbox:
    """Messages (JSON text) on their way out of one connection, in order.

    A message goes straight to `send` when nothing is queued or being sent (no task
    switch); otherwise it is queued, and a sending task started in `group` (the
    connection's) sends the queue, then ends. Set `group` before the first message.
    """

    __slots__ = (
        "_draining",
        "_messages",
        "_on_gone",
        "_on_overflow",
        "_room",
        "_send",
        "_sending",
        "capacity",
        "group",
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
        self.group: TaskGroup | None = None
        """The task group the sending task runs in (the connection's)."""
        # Invariant: `_messages` is None or non-empty except while `_drain` runs; `_draining`
        # is True from the moment a sending task is started until it ends.
        self._messages: deque[bytes] | None = None
        self._send = send
        self._on_overflow = on_overflow
        self._on_gone = on_gone
        self._draining = False
        self._sending = False
        self._room: anyio.Event | None = None

    def put(self, message: bytes) -> None:
        """Queue a reply; when the queue is full, the client is too slow: call `on_overflow`."""
        messages = self._messages
        if messages is None:
            messages = self._messages = deque()
        elif len(messages) >= self.capacity:
            self._on_overflow()
            return
        messages.append(message)
        if not self._sending and not self._draining:
            self._start_draining()

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
        if self._messages and not self._draining:
            self._start_draining()

    async def send_item(self, message: bytes) -> None:
        """Send a subscription item, first waiting while the queue is half full."""
        while self._messages is not None and len(self._messages) >= self.high_water:
            room = self._room
            if room is None:
                room = self._room = anyio.Event()
            await room.wait()
        await self.send(message)

    def _start_draining(self) -> None:
        group = self.group
        if group is None:  # the connection is not serving (yet, or any more): nothing sends
            return
        self._draining = True
        try:
            group.start_soon(self._drain)
        except RuntimeError:  # the connection's task group has ended
            self._draining = False

    async def _drain(self) -> None:
        """Send the queued messages as text frames, in order, then end (dropping the queue)."""
        messages = self._messages
        send = self._send
        try:
            while messages:
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
        finally:
            self._draining = False
            if not self._messages:
                self._messages = None


def _expire(waiter: asyncio.Future[None]) -> None:
    """End a `Signal.wait` whose timeout has passed (unless it has ended already)."""
    if not waiter.done():
        waiter.set_result(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the running asyncio loop, or None on another backend (no sniffio: only trio has it)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
