"""The envelope dialect of the WebSocket transport (fastapi-observable-socket's message schema).

A request is `{"uuid", "route", "headers"?, "payload"?}` (`track_id` and `path` are
aliases of `uuid` and `route`); a reply is `{"uuid", "status", "headers", "payload"}`,
whose `headers` maps a name to its value, or to the list of its values when the call set
it more than once (two `Set-Cookie`).
This module reads requests, runs their calls and subscriptions on a `Connection`
(`handle_envelope`), and writes replies; the connection owns the socket and schedules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ..context import CallContext
from ..errors import BadRequest, Conflict, NotFound, TetherError, ValidationFailed
from ..outcome import Outcome, header_object
from ._json_out import dumps

if TYPE_CHECKING:
    from starlette.types import Scope

    from ..operation import Operation
    from ._ws_connection import Connection

__all__ = (
    "CANCEL",
    "LIVE",
    "PING",
    "bind_payload",
    "encode_uuid",
    "error_reply",
    "handle_envelope",
    "headed_reply",
    "item_reply",
    "no_subscription",
    "operation_name",
    "outcome_reply",
    "pong",
    "scope_with_headers",
    "valid_uuid",
)

PING = "PING"
"""The route of a heartbeat, answered with `PONG`."""
CANCEL = "CANCEL"
"""The route that cancels the subscription whose uuid the message carries."""
LIVE = "LIVE"
"""The route that opens a live subscription (`_ws_live`): payload `{"contexts", "since"?}`."""

_ITEM_HEAD = b',"status":200,"headers":{"stream":"item"},"payload":'
_OK_HEAD = b',"status":200,"headers":{},"payload":'


def valid_uuid(uuid: Any) -> bool:
    """Say whether `uuid` can correlate a request: a string or an integer (not a boolean)."""
    kind = type(uuid)
    return kind is str or kind is int


def encode_uuid(uuid: Any) -> bytes:
    """Return a valid uuid (or JSON-RPC id) as JSON; an integer may have any size."""
    # orjson encodes integers only up to 64 bits; str() writes any integer exactly.
    return str(uuid).encode() if type(uuid) is int else dumps(uuid)


def operation_name(route: str) -> str:
    """Turn a route into an operation name: `/` and `.` are equivalent (`math/sum` is `math.sum`)."""
    return route.lstrip("/").replace("/", ".")


def item_reply(uuid_json: bytes, item_json: bytes) -> bytes:
    """Return one subscription item: a 200 reply with headers `{"stream": "item"}`."""
    return b'{"uuid":' + uuid_json + _ITEM_HEAD + item_json + b"}"


def headed_reply(uuid_json: bytes, status: int, headers: Mapping[str, Any], payload: Any) -> bytes:
    """Return a reply with the given status, headers and payload (encoded here)."""
    return (
        b'{"uuid":'
        + uuid_json
        + b',"status":'
        + str(status).encode()
        + b',"headers":'
        + dumps(headers)
        + b',"payload":'
        + dumps(payload)
        + b"}"
    )


def error_reply(
    uuid_json: bytes, error: TetherError, headers: Mapping[str, Any] | None = None
) -> bytes:
    """Return the reply for a failure: the error's HTTP status, the error envelope as payload.

    The reply's headers are the error's own (the `WWW-Authenticate` of a 401), then
    `headers`.
    """
    merged: dict[str, Any] = header_object(Outcome.failed("", error).headers)
    if headers:
        merged.update(headers)
    return headed_reply(uuid_json, error.status, merged, {"error": error.to_dict()})


def outcome_reply(uuid_json: bytes, outcome: Outcome) -> bytes:
    """Return the reply to a call: its status, its headers and its result (or error) payload.

    Headers are `{name: value}`; a header set more than once (two `Set-Cookie`) has the
    list of its values. A failed call's reply has only the error's own headers. A call with
    cache effects adds `invalidate` and `merge` (JSON arrays, each only when not empty).
    """
    error = outcome.error
    if error is not None:
        return error_reply(uuid_json, error)
    result: bytes = outcome.result
    effects = outcome.effects
    if not outcome.headers and outcome.status is None and not effects:
        return b'{"uuid":' + uuid_json + _OK_HEAD + result + b"}"
    headers = dumps(header_object(outcome.headers))
    if effects:
        headers = headers[:-1] + (b"," if len(headers) > 2 else b"") + effects.members() + b"}"
    return (
        b'{"uuid":'
        + uuid_json
        + b',"status":'
        + str(outcome.status or 200).encode()
        + b',"headers":'
        + headers
        + b',"payload":'
        + result
        + b"}"
    )


def pong(uuid: Any) -> bytes:
    """Return the answer to `{"route": "PING"}`: `{"uuid", "route": "PONG"}`."""
    # The uuid is echoed whatever it is (any JSON value, integers of any size).
    return b'{"uuid":' + dumps(uuid) + b',"route":"PONG"}'


def bind_payload(op: Operation, payload: Any) -> Any:
    """Turn a request's payload into the operation's params.

    An object binds by name; an operation with exactly one input takes any other payload
    whole (and an object that does not name that input); an array binds positionally.

    Raises:
        ValidationFailed: the payload cannot bind to the operation's inputs.
    """
    names = op.input_names
    kind = type(payload)
    if payload is None:
        return None
    if kind is dict:
        if len(names) == 1 and payload and names[0] not in payload:
            return {names[0]: payload}
        return payload
    if len(names) == 1:
        return {names[0]: payload}
    if kind is list:
        return op.params_from_positional(payload)
    raise ValidationFailed.from_errors(
        [
            {
                "loc": ["payload"],
                "msg": f"{op.name} takes {len(names)} parameters: send an object or an array",
                "type": "payload_type",
            }
        ]
    )


def scope_with_headers(scope: Scope, headers: Any) -> Scope:
    """Return a copy of the connection's scope whose headers the message's `headers` override.

    Raises:
        BadRequest: `headers` is not an object of strings (or numbers).
    """
    if type(headers) is not dict:
        raise BadRequest("headers must be a JSON object", details={"field": "headers"})
    overrides: list[tuple[bytes, bytes]] = []
    for name, value in headers.items():
        if type(value) is not str:
            if type(value) not in (int, float):
                raise BadRequest(
                    "header values must be strings or numbers", details={"header": name}
                )
            value = str(value)
        try:
            overrides.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise BadRequest(
                "header names and values must be Latin-1 text", details={"header": name}
            ) from None
    replaced = {name for name, _ in overrides}
    child = dict(scope)
    child["headers"] = [
        *(item for item in scope["headers"] if item[0] not in replaced),
        *overrides,
    ]
    return child


def no_subscription(key: Any) -> NotFound:
    """Return the error for a cancel that names no open subscription."""
    return NotFound(f"No open subscription {key!r}", details={"subscription": key})


def handle_envelope(conn: Connection, message: dict[str, Any]) -> None:
    """Answer one envelope request: a ping, a cancel, or a call or subscription to start."""
    uuid = message.get("uuid")
    if uuid is None:
        uuid = message.get("track_id")
    route = message.get("route")
    if route is None:
        route = message.get("path")
    outbox = conn.outbox
    if route == PING:
        outbox.put(pong(uuid))
        return
    if not valid_uuid(uuid):
        outbox.put(
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
    if type(route) is not str:
        outbox.put(
            error_reply(
                uuid_json,
                BadRequest("Every request needs a route: a string", details={"field": "route"}),
            )
        )
        return
    if route == CANCEL:
        subscription = conn.pending.get(uuid)
        if subscription is None:
            outbox.put(error_reply(uuid_json, no_subscription(uuid)))
        else:
            subscription.cancel()
        return
    if uuid in conn.pending:
        outbox.put(
            error_reply(
                uuid_json, Conflict(f"uuid {uuid!r} is already in flight", details={"uuid": uuid})
            )
        )
        return
    if route == LIVE:
        from ._ws_live import start_envelope_live  # imported here: _ws_live imports this module

        start_envelope_live(conn, message, uuid, uuid_json)
        return
    _start(conn, message, route, uuid, uuid_json)


def _start(
    conn: Connection, message: dict[str, Any], route: str, uuid: Any, uuid_json: bytes
) -> None:
    # A request with a valid uuid and route: bind it, then run its call or subscription.
    op = conn.transport.route(route)
    if op is None:
        name = operation_name(route)
        conn.outbox.put(
            error_reply(
                uuid_json, NotFound(f"Unknown operation {name!r}", details={"operation": name})
            )
        )
        return
    try:
        params = bind_payload(op, message.get("payload"))
        headers = message.get("headers")
        scope = (
            conn.scope
            if headers is None or headers == {}
            else scope_with_headers(conn.scope, headers)
        )
        if op.kind == "stream":
            conn.check_subscription_room()
    except TetherError as error:
        conn.outbox.put(error_reply(uuid_json, error))
        return
    if op.kind == "stream":
        cancel = conn.pending[uuid] = anyio.CancelScope()
        conn.open_subscription(_run_subscription, conn, uuid, uuid_json, op, params, scope, cancel)
        return
    conn.pending[uuid] = None
    conn.pool.start(_run_call, conn, uuid, uuid_json, op, params, scope)


async def _run_call(
    conn: Connection, uuid: Any, uuid_json: bytes, op: Operation, params: Any, scope: Scope
) -> None:
    try:
        # Without dependencies the invoker never reads the context: share one.
        ctx = conn.plain_context if op.plan is None else CallContext("websocket", scope)
        outcome = await conn.handle.invoker.run(
            ctx, op, params, encode=True, dependency_cache=conn.seed
        )
        # The uuid is free again before the client can see the reply.
        del conn.pending[uuid]
        try:
            await conn.outbox.send(outcome_reply(uuid_json, outcome))
        except BaseException:
            # Not sent (the socket is closing): no background task; dependencies close.
            await outcome.close_dependencies()
            raise
        if outcome.pending:
            await outcome.finish()
    finally:
        conn.pending.pop(uuid, None)


async def _run_subscription(
    conn: Connection,
    uuid: Any,
    uuid_json: bytes,
    op: Operation,
    params: Any,
    scope: Scope,
    cancel: anyio.CancelScope,
) -> None:
    def last_message(count: int, error: TetherError | None) -> bytes:
        # The uuid is free again before the client can see the last message.
        conn.pending.pop(uuid, None)
        if error is not None:
            return error_reply(uuid_json, error, {"stream": "error", "items": count})
        end = "cancelled" if cancel.cancel_called else "end"
        return headed_reply(uuid_json, 200, {"stream": end, "items": count}, None)

    try:
        await conn.stream(
            op, params, scope, cancel, lambda item: item_reply(uuid_json, item), last_message
        )
    finally:
        conn.pending.pop(uuid, None)
