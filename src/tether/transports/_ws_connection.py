"""One WebSocket connection: handshake, read loop, scheduling, outbox, close; the dialects apart.

A message is a JSON object (or a JSON-RPC batch array). Objects with a `jsonrpc` member,
and batches, speak the JSON-RPC dialect (`_ws_jsonrpc`); other objects speak the envelope
dialect (`_ws_envelope`). Each dialect reads its requests, runs its calls and
subscriptions, and answers through this connection.

Tasks on a connection (all in one task group, owned by the connection's task):

- the connection's own task reads messages and hands each call to the connection's
  `WorkerPool` (`_scheduler`); it stops reading while `max_in_flight` calls run
  (backpressure) and owns the exit stack of the connection-scoped dependencies, entered
  before the first message and closed after the last task has ended;
- the pool's workers (at most `max_in_flight`) run the calls and JSON-RPC messages, one
  at a time each, from start to end: a call's dependency stacks are entered and exited in
  the worker that runs it (`invoker.run`), which sends its reply, then awaits the
  outcome's `finish()` (background tasks, then teardown);
- one task per subscription, which enters and exits `async with invoker.stream(...)`;
- one sending task drains the bounded `Outbox` while replies wait (it ends once they are
  sent: an idle connection runs no task but its own).

Invariant: every envelope uuid in flight is a key of `pending` (None for a call, the
subscription's cancel scope for a subscription, the `LiveSocketSubscription` of a live
one); every open JSON-RPC subscription is in `rpc_subscriptions`; `subscriptions` counts
the open subscriptions of both dialects. Live subscriptions (`_ws_live`) have no task: the
hub's feed puts their pushes into the outbox, and they are closed when the connection ends.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack, nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio

from ..context import CallContext
from ..errors import BadRequest, Forbidden, TetherError, TooManyRequests, UnsupportedMediaType
from ._body import header, parse_json
from ._json_out import dumps
from ._jsonrpc_responses import PARSE_ERROR_RESPONSE
from ._scheduler import WorkerPool
from ._ws_envelope import error_reply, handle_envelope
from ._ws_jsonrpc import CANCEL_METHOD, SUBSCRIPTION_METHOD, handle_jsonrpc, run_jsonrpc
from ._ws_live import LiveSocketSubscription, close_all
from ._ws_outbox import Outbox

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from starlette.types import Receive, Scope, Send

    from ..operation import Operation
    from .websocket import WebSocketTransport

__all__ = ("CANCEL_METHOD", "SUBSCRIPTION_METHOD", "Connection")


class Connection:
    """The state of one accepted socket, from handshake to close.

    An idle socket keeps this object and the frame of `run` (memory: see
    docs/deployment.md, "Many idle connections"): slots, and nothing made before it is used.
    """

    __slots__ = (
        "_plain_context",
        "close_code",
        "close_reason",
        "gone",
        "group",
        "handle",
        "outbox",
        "pending",
        "pool",
        "receive",
        "rpc_effects",
        "rpc_headers",
        "rpc_subscriptions",
        "scope",
        "seed",
        "send",
        "subscriptions",
        "transport",
    )

    def __init__(
        self, transport: WebSocketTransport, scope: Scope, receive: Receive, send: Send
    ) -> None:
        api = transport.handle
        assert api is not None
        self.transport = transport
        self.handle = api
        self.scope = scope
        self.receive = receive
        self.send = send
        self.seed: dict[Any, Any] | None = None
        """The values of the connection-scoped dependencies (None without any)."""
        self._plain_context: CallContext | None = None
        self.rpc_headers = _opted_in(scope)
        """The client opened the socket with `?rpc_headers=1`: JSON-RPC responses carry
        their call's headers in a `headers` member."""
        self.rpc_effects = _opted_in(scope, "effects")
        """The client opted in to cache effects (`?effects=1`, or `rpc.hello`): JSON-RPC
        responses whose call had effects carry them in an `effects` member."""
        self.close_code: int | None = None
        self.close_reason = ""
        self.gone = False
        """The client has left: nothing more can be sent."""
        self.outbox = Outbox(transport.max_queued_messages, send, self._overflow, self._gone)
        self.pool = WorkerPool(transport.max_in_flight)
        """Runs the calls, at most `max_in_flight` at once."""
        self.group: TaskGroup | None = None
        self.pending: dict[Any, anyio.CancelScope | LiveSocketSubscription | None] = {}
        self.rpc_subscriptions: dict[Any, anyio.CancelScope | LiveSocketSubscription] = {}
        self.subscriptions = 0

    @property
    def plain_context(self) -> CallContext:
        """The context of calls without dependencies (the invoker never reads it)."""
        ctx = self._plain_context
        if ctx is None:
            ctx = self._plain_context = CallContext("websocket", self.scope)
        return ctx

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection: handshake (its dependencies), messages, close."""
        # The transport's entry point returns this coroutine (no frame of its own): this
        # one tells the transport the connection has ended.
        try:
            message = await self.receive()
            if message["type"] != "websocket.connect":
                return
            transport = self.transport
            origin = header(self.scope, b"origin")
            # Before any dependency runs: a foreign page must not get as far as solving them.
            if not transport.origins.allows(origin, header(self.scope, b"host")):
                assert origin is not None
                await self._deny(
                    Forbidden(
                        "This page's origin may not open the WebSocket;"
                        " the server lists the origins it trusts in Tether(allowed_origins=...)",
                        details={"origin": origin.decode("latin-1")},
                    )
                )
                return
            # Connection-scoped dependencies (the app's own among them) live on this stack,
            # entered and closed in this task, around every message task. Without any, the
            # connection holds no stack (nor solves anything) for its whole life.
            dependencies = transport.handshake_dependencies()
            async with AsyncExitStack() if dependencies else _NO_STACK as stack:
                try:
                    if stack is not None:
                        self.seed = await self.handle.invoker.solve_shared(
                            CallContext("websocket", self.scope), dependencies, stack
                        )
                except TetherError as error:
                    await self._refuse(error)
                    return
                await self.send({"type": "websocket.accept"})
                if self.close_code is None:
                    try:
                        async with anyio.create_task_group() as group:
                            self.group = self.pool.group = self.outbox.group = group
                            # The read loop (inline: an idle socket keeps one frame here).
                            receive = self.receive
                            limit = self.transport.max_message_size
                            # A text of at most limit/4 characters is at most `limit` bytes of UTF-8.
                            short = limit // 4
                            pool = self.pool
                            cap = pool.limit
                            while True:
                                if pool.in_flight >= cap:
                                    # Backpressure: read nothing more until a call finishes.
                                    await pool.wait_for_room()
                                message = await receive()
                                if message["type"] != "websocket.receive":
                                    self.gone = True
                                    break
                                text = message.get("text")
                                if text is None:
                                    if len(message.get("bytes") or b"") > limit:
                                        self.close(
                                            1009, f"Message exceeds the limit of {limit} bytes"
                                        )
                                        break
                                    self.outbox.put(
                                        error_reply(
                                            b"null",
                                            UnsupportedMediaType(
                                                "Binary frames are not accepted; send JSON as text frames"
                                            ),
                                        )
                                    )
                                    continue
                                del message  # while idle, the frame holds no message
                                if len(text) > short and len(text.encode()) > limit:
                                    self.close(1009, f"Message exceeds the limit of {limit} bytes")
                                    break
                                self._dispatch(text)
                                del text
                            group.cancel_scope.cancel()
                    finally:
                        close_all(self)  # live subscriptions have no task to end with the group
                if self.close_code is not None and not self.gone:
                    await self._send_close()
        finally:
            self.transport.connection_ended(self)

    async def _send_close(self) -> None:
        with anyio.move_on_after(self.transport.close_timeout):
            try:
                await self.send(
                    {
                        "type": "websocket.close",
                        "code": self.close_code,
                        "reason": self.close_reason,
                    }
                )
            except Exception:  # the client left meanwhile
                pass

    def close(self, code: int, reason: str) -> None:
        """Close the connection with `code`: stop reading, cancel its tasks, send the close."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        if self.group is not None:
            self.group.cancel_scope.cancel()

    async def _deny(self, error: TetherError) -> None:
        # Refused before the handshake completes: the browser sees an HTTP error status.
        # With the denial-response extension, that answer carries tether's error envelope;
        # without it, closing before accepting makes the server answer 403 itself.
        if "websocket.http.response" in self.scope.get("extensions", {}):
            body = dumps({"error": error.to_dict()})
            await self.send(
                {
                    "type": "websocket.http.response.start",
                    "status": error.status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await self.send({"type": "websocket.http.response.body", "body": body})
        else:
            await self.send({"type": "websocket.close", "code": 1008})

    async def _refuse(self, error: TetherError) -> None:
        # Accepted, then closed at once: the client sees the close code and the reason.
        code = 1011 if error.status >= 500 else 1008
        await self.send({"type": "websocket.accept"})
        await self.send(
            {"type": "websocket.close", "code": code, "reason": _reason(error.detail_message)}
        )

    def _overflow(self) -> None:
        self.close(1013, "Client is not reading its messages")

    def _gone(self) -> None:
        # Sending failed: the client went away.
        self.gone = True
        if self.group is not None:
            self.group.cancel_scope.cancel()

    # -- messages ---------------------------------------------------------------------------

    def _dispatch(self, text: str) -> None:
        try:
            # The same strict reading as over HTTP: no NaN, bounded depth, exact big integers.
            message = parse_json(text.encode())
        except BadRequest as error:
            if '"jsonrpc"' in text:
                self.outbox.put(PARSE_ERROR_RESPONSE)
            else:
                self.outbox.put(error_reply(b"null", error))
            return
        kind = type(message)
        if kind is dict:
            if "jsonrpc" in message:
                handle_jsonrpc(self, message)
            else:
                handle_envelope(self, message)
        elif kind is list:
            self.pool.start(run_jsonrpc, self, message)
        else:
            self.outbox.put(
                error_reply(
                    b"null",
                    BadRequest("A message is a JSON object (or a JSON-RPC batch array)"),
                )
            )

    def make_context(self) -> CallContext:
        """Return a fresh context for one call on this connection."""
        return CallContext("websocket", self.scope)

    # -- subscriptions (both dialects) ------------------------------------------------------

    def open_subscription(self, run: Callable[..., Any], *args: Any) -> None:
        """Count a subscription and run `run(*args)` in a task of its own (`stream` uncounts it).

        Check `check_subscription_room` first.
        """
        self.subscriptions += 1
        assert self.group is not None
        self.group.start_soon(run, *args)

    def check_subscription_room(self) -> None:
        """Raise `TooManyRequests` when `max_subscriptions` are open on this connection."""
        limit = self.transport.max_subscriptions
        if self.subscriptions >= limit:
            raise TooManyRequests(
                f"At most {limit} subscriptions may be open on one connection",
                details={"limit": limit},
            )

    async def stream(
        self,
        op: Operation,
        params: Any,
        scope: Scope,
        cancel: anyio.CancelScope,
        item_message: Callable[[bytes], bytes],
        last_message: Callable[[int, TetherError | None], bytes],
    ) -> None:
        """Send every item of a stream, then its last message (end, cancelled or error).

        A stream that ends well sends its end before its after-call work (background tasks,
        then teardown: see outcome.py); one cancelled or failed sends it after its yield
        dependencies closed. `last_message(count, error)` builds it.
        """
        count = 0
        ended = False
        ctx = CallContext("websocket", scope)
        outbox = self.outbox
        try:
            with cancel:
                async with self.handle.invoker.stream(
                    ctx, op, params, encode=True, dependency_cache=self.seed
                ) as items:
                    async for item in items:
                        await outbox.send_item(item_message(item))
                        count += 1
                    ended = True
                    await outbox.send(last_message(count, None))
        except TetherError as error:
            self.subscriptions -= 1
            await outbox.send(last_message(count, error))
            return
        except BaseException:
            self.subscriptions -= 1
            raise
        self.subscriptions -= 1
        if not ended:  # cancelled
            await outbox.send(last_message(count, None))


_NO_STACK = nullcontext()  # reusable: a connection without connection-scoped dependencies


def _reason(message: str) -> str:
    # A close frame's reason is at most 123 bytes of UTF-8.
    encoded = message.encode()
    if len(encoded) <= 123:
        return message
    return encoded[:120].decode(errors="ignore") + "..."


def _opted_in(scope: Scope, name: str = "rpc_headers") -> bool:
    raw = scope.get("query_string", b"")
    return bool(raw) and (name, "1") in parse_qsl(raw.decode("latin-1"))
