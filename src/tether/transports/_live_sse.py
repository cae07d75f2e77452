"""Live push over SSE: `GET {prefix}/live?contexts=todos,user&owner_id=5[&since=ID]`.

The answer is `text/event-stream`:

```
id: 1700000000000-0
event: ready
data: {"id":"1700000000000-0","topics":[{"context":"todos","params":{"owner_id":5}}]}

id: 1700000000001-0
event: effects
data: {"id":"1700000000001-0","invalidate":[...],"merge":[...]}

id: 1700000000002-0
event: resync
data: {"id":"1700000000002-0","resync":true}

: ping
```

`contexts` names the contexts (or queries of no context) to read, comma-separated (or
repeated); every other query parameter goes to the named contexts that declare it. A
client that saw entries before presents the last id it saw, as the `Last-Event-ID` header
(`EventSource` sends it when it reconnects; it wins) or `since=`: what it missed comes
first, in order, or one `resync` when the gap can no longer be replayed. The `ready`
event's `id` is the resume token as of the subscription (after that replay); it carries an
`id:` line when nothing follows it at once, so that an `EventSource` that saw no push yet
still resumes from it. Refused before the stream starts (unknown context 404, bad params
422, the gate or a slot's `auth=` 401/403), the answer is the error's status and one
`event: error`, as on stream routes.

Cost of an idle subscriber: no task of its own, no timer of its own. The request's own
coroutine (`LiveStreams.__call__`, one frame) waits on one wake-up (a future on asyncio);
the hub's feed pushes into the subscriber's bounded queue and wakes it; the coroutine
sends what is queued in one body chunk. One timer per endpoint wakes the streams whose
heartbeat is due (idle for `heartbeat` seconds, up to a quarter more): each sends
`: ping` and looks, without waiting, whether the client has left. The request reaches
the endpoint by `_fast_lane`, inside the user's middleware. A subscriber whose queue fills (its client does not read) is dropped by
the hub: its stream just ends, and an `EventSource` reconnects with `Last-Event-ID` and is
replayed. `SseTransport.shutdown()` ends every live stream cleanly (no event), too.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import orjson
from starlette.types import Message, Receive, Scope, Send

from ..context import CallContext
from ..errors import MethodNotAllowed, TetherError
from ..live import resync_payload
from ._body import header

if TYPE_CHECKING:
    from ..live import LiveHub, LiveSubscription, Topic
    from ..transport import TransportHandle
    from .sse import SseTransport

__all__ = ("LIVE_PATH", "LiveStreams")


LIVE_PATH = "/live"
"""Where live push is served over SSE, under the Tether prefix."""

_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]
_PING: Message = {"type": "http.response.body", "body": b": ping\n\n", "more_body": True}
_DONE: Message = {"type": "http.response.body", "body": b"", "more_body": False}
_RESYNC_TAIL = b',"resync":true}'
# Seconds the last (empty) body message of a dropped stream may wait for a client that
# does not read, before the connection is given up.
_GIVE_UP_AFTER = 5.0
# Seconds a heartbeat's look at `receive()` may take.
_POLL = 0.005
# How often, per heartbeat period, the shared timer looks for idle streams whose
# heartbeat is due: a ping goes out after `heartbeat` to 1.25 `heartbeat` seconds idle.
_TICKS_PER_HEARTBEAT = 4


class LiveStreams:
    """The ASGI endpoint of `GET {prefix}/live`, mounted by the SSE transport.

    Args:
        transport: the SSE transport (its heartbeat, and whether it is shutting down).
        handle: the transport handle (its live hub).
    """

    def __init__(self, transport: SseTransport, handle: TransportHandle) -> None:
        self.transport = transport
        """The SSE transport that mounted this endpoint."""
        self.handle = handle
        """The Tether's transport handle."""
        self._open: set[_LiveStream] = set()
        # One timer for every idle stream's heartbeat (on asyncio), and the loop it is on.
        self._ticker: asyncio.TimerHandle | None = None
        self._ticker_loop: asyncio.AbstractEventLoop | None = None

    @property
    def open(self) -> int:
        """How many live streams are open now."""
        return len(self._open)

    def shutdown(self) -> None:
        """End every open live stream now (the response ends cleanly, without an event)."""
        for stream in list(self._open):
            subscription = stream.subscription
            if subscription is not None:
                subscription.close()
            stream.end("closed")

    def _closing(self) -> bool:
        return self.transport.closing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one live stream (the ASGI entry point of the `/live` route).

        Once subscribed, this one coroutine is the stream: an idle subscriber's only frame
        here (no coroutine of its own for the loop or the wait).
        """
        admitted = await self._admit(scope, receive, send)
        if admitted is None:
            return
        stream, first = admitted
        del admitted  # the frame keeps the stream, not its `ready` event once sent
        heartbeat = self.transport.heartbeat
        try:
            # Not stopped by an overflow: pushes collapse, not overflow, until `_running`.
            await send(_start())
            if stream.queued:
                first += stream._take()
            stream._running = True
            sent = await stream._send(send, _chunk(first))
            del first  # an idle stream's frame keeps no chunk it has sent
            loop = stream._loop
            while sent and stream.ended != "overflow":
                if stream.queued:
                    sent = await stream._send(send, _chunk(stream._take()))
                    continue
                if stream.ended is not None:
                    break
                if loop is not None:
                    # Idle: one future, woken by a push or the end, or by the shared
                    # heartbeat timer once `heartbeat` seconds have gone by.
                    future: asyncio.Future[bool] = loop.create_future()
                    stream._waiter = future
                    stream._due = loop.time() + heartbeat
                    self._tick_later(loop)
                    try:
                        woken = await future
                    finally:
                        stream._waiter = None
                    del future
                else:
                    woken = await stream._wait(heartbeat)
                if not woken:
                    sent = await stream._send(send, _PING)
                    if sent and await stream._client_left(receive):
                        return
        except OSError:  # servers other than uvicorn: the client has gone
            return
        finally:
            self._open.discard(stream)
            subscription = stream.subscription
            if subscription is not None:
                subscription.close()
        # The response ends cleanly (EventSource reconnects). A client that does not read
        # may hold this last message: it is given up after a while.
        with anyio.move_on_after(_GIVE_UP_AFTER):
            try:
                await send(_DONE)
            except OSError:
                pass

    async def _admit(
        self, scope: Scope, receive: Receive, send: Send
    ) -> tuple[_LiveStream, bytes] | None:
        """Read the request and subscribe; None once a refusal (or an empty stream) is sent.

        Returns the stream, registered as open, and its `ready` event.
        """
        if scope["method"] != "GET":
            error = MethodNotAllowed(
                f"{scope['method']} is not allowed for live push; open it with GET"
            )
            await _send_error(send, error, allow=b"GET")
            return None
        hub = self.handle.live
        try:
            topics, since = _read_query(hub, scope)
        except TetherError as error:
            await _send_error(send, error)
            return None
        if self._closing():
            # Shutting down: an empty stream, which an EventSource reconnects (elsewhere).
            await send(_start())
            await send(_DONE)
            return None
        stream = _LiveStream(hub.settings.subscriber_queue)
        try:
            # The call context lives while the hub subscribes (its gate); the hub keeps
            # only the sink and the subscription.
            stream.subscription = await hub.subscribe(
                CallContext("sse", scope, receive), topics, stream, since=since
            )
        except Exception as exc:
            await _send_error(send, self.handle.invoker.map_exception(exc, "live subscription"))
            return None
        self._open.add(stream)
        if self._closing():  # shutdown began while it subscribed: ready, then the end
            stream.subscription.close()
            stream.end("closed")
        return stream, _ready(stream, topics, since)

    def _tick_later(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make sure the heartbeat timer runs (on this loop) while a stream waits."""
        if self._ticker is None or self._ticker_loop is not loop:
            self._ticker_loop = loop
            self._ticker = loop.call_later(
                self.transport.heartbeat / _TICKS_PER_HEARTBEAT, self._tick, loop
            )

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the idle streams whose heartbeat is due; run again while any waits."""
        if self._ticker_loop is not loop:  # a timer of an earlier event loop
            return
        self._ticker = None
        now = loop.time()
        waiting = False
        for stream in self._open:
            waiter = stream._waiter
            if isinstance(waiter, asyncio.Future) and stream._loop is loop:
                if stream._due <= now:
                    stream._waiter = None
                    if not waiter.done():
                        waiter.set_result(False)
                else:
                    waiting = True
        if waiting:
            self._tick_later(loop)


def _read_query(hub: LiveHub, scope: Scope) -> tuple[list[Topic], str | None]:
    """Read the topics and the resume token of a `/live` request.

    Raises:
        ValidationFailed: no context named, or a parameter none of them takes.
        NotFound: an unknown context.
    """
    raw = scope.get("query_string", b"")
    items = parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []
    names: list[str] = []
    since: str | None = None
    pairs: list[tuple[str, str]] = []
    for key, value in items:
        if key == "contexts":
            names.extend(name for name in value.split(",") if name)
        elif key == "since":
            since = value or None
        else:
            pairs.append((key, value))
    last_event_id = header(scope, b"last-event-id")
    if last_event_id:
        since = last_event_id.decode("latin-1")
    return hub.topics_from_query(names, _query_params(hub, names, pairs)), since


def _query_params(hub: LiveHub, names: list[str], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Collect query pairs into params: a list for the params a named target takes as a list.

    The names in `names`, and the keys the named targets declare, become the targets' own
    strings: a subscription keeps them (as its topics'), not copies parsed from its request.
    """
    listed: set[str] = set()
    own: dict[str, str] = {}
    for index, name in enumerate(names):
        found = hub.contexts.target_of(name)
        if found is None:
            continue
        target = found[1]
        names[index] = target.name
        shape = target.query_shape
        if shape:
            for key, is_list in shape.items():
                own[key] = key
                if is_list:
                    listed.add(key)
    params: dict[str, Any] = {}
    for raw_key, value in pairs:
        key = own.get(raw_key, raw_key)
        if key in listed:
            params.setdefault(key, []).append(value)
        elif key in params:
            # Given twice: a list, which a scalar param refuses (422), as elsewhere.
            previous = params[key]
            params[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            params[key] = value
    return params


def _ready(stream: _LiveStream, topics: list[Topic], since: str | None) -> bytes:
    """Return the `ready` event: the resume token and the topics."""
    subscription = stream.subscription
    assert subscription is not None
    token = subscription.last_id or since
    data = orjson.dumps({"id": token, "topics": [topic.to_dict() for topic in topics]})
    if stream.queued or token is None:
        # What follows carries the ids: EventSource's lastEventId never goes back.
        return b"event: ready\ndata: " + data + b"\n\n"
    return b"id: " + token.encode() + b"\nevent: ready\ndata: " + data + b"\n\n"


class _LiveStream:
    """One SSE subscriber: the sink the hub pushes into, and what it holds to send.

    While the subscription is being set up (`hub.subscribe` replays what the client
    missed), pushes are held without a bound; past the queue's size they collapse into
    one `resync` (the client refetches, then goes on from the newest id). Once the stream
    runs, a push that finds the queue full is refused: the hub drops the subscriber.
    """

    __slots__ = (
        "_cancel",
        "_due",
        "_events",
        "_limit",
        "_loop",
        "_resync",
        "_running",
        "_waiter",
        "ended",
        "subscription",
    )

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._events: list[bytes] | None = None  # made by the first push
        self._resync: str | None = None
        self._running = False
        self._waiter: asyncio.Future[bool] | anyio.Event | None = None
        self._due = 0.0
        self._cancel: asyncio.Timeout | anyio.CancelScope | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # another event loop (trio): anyio events
            self._loop = None
        self.ended: str | None = None
        """Why the hub (or the server) ended the stream: `"overflow"` or `"closed"`."""
        self.subscription: LiveSubscription | None = None
        """The hub's subscription, once admitted."""

    @property
    def queued(self) -> bool:
        """Say whether pushes wait to be sent."""
        return bool(self._events) or self._resync is not None

    # -- the sink (called by the hub's feed; never blocks) --------------------------------

    def push(self, entry_id: str, payload: bytes) -> bool:
        """Queue one push as an event and wake the stream; False when the queue is full."""
        if self._resync is not None:
            self._resync = entry_id  # collapsed: one resync, from the newest id
            return True
        events = self._events
        if events is None:
            events = self._events = []
        elif len(events) >= self._limit:
            if self._running:
                return False
            # Still replaying: too much was missed; the client refetches instead.
            events.clear()
            self._resync = entry_id
            return True
        name = b"resync" if payload.endswith(_RESYNC_TAIL) else b"effects"
        events.append(
            b"id: " + entry_id.encode() + b"\nevent: " + name + b"\ndata: " + payload + b"\n\n"
        )
        self._wake()
        return True

    def end(self, reason: str) -> None:
        """End the stream: `"closed"` sends what is queued first; `"overflow"` at once."""
        if self.ended is not None:
            return
        self.ended = reason
        cancel = self._cancel
        if reason != "closed" and cancel is not None:
            if isinstance(cancel, asyncio.Timeout):
                cancel.reschedule(0)  # due at once: the send in progress is cancelled
            else:
                cancel.cancel()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_result(True)
            else:
                waiter.set()

    def _take(self) -> bytes:
        events = self._events
        self._events = None
        resync = self._resync
        if resync is not None:
            self._resync = None
            chunk = b"id: " + resync.encode() + b"\nevent: resync\ndata: " + resync_payload(resync)
            return b"".join(events or ()) + chunk + b"\n\n"
        if not events:
            return b""
        if len(events) == 1:
            return events[0]
        return b"".join(events)

    async def _wait(self, seconds: float) -> bool:
        """Wait for a push or the end, at most `seconds` (not asyncio); False when none came."""
        event = self._waiter = anyio.Event()
        with anyio.move_on_after(seconds):
            await event.wait()
            return True
        self._waiter = None
        return False

    async def _send(self, send: Send, message: Message) -> bool:
        """Send one message; False when the hub dropped the subscriber meanwhile (overflow)."""
        # The cancellation lives only while a message goes out: a client that does not read
        # holds `send`, and an overflow must be able to stop it there. On asyncio it is an
        # `asyncio.timeout` (an anyio cancel scope would leave a record for the request's
        # task in anyio's task states, as long as the stream lasts).
        if self._loop is not None:
            timeout = asyncio.timeout(None)
            try:
                async with timeout:
                    self._cancel = timeout
                    await send(message)
            except TimeoutError:
                if not timeout.expired():
                    raise
                return False
            finally:
                self._cancel = None
            return True
        with anyio.CancelScope() as scope:
            self._cancel = scope
            await send(message)
        self._cancel = None
        return not scope.cancelled_caught

    async def _client_left(self, receive: Receive) -> bool:
        """Say whether the client has left, hardly waiting (only a disconnect is ready at once)."""
        # Not 0: a server whose `receive` passes a checkpoint before it returns (anyio
        # streams) would be cancelled there, even with the disconnect at hand.
        if self._loop is not None:
            timeout = asyncio.timeout(_POLL)
            try:
                async with timeout:
                    message = await receive()
            except TimeoutError:
                if not timeout.expired():
                    raise
                return False
            return bool(message["type"] == "http.disconnect")
        with anyio.move_on_after(_POLL):
            message = await receive()
            return bool(message["type"] == "http.disconnect")
        return False


def _start() -> Message:
    # A new message and header list each time: middleware (CORS) may add headers in place.
    return {"type": "http.response.start", "status": 200, "headers": list(_STREAM_HEADERS)}


def _chunk(body: bytes) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": True}


async def _send_error(send: Send, error: TetherError, *, allow: bytes = b"GET, POST") -> None:
    from .sse import _send_error as send_error  # sse.py imports this module

    await send_error(send, error, allow=allow)
