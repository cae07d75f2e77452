"""The SSE transport: `GET/POST {prefix}/stream/{name}` reads a stream operation as events.

One route and a dict lookup serve every stream. `GET` takes the parameters from the query
string, `POST` from a JSON object body. The answer is `text/event-stream`:

```
id: 1
event: data
data: <item as JSON>

...

event: end
data: null
```

An error raised while items flow becomes `event: error` with the error envelope, and the
stream closes. An error known before the first item (unknown operation, not a stream,
validation, auth, body problems) answers with the error's HTTP status and a single
`event: error`: `EventSource` treats a non-200 answer as fatal and does not reconnect.

The stream runs in the request's task, which enters and exits the operation's
dependencies; one sibling task watches for the client leaving and cancels it, so the
generator stops and its yield dependencies close at once (the same task sends the
heartbeat). `shutdown()` (called by
`Tether.shutdown()`) ends every open stream the same way, without `end`. Items are not
replayed: `Last-Event-ID` is ignored.

The transport also serves live push at `GET {prefix}/live` (`_live_sse.LiveStreams`): the
cache effects of other clients' calls, resumable by `Last-Event-ID`; `shutdown()` ends
those streams too.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import anyio.lowlevel
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from ..context import CallContext
from ..errors import (
    BadRequest,
    ConfigurationError,
    MethodNotAllowed,
    TetherError,
)
from ..outcome import Outcome
from ..schema.sse import document_events, document_live, documentation_routes
from ._body import (
    CLOSE,
    ClientDisconnected,
    has_body,
    parse_json,
    read_body,
    require_json_content_type,
)
from ._fast_lane import lane
from ._json_out import encode_error
from ._live_sse import LIVE_PATH, LiveStreams

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from fastapi import FastAPI

    from ..operation import Operation
    from ..transport import TransportHandle

__all__ = (
    "DEFAULT_HEARTBEAT",
    "SseTransport",
    "StreamAborted",
    "documentation_routes",
    "error_event",
)

DEFAULT_HEARTBEAT = 15.0
"""Seconds between two `: ping` comments on an open stream."""

# The stream yields to the event loop at least every this many items, so that a generator
# that never awaits still lets the server notice a client that left.
_CHECKPOINT_EVERY = 32

_STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
    (b"connection", b"keep-alive"),
]
_END = b"event: end\ndata: null\n\n"
_PING: Message = {"type": "http.response.body", "body": b": ping\n\n", "more_body": True}


class StreamAborted(Exception):
    """Raised into a stream's yield dependencies when its client leaves or the server stops."""


def error_event(error: TetherError) -> bytes:
    """Return the `event: error` carrying `error`'s envelope."""
    return b"event: error\ndata: " + encode_error(error) + b"\n\n"


class SseTransport:
    """Serves stream operations as server-sent events at `GET/POST {prefix}{path}/{name}`.

    Args:
        path: the endpoint's path under the Tether prefix (default `/stream`).
        heartbeat: seconds between two `: ping` comments that keep idle proxies from
            closing an open stream (default 15).

    Raises:
        ConfigurationError: `heartbeat` is not positive.
    """

    wire = "sse"
    """The wire's name in tether's schema document (`transports` of an operation)."""
    serves = frozenset(("stream",))
    """The kinds of operation this wire calls."""

    def __init__(self, *, path: str = "/stream", heartbeat: float = DEFAULT_HEARTBEAT) -> None:
        if heartbeat <= 0:
            raise ConfigurationError(f"heartbeat must be a positive number of seconds: {heartbeat}")
        self.path = path
        """The endpoint's path under the Tether prefix."""
        self.heartbeat = heartbeat
        """Seconds between two heartbeat comments."""
        self.handle: TransportHandle | None = None
        self.app: FastAPI | None = None
        self.closing = False
        """True once `shutdown()` has begun: open streams end, new ones end as they start."""
        self._open: set[_Exchange] = set()
        self.live: LiveStreams | None = None
        """The live push endpoint (`GET {prefix}/live`), once attached."""

    def attach(self, handle: TransportHandle, app: FastAPI) -> None:
        """Add the stream route, and document every stream operation, on `app`."""
        self.handle = handle
        self.app = app
        streams = Route(
            f"{handle.prefix}{self.path}/{{name}}", endpoint=self, include_in_schema=False
        )
        app.router.routes.append(streams)
        self.live = LiveStreams(self, handle)
        live = Route(f"{handle.prefix}{LIVE_PATH}", endpoint=self.live, include_in_schema=False)
        app.router.routes.append(live)
        # An open stream keeps the frames of the way in: the shorter one (_fast_lane).
        lanes = lane(app)
        lanes.add("http", live, self.live)
        lanes.add("http", streams, self)
        for op in handle:
            self.operation_added(op)
        document_events(app, handle, self.path)
        document_live(app, handle, LIVE_PATH)

    def path_of(self, op: Operation) -> str | None:
        """Return the path that streams `op` (None for a query or command)."""
        if op.kind != "stream" or self.handle is None:
            return None
        return f"{self.handle.prefix}{self.path}/{op.name}"

    def operation_added(self, op: Operation) -> None:
        """Document a stream operation in the app's OpenAPI (other kinds are not SSE's)."""
        assert self.handle is not None
        assert self.app is not None
        if op.kind != "stream":
            return
        self.app.router.routes.extend(documentation_routes(op, self.handle, self.path))
        self.app.openapi_schema = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one stream request (the ASGI entry point of the stream route)."""
        api = self.handle
        assert api is not None
        try:
            op, params, body = await self._read_request(api, scope, receive)
        except ClientDisconnected:
            return
        except TetherError as error:
            # An answer before the body was read whole (413, 408, 415...) closes the
            # connection, so that the server stops reading the rest, however long it is.
            await _send_error(send, error, close=has_body(scope))
            return
        ctx = CallContext("sse", scope, receive, body=body)
        exchange = _Exchange(self, api, op, params, ctx, send)
        self._open.add(exchange)
        try:
            await exchange.run()
        finally:
            self._open.discard(exchange)

    @property
    def streams(self) -> int:
        """How many streams are open now."""
        return len(self._open)

    async def shutdown(self) -> None:
        """End every open stream now, without an `end` event (clients read it as "reconnect").

        This is how a stream learns of a shutdown: `Tether.shutdown()` calls it, and
        `TetherServer` (`tether serve`) calls that as the server starts stopping. A server
        tells an open response nothing of its shutdown (uvicorn waits for it, and runs the
        lifespan shutdown only after), so without this call a stream holds the exit for
        the whole graceful-shutdown timeout. Streams that open afterwards end as soon as
        they start. Their yield dependencies close as on any interruption, seeing
        `StreamAborted("the server is shutting down")`.
        """
        self.closing = True
        for exchange in list(self._open):
            exchange.stop_for_shutdown()
        if self.live is not None:
            self.live.shutdown()

    async def _read_request(
        self, api: TransportHandle, scope: Scope, receive: Receive
    ) -> tuple[Operation, dict[str, Any], bytes]:
        op = api.get(scope["path_params"]["name"])
        if op.kind != "stream":
            raise BadRequest(
                f"{op.name} is a {op.kind}, not a stream; call it at {api.prefix}/call/{op.name}",
                details={"operation": op.name, "kind": op.kind},
            )
        method = scope["method"]
        if method == "POST":
            require_json_content_type(scope)
            body = await read_body(scope, receive, api.max_body_size, api.body_timeout)
            params = parse_json(body) if body else {}
            if not isinstance(params, dict):
                raise BadRequest(
                    "The request body must be a JSON object of parameters",
                    details={"received": type(params).__name__},
                )
            return op, params, body
        if method == "GET":
            if op.query_shape is None:
                raise MethodNotAllowed(
                    f"{op.name} takes structured input; open it with POST and a JSON body"
                )
            raw = scope.get("query_string", b"")
            items = parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []
            return op, op.params_from_query(items), b""
        raise MethodNotAllowed(f"{method} is not allowed for {op.name}; use GET or POST")


class _Exchange:
    """One open stream: the request's task pumps items; one sibling task watches and pings."""

    __slots__ = (
        "beat",
        "client_gone",
        "ctx",
        "ended",
        "handle",
        "helpers",
        "op",
        "params",
        "scope",
        "send",
        "shutting_down",
        "started",
        "transport",
        "waiting",
    )

    def __init__(
        self,
        transport: SseTransport,
        api: TransportHandle,
        op: Operation,
        params: dict[str, Any],
        ctx: CallContext,
        send: Send,
    ) -> None:
        self.transport = transport
        self.handle = api
        self.op = op
        self.params = params
        self.ctx = ctx
        self.send = send
        self.scope = anyio.CancelScope()
        self.started = False
        self.client_gone = False
        self.shutting_down = False
        self.helpers: list[anyio.CancelScope] = []
        self.ended = False
        self.beat = math.inf
        """When the next heartbeat is due (never until the stream has started)."""
        self.waiting: anyio.CancelScope | None = None
        """The watcher's wait for the client, whose deadline is the next heartbeat."""

    async def run(self) -> None:
        tail: bytes | TetherError | None = None
        async with anyio.create_task_group() as group:
            self.scope = group.cancel_scope
            self._start_helper(group, self._watch_client)
            tail = await self._pump(group)
            group.cancel_scope.cancel()
        if self.client_gone or tail is None:
            return
        if isinstance(tail, TetherError):
            await _send_error(self.send, tail)
            return
        # Invariant: a stream interrupted by shutdown closes without `end`; clients read
        # that as an interruption (EventSource reconnects).
        body = b"" if self.shutting_down else tail
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    def _start_helper(
        self, group: TaskGroup, func: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        """Start a sibling task (watcher, heartbeat) that `_stop_helpers` can end alone."""
        scope = anyio.CancelScope()
        self.helpers.append(scope)

        async def helper() -> None:
            with scope:
                await func(*args)

        group.start_soon(helper)

    def _stop_helpers(self) -> None:
        for scope in self.helpers:
            scope.cancel()

    async def _pump(self, group: TaskGroup) -> bytes | TetherError | None:
        """Enter the stream, send its items and its end, exit it: all in this one task.

        A stream that ends well sends `end` before it exits, so that its background tasks
        and then its teardown run after the answer is complete (FastAPI's order; see
        outcome.py); a teardown error is then logged, never sent. Returns None once the
        response is complete (its end sent, or a status without a body); otherwise what
        closes the response: the error event once started, else the error to answer with
        (with the error's own headers).
        """
        stream = self.handle.invoker.stream(self.ctx, self.op, self.params, encode=True)
        failure: TetherError | None = None
        try:
            async with stream as items:
                send = self.send
                if not await self._start(items.status or 200, items.headers):
                    return None
                self._start_heartbeat()
                # Leaving cancels only the iteration: the yield dependencies then close
                # outside the cancelled scope, so their own awaits still run, and they see
                # StreamAborted like any exception raised in the stream.
                with anyio.CancelScope() as iteration:
                    self.scope = iteration
                    if self.transport.closing:
                        self.stop_for_shutdown()
                        await anyio.lowlevel.checkpoint()  # the cancellation lands here
                    number = 0
                    try:
                        async for item in items:
                            number += 1
                            await send(
                                {
                                    "type": "http.response.body",
                                    "body": b"id: %d\nevent: data\ndata: %s\n\n" % (number, item),
                                    "more_body": True,
                                }
                            )
                            if number % _CHECKPOINT_EVERY == 0:
                                await anyio.lowlevel.checkpoint()
                    except TetherError as error:
                        failure = error
                        raise
                    except OSError as exc:
                        # Only `send` raises it (the stream's own errors are TetherErrors):
                        # servers other than uvicorn report a vanished client this way.
                        self.client_gone = True
                        raise StreamAborted("the client disconnected") from exc
                if iteration.cancelled_caught:
                    raise StreamAborted(
                        "the server is shutting down"
                        if self.shutting_down
                        else "the client disconnected"
                    )
                # Nothing else may send once the response is complete: a heartbeat already
                # woken checks `ended` before it sends.
                self.ended = True
                self._stop_helpers()
                try:
                    await send({"type": "http.response.body", "body": _END, "more_body": False})
                except OSError as exc:
                    self.client_gone = True
                    raise StreamAborted("the client disconnected") from exc
        except StreamAborted:
            return b""
        except Exception as exc:
            # The stream's own error, or a yield dependency that failed while closing
            # (logged; the client still gets the stream's error if there was one first).
            mapped = (
                failure if exc is failure else self.handle.invoker.map_exception(exc, self.op.name)
            )
            reported = failure or mapped
            return error_event(reported) if self.started else reported
        return None

    async def _start(self, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
        """Send the response's start; return False if its status allows no body (it is sent).

        A status a `Response` dependency set is honoured, as on FastAPI's own SSE routes.
        One that forbids a body (1xx, 204, 304) completes the response at once, without
        items or `end`: a body would corrupt the connection for the next request.
        """
        bodyless = status < 200 or status in (204, 304)
        start = [*(_STREAM_HEADERS[1:2] if bodyless else _STREAM_HEADERS), *headers]
        try:
            await self.send({"type": "http.response.start", "status": status, "headers": start})
            if bodyless:
                # Complete: its client may leave now without cancelling the after-call work.
                self.ended = True
                self._stop_helpers()
                await self.send({"type": "http.response.body", "body": b""})
                return False
        except OSError as exc:
            self.client_gone = True
            raise StreamAborted("the client disconnected") from exc
        self.started = True
        return True

    async def _watch_client(self) -> None:
        # One task for both jobs, so that an idle stream costs one task less: it waits for
        # the client to leave, and once the stream has started it wakes every `heartbeat`
        # seconds (the wait's deadline) to send `: ping`.
        receive = self.ctx.receive
        while True:
            with anyio.CancelScope(deadline=self.beat) as waiting:
                self.waiting = waiting
                message = await receive()
                if message["type"] == "http.disconnect":
                    self._client_left()
                    return
            self.waiting = None
            if not waiting.cancelled_caught:
                continue
            if self.ended:
                return
            try:
                await self.send(_PING)
            except OSError:
                self._client_left()
                return
            self.beat = anyio.current_time() + self.transport.heartbeat

    def _start_heartbeat(self) -> None:
        """Make the watcher send `: ping` every `heartbeat` seconds from now on."""
        self.beat = anyio.current_time() + self.transport.heartbeat
        if self.waiting is not None:
            self.waiting.deadline = self.beat

    def stop_for_shutdown(self) -> None:
        """End the stream because the server stops: its iteration is cancelled, no `end`."""
        # Before the first item is sent, `scope` is the exchange's task group: the stream
        # is still opening, and it checks `closing` itself once it has started.
        if self.started:
            self.shutting_down = True
            self.scope.cancel()

    def _client_left(self) -> None:
        self.client_gone = True
        self.scope.cancel()


async def _send_error(
    send: Send, error: TetherError, *, close: bool = False, allow: bytes = b"GET, POST"
) -> None:
    body = error_event(error)
    headers = [
        *_STREAM_HEADERS[:2],
        (b"content-length", str(len(body)).encode()),
    ]
    # The error's own headers (the `WWW-Authenticate` of a 401), as over HTTP; those a
    # `Response` dependency set are not sent: a failed call releases nothing.
    headers.extend(Outcome.failed("", error).headers)
    if isinstance(error, MethodNotAllowed):
        headers.append((b"allow", allow))
    if close:
        headers.append(CLOSE)
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
