"""One WebSocket connection: reads messages, runs each in a task of its own, writes replies.

Tasks on a connection (all in one task group, owned by the connection's task):

- the connection's own task reads messages and queues each call for a worker; it stops
  reading while `max_in_flight` calls run (backpressure) and owns the exit stack of the
  connection-scoped dependencies, entered before the first message and closed after the
  last task has ended;
- worker tasks (at most `max_in_flight`) run the calls and JSON-RPC messages, one at a
  time each, from start to end: a call's dependency stacks are entered and exited in the
  worker that runs it (`invoker.run`), which sends its reply, then awaits the outcome's
  `finish()` (background tasks, then teardown);
- one task per subscription, which enters and exits `async with invoker.stream(...)`;
- one sending task drains the bounded `Outbox` when replies cannot go out directly.

Invariant: every envelope uuid in flight is a key of `_pending` (None for a call, the
subscription's cancel scope for a subscription); every open JSON-RPC subscription is in
`_rpc_subscriptions`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio

from ..context import CallContext
from ..errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TetherError,
    TooManyRequests,
    UnsupportedMediaType,
    ValidationFailed,
)
from ._body import header, parse_json
from ._json_out import dumps
from ._jsonrpc_dispatch import PARSE_ERROR_RESPONSE, tether_error_response
from ._ws_envelope import (
    CANCEL,
    PING,
    bind_payload,
    encode_uuid,
    error_reply,
    headed_reply,
    item_reply,
    operation_name,
    outcome_reply,
    pong,
    scope_with_headers,
    valid_uuid,
)
from ._ws_outbox import Outbox, Signal

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from starlette.types import Receive, Scope, Send

    from ..operation import Operation
    from .websocket import WebSocketTransport

__all__ = ("CANCEL_METHOD", "SUBSCRIPTION_METHOD", "Connection")

CANCEL_METHOD = "rpc.cancel"
"""JSON-RPC method that cancels a subscription: params `{"subscription": id}` or `[id]`."""
SUBSCRIPTION_METHOD = "subscription"
"""Method of the server notifications that carry a JSON-RPC subscription's items."""

_RPC_HEAD = b'{"jsonrpc":"2.0","id":'
_NO_TARGET: Any = object()  # an rpc.cancel whose params name no subscription at all


class Connection:
    """The state of one accepted socket, from handshake to close."""

    def __init__(
        self, transport: WebSocketTransport, scope: Scope, receive: Receive, send: Send
    ) -> None:
        api = transport.api
        assert api is not None
        self.transport = transport
        self.api = api
        self.scope = scope
        self.receive = receive
        self.send = send
        self.seed: dict[Any, Any] = {}
        self._plain_context = CallContext("websocket", scope)
        self.rpc_headers = _opted_in(scope)
        """The client opened the socket with `?rpc_headers=1`: JSON-RPC responses carry
        their call's headers in a `headers` member."""
        self.close_code: int | None = None
        self.close_reason = ""
        self.gone = False
        """The client has left: nothing more can be sent."""
        self.outbox = Outbox(transport.max_queued_messages, send, self._overflow, self._gone)
        self._group: TaskGroup | None = None
        self._in_flight = 0
        self._slot = Signal()
        self._waiting_for_slot = False
        self._work: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._idle: list[Signal] = []
        self._workers = 0
        self._summoned = 0
        self._pending: dict[Any, anyio.CancelScope | None] = {}
        self._rpc_subscriptions: dict[Any, anyio.CancelScope] = {}
        self._subscriptions = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection: handshake (its dependencies), messages, close."""
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
        # entered and closed in this task, around every message task.
        async with AsyncExitStack() as stack:
            try:
                self.seed = await self.api.invoker.solve_shared(
                    CallContext("websocket", self.scope), transport.handshake_dependencies(), stack
                )
            except TetherError as error:
                await self._refuse(error)
                return
            await self.send({"type": "websocket.accept"})
            if self.close_code is None:
                async with anyio.create_task_group() as group:
                    self._group = group
                    group.start_soon(self.outbox.run)
                    await self._read_loop()
                    group.cancel_scope.cancel()
            if self.close_code is not None and not self.gone:
                with anyio.move_on_after(transport.close_timeout):
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
        if self._group is not None:
            self._group.cancel_scope.cancel()

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
        if self._group is not None:
            self._group.cancel_scope.cancel()

    async def _read_loop(self) -> None:
        receive = self.receive
        transport = self.transport
        limit = transport.max_message_size
        # A text of at most limit/4 characters is at most `limit` bytes of UTF-8.
        short = limit // 4
        cap = transport.max_in_flight
        while True:
            if self._in_flight >= cap:
                # Backpressure: read nothing more until a call finishes.
                self._waiting_for_slot = True
                await self._slot.wait()
                continue
            message = await receive()
            if message["type"] != "websocket.receive":
                self.gone = True
                return
            text = message.get("text")
            if text is None:
                if len(message.get("bytes") or b"") > limit:
                    self.close(1009, f"Message exceeds the limit of {limit} bytes")
                    return
                self.outbox.put(
                    error_reply(
                        b"null",
                        UnsupportedMediaType(
                            "Binary frames are not accepted; send JSON as text frames"
                        ),
                    )
                )
                continue
            if len(text) > short and len(text.encode()) > limit:
                self.close(1009, f"Message exceeds the limit of {limit} bytes")
                return
            self._dispatch(text)

    def _start(self, func: Callable[..., Any], *args: Any) -> None:
        self._in_flight += 1
        self._work.append((func, args))
        if not self._summoned:
            # Otherwise a summoned worker is about to take the queue's head.
            self._summon_worker()

    def _summon_worker(self) -> None:
        idle = self._idle
        if idle:
            self._summoned += 1
            idle.pop().set()
        elif self._workers < self.transport.max_in_flight:
            self._workers += 1
            self._summoned += 1
            assert self._group is not None
            self._group.start_soon(self._worker)

    async def _worker(self) -> None:
        # A worker runs one message at a time, from start to end, in its own task: the
        # message's exit stacks are entered and closed here. Spawning a task per message
        # costs more than the call itself, so workers are kept (at most max_in_flight).
        # Invariant: `_summoned` counts workers woken (or spawned) that have not run yet;
        # at most one is summoned while work waits, so a burst of quick calls runs in one
        # worker without a task switch per message, and a call that blocks lets the
        # summoned worker take the next message.
        work = self._work
        idle = self._idle
        wake = Signal()
        self._summoned -= 1
        while True:
            while work:
                func, args = work.popleft()
                if work and not self._summoned:
                    self._summon_worker()
                await func(*args)
            idle.append(wake)
            await wake.wait()
            self._summoned -= 1

    def _release(self) -> None:
        self._in_flight -= 1
        if self._waiting_for_slot:
            self._waiting_for_slot = False
            self._slot.set()

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
                self._jsonrpc(message)
            else:
                self._envelope(message)
        elif kind is list:
            self._start(self._run_jsonrpc, message)
        else:
            self.outbox.put(
                error_reply(
                    b"null",
                    BadRequest("A message is a JSON object (or a JSON-RPC batch array)"),
                )
            )

    def _envelope(self, message: dict[str, Any]) -> None:
        uuid = message.get("uuid")
        if uuid is None:
            uuid = message.get("track_id")
        route = message.get("route")
        if route is None:
            route = message.get("path")
        if route == PING:
            self.outbox.put(pong(uuid))
            return
        if not valid_uuid(uuid):
            self.outbox.put(
                error_reply(
                    b"null",
                    BadRequest(
                        "Every request needs a uuid: a string or an integer",
                        details={"field": "uuid"},
                    ),
                )
            )
            return
        uuid_json = encode_uuid(uuid)
        outbox = self.outbox
        if type(route) is not str:
            outbox.put(
                error_reply(
                    uuid_json,
                    BadRequest("Every request needs a route: a string", details={"field": "route"}),
                )
            )
            return
        if route == CANCEL:
            subscription = self._pending.get(uuid)
            if subscription is None:
                outbox.put(error_reply(uuid_json, _no_subscription(uuid)))
            else:
                subscription.cancel()
            return
        if uuid in self._pending:
            outbox.put(
                error_reply(
                    uuid_json,
                    Conflict(f"uuid {uuid!r} is already in flight", details={"uuid": uuid}),
                )
            )
            return
        op = self.transport.route(route)
        if op is None:
            name = operation_name(route)
            outbox.put(
                error_reply(
                    uuid_json,
                    NotFound(f"Unknown operation {name!r}", details={"operation": name}),
                )
            )
            return
        try:
            params = bind_payload(op, message.get("payload"))
            headers = message.get("headers")
            scope = (
                self.scope
                if headers is None or headers == {}
                else scope_with_headers(self.scope, headers)
            )
            if op.kind == "stream":
                self._check_subscription_room()
        except TetherError as error:
            outbox.put(error_reply(uuid_json, error))
            return
        if op.kind == "stream":
            cancel = self._pending[uuid] = anyio.CancelScope()
            self._subscriptions += 1
            assert self._group is not None
            self._group.start_soon(
                self._run_envelope_subscription, uuid, uuid_json, op, params, scope, cancel
            )
            return
        self._pending[uuid] = None
        self._start(self._run_call, uuid, uuid_json, op, params, scope)

    async def _run_call(
        self, uuid: Any, uuid_json: bytes, op: Operation, params: Any, scope: Scope
    ) -> None:
        try:
            # Without dependencies the invoker never reads the context: share one.
            ctx = self._plain_context if op.plan is None else CallContext("websocket", scope)
            outcome = await self.api.invoker.run(
                ctx, op, params, encode=True, dependency_cache=self.seed
            )
            # The uuid is free again before the client can see the reply.
            del self._pending[uuid]
            try:
                await self.outbox.send(outcome_reply(uuid_json, outcome))
            except BaseException:
                # Not sent (the socket is closing): no background task; dependencies close.
                await outcome.close_dependencies()
                raise
            if outcome.pending:
                await outcome.finish()
        finally:
            self._pending.pop(uuid, None)
            self._release()

    # -- subscriptions ----------------------------------------------------------------------

    def _check_subscription_room(self) -> None:
        limit = self.transport.max_subscriptions
        if self._subscriptions >= limit:
            raise TooManyRequests(
                f"At most {limit} subscriptions may be open on one connection",
                details={"limit": limit},
            )

    async def _stream(
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
                async with self.api.invoker.stream(
                    ctx, op, params, encode=True, dependency_cache=self.seed
                ) as items:
                    async for item in items:
                        await outbox.send_item(item_message(item))
                        count += 1
                    ended = True
                    await outbox.send(last_message(count, None))
        except TetherError as error:
            self._subscriptions -= 1
            await outbox.send(last_message(count, error))
            return
        except BaseException:
            self._subscriptions -= 1
            raise
        self._subscriptions -= 1
        if not ended:  # cancelled
            await outbox.send(last_message(count, None))

    async def _run_envelope_subscription(
        self,
        uuid: Any,
        uuid_json: bytes,
        op: Operation,
        params: Any,
        scope: Scope,
        cancel: anyio.CancelScope,
    ) -> None:
        def last_message(count: int, error: TetherError | None) -> bytes:
            # The uuid is free again before the client can see the last message.
            self._pending.pop(uuid, None)
            if error is not None:
                return error_reply(uuid_json, error, {"stream": "error", "items": count})
            end = "cancelled" if cancel.cancel_called else "end"
            return headed_reply(uuid_json, 200, {"stream": end, "items": count}, None)

        try:
            await self._stream(
                op, params, scope, cancel, lambda item: item_reply(uuid_json, item), last_message
            )
        finally:
            self._pending.pop(uuid, None)

    # -- JSON-RPC ---------------------------------------------------------------------------

    def _jsonrpc(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if message.get("jsonrpc") == "2.0" and type(method) is str:
            if method == CANCEL_METHOD:
                if self._rpc_cancel(message):
                    return
            else:
                op = self.api.operations.get(method)
                if op is not None and op.kind == "stream" and self._rpc_subscribe(message, op):
                    return
        # Everything else, errors included, is answered exactly as over HTTP.
        self._start(self._run_jsonrpc, message)

    async def _run_jsonrpc(self, message: Any) -> None:
        try:
            dispatcher = self.transport.dispatcher
            assert dispatcher is not None
            answer = await dispatcher.dispatch(
                message,
                self._make_context,
                dependency_cache=self.seed,
                headers_member=self.rpc_headers,
            )
            try:
                if answer.body is not None:
                    await self.outbox.send(answer.body)
            except BaseException:
                await answer.close_dependencies()
                raise
            await answer.finish()
        finally:
            self._release()

    def _make_context(self) -> CallContext:
        return CallContext("websocket", self.scope)

    def _rpc_subscribe(self, message: dict[str, Any], op: Operation) -> bool:
        """Open a subscription for a well-formed request; False leaves it to the dispatcher."""
        if "id" not in message or not valid_uuid(message["id"]):
            return False
        params = message.get("params")
        if "params" in message and type(params) is not dict and type(params) is not list:
            return False
        id_value = message["id"]
        id_json = encode_uuid(id_value)
        try:
            if id_value in self._rpc_subscriptions:
                raise Conflict(
                    f"Subscription {id_value!r} is already open", details={"id": id_value}
                )
            self._check_subscription_room()
            if type(params) is list:
                params = op.params_from_positional(params)
        except TetherError as error:
            self.outbox.put(tether_error_response(id_json, error))
            return True
        cancel = self._rpc_subscriptions[id_value] = anyio.CancelScope()
        self._subscriptions += 1
        assert self._group is not None
        self._group.start_soon(self._run_rpc_subscription, id_value, id_json, op, params, cancel)
        return True

    async def _run_rpc_subscription(
        self, id_value: Any, id_json: bytes, op: Operation, params: Any, cancel: anyio.CancelScope
    ) -> None:
        head = (
            b'{"jsonrpc":"2.0","method":"'
            + SUBSCRIPTION_METHOD.encode()
            + b'","params":{"subscription":'
            + id_json
            + b',"result":'
        )

        def last_message(count: int, error: TetherError | None) -> bytes:
            self._rpc_subscriptions.pop(id_value, None)
            if error is not None:
                return tether_error_response(id_json, error)
            summary = {"items": count, "cancelled": cancel.cancel_called}
            return _RPC_HEAD + id_json + b',"result":' + dumps(summary) + b"}"

        try:
            await self._stream(
                op, params, self.scope, cancel, lambda item: head + item + b"}}", last_message
            )
        finally:
            self._rpc_subscriptions.pop(id_value, None)

    def _rpc_cancel(self, message: dict[str, Any]) -> bool:
        """Cancel a subscription; False leaves a malformed request to the dispatcher."""
        notification = "id" not in message
        id_value = message.get("id")
        if not notification and id_value is not None and not valid_uuid(id_value):
            return False
        params = message.get("params")
        if "params" in message and type(params) is not dict and type(params) is not list:
            return False
        if type(params) is dict and "subscription" in params and len(params) == 1:
            target = params["subscription"]
        elif type(params) is list and len(params) == 1:
            target = params[0]
        else:
            target = _NO_TARGET
        id_json = b"null" if id_value is None else encode_uuid(id_value)
        if not valid_uuid(target):
            # Subscription ids are strings or integers: anything else names none (and is
            # not echoed back, whatever its size or depth).
            if not notification:
                self.outbox.put(
                    tether_error_response(
                        id_json,
                        ValidationFailed.from_errors(
                            [
                                {
                                    "loc": ["subscription"],
                                    "msg": f"{CANCEL_METHOD} takes the subscription's id"
                                    ' (a string or an integer): {"subscription": id} or [id]',
                                    "type": "missing" if target is _NO_TARGET else "id_type",
                                }
                            ]
                        ),
                    )
                )
            return True
        cancel = self._rpc_subscriptions.get(target)
        if cancel is not None:
            cancel.cancel()
        if not notification:
            if cancel is None:
                self.outbox.put(tether_error_response(id_json, _no_subscription(target)))
            else:
                self.outbox.put(_RPC_HEAD + id_json + b',"result":{"cancelled":true}}')
        return True


def _no_subscription(key: Any) -> NotFound:
    return NotFound(f"No open subscription {key!r}", details={"subscription": key})


def _reason(message: str) -> str:
    # A close frame's reason is at most 123 bytes of UTF-8.
    encoded = message.encode()
    if len(encoded) <= 123:
        return message
    return encoded[:120].decode(errors="ignore") + "..."


def _opted_in(scope: Scope) -> bool:
    raw = scope.get("query_string", b"")
    return bool(raw) and ("rpc_headers", "1") in parse_qsl(raw.decode("latin-1"))
