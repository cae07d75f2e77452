"""The JSON-RPC 2.0 dialect of the WebSocket transport: calls, batches, subscriptions, cancel.

Calls and batches are answered by the transport's `JsonRpcDispatcher`, exactly as over
HTTP. The socket adds subscriptions: a request for a stream operation opens one, whose
items arrive as `subscription` notifications and whose end answers the request;
`rpc.cancel` cancels one. `rpc.hello` with params `{"effects": true}` opts the connection
in to the `effects` member of responses (as `?effects=1` on the socket's URL does; see
docs/cache.md). The connection (`_ws_connection`) owns the socket and schedules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from ..errors import Conflict, TetherError, ValidationFailed
from ._json_out import dumps
from ._jsonrpc_responses import RESPONSE_HEAD, tether_error_response
from ._ws_envelope import encode_uuid, no_subscription, valid_uuid
from ._ws_live import LIVE_METHOD, start_jsonrpc_live

if TYPE_CHECKING:
    from ..operation import Operation
    from ._ws_connection import Connection

__all__ = ("CANCEL_METHOD", "HELLO_METHOD", "SUBSCRIPTION_METHOD", "handle_jsonrpc", "run_jsonrpc")

CANCEL_METHOD = "rpc.cancel"
"""JSON-RPC method that cancels a subscription: params `{"subscription": id}` or `[id]`."""
SUBSCRIPTION_METHOD = "subscription"
"""Method of the server notifications that carry a JSON-RPC subscription's items."""
HELLO_METHOD = "rpc.hello"
"""JSON-RPC method that sets the connection's options: params `{"effects": true}`."""

_NO_TARGET: Any = object()  # an rpc.cancel whose params name no subscription at all


def handle_jsonrpc(conn: Connection, message: dict[str, Any]) -> None:
    """Answer one JSON-RPC request object: a cancel, a subscription, or a call to run."""
    method = message.get("method")
    if message.get("jsonrpc") == "2.0" and type(method) is str:
        if method == CANCEL_METHOD:
            if _cancel(conn, message):
                return
        elif method == HELLO_METHOD:
            if _hello(conn, message):
                return
        elif method == LIVE_METHOD:
            if start_jsonrpc_live(conn, message):
                return
        else:
            op = conn.handle.operations.get(method)
            if op is not None and op.kind == "stream" and _subscribe(conn, message, op):
                return
    # Everything else, errors included, is answered exactly as over HTTP.
    conn.pool.start(run_jsonrpc, conn, message)


async def run_jsonrpc(conn: Connection, message: Any) -> None:
    """Answer a request object or a batch with the dispatcher, send the answer, then finish."""
    dispatcher = conn.transport.dispatcher
    assert dispatcher is not None
    answer = await dispatcher.dispatch(
        message,
        conn.make_context,
        dependency_cache=conn.seed,
        headers_member=conn.rpc_headers,
        effects_member=conn.rpc_effects,
    )
    try:
        if answer.body is not None:
            await conn.outbox.send(answer.body)
    except BaseException:
        await answer.close_dependencies()
        raise
    await answer.finish()


def _subscribe(conn: Connection, message: dict[str, Any], op: Operation) -> bool:
    """Open a subscription for a well-formed request; False leaves it to the dispatcher."""
    if "id" not in message or not valid_uuid(message["id"]):
        return False
    params = message.get("params")
    if "params" in message and type(params) is not dict and type(params) is not list:
        return False
    id_value = message["id"]
    id_json = encode_uuid(id_value)
    try:
        if id_value in conn.rpc_subscriptions:
            raise Conflict(f"Subscription {id_value!r} is already open", details={"id": id_value})
        conn.check_subscription_room()
        if type(params) is list:
            params = op.params_from_positional(params)
    except TetherError as error:
        conn.outbox.put(tether_error_response(id_json, error))
        return True
    cancel = conn.rpc_subscriptions[id_value] = anyio.CancelScope()
    conn.open_subscription(_run_subscription, conn, id_value, id_json, op, params, cancel)
    return True


async def _run_subscription(
    conn: Connection,
    id_value: Any,
    id_json: bytes,
    op: Operation,
    params: Any,
    cancel: anyio.CancelScope,
) -> None:
    head = (
        b'{"jsonrpc":"2.0","method":"'
        + SUBSCRIPTION_METHOD.encode()
        + b'","params":{"subscription":'
        + id_json
        + b',"result":'
    )

    def last_message(count: int, error: TetherError | None) -> bytes:
        conn.rpc_subscriptions.pop(id_value, None)
        if error is not None:
            return tether_error_response(id_json, error)
        summary = {"items": count, "cancelled": cancel.cancel_called}
        return RESPONSE_HEAD + id_json + b',"result":' + dumps(summary) + b"}"

    try:
        await conn.stream(
            op, params, conn.scope, cancel, lambda item: head + item + b"}}", last_message
        )
    finally:
        conn.rpc_subscriptions.pop(id_value, None)


def _control_request(message: dict[str, Any]) -> tuple[bool, bytes, Any] | None:
    """Read a control method's request: (a notification?, its id as JSON, its params).

    None when the request is malformed (a bad id, params neither an object nor an array): the
    dispatcher answers those as it answers any request.
    """
    notification = "id" not in message
    id_value = message.get("id")
    if not notification and id_value is not None and not valid_uuid(id_value):
        return None
    params = message.get("params")
    if "params" in message and type(params) is not dict and type(params) is not list:
        return None
    id_json = b"null" if id_value is None else encode_uuid(id_value)
    return notification, id_json, params


def _cancel(conn: Connection, message: dict[str, Any]) -> bool:
    """Cancel a subscription; False leaves a malformed request to the dispatcher."""
    request = _control_request(message)
    if request is None:
        return False
    notification, id_json, params = request
    if type(params) is dict and "subscription" in params and len(params) == 1:
        target = params["subscription"]
    elif type(params) is list and len(params) == 1:
        target = params[0]
    else:
        target = _NO_TARGET
    if not valid_uuid(target):
        # Subscription ids are strings or integers: anything else names none (and is not
        # echoed back, whatever its size or depth).
        if not notification:
            conn.outbox.put(tether_error_response(id_json, _bad_target(target)))
        return True
    cancel = conn.rpc_subscriptions.get(target)
    if cancel is not None:
        cancel.cancel()
    if not notification:
        if cancel is None:
            conn.outbox.put(tether_error_response(id_json, no_subscription(target)))
        else:
            conn.outbox.put(RESPONSE_HEAD + id_json + b',"result":{"cancelled":true}}')
    return True


def _hello(conn: Connection, message: dict[str, Any]) -> bool:
    """Set the connection's options and answer them; False leaves a malformed request.

    `{"effects": true}` opts in to the `effects` member (false opts out); members it does
    not know are ignored, so a client may greet servers of other versions alike.
    """
    request = _control_request(message)
    if request is None:
        return False
    notification, id_json, params = request
    effects: Any = conn.rpc_effects
    if type(params) is dict:
        effects = params.get("effects", effects)
    elif params is not None:
        effects = None  # positional params: the option has no position
    if type(effects) is not bool:
        if not notification:
            error = ValidationFailed.from_errors(
                [
                    {
                        "loc": ["effects"],
                        "msg": f'{HELLO_METHOD} takes {{"effects": true}} (a boolean)',
                        "type": "bool_type",
                    }
                ]
            )
            conn.outbox.put(tether_error_response(id_json, error))
        return True
    conn.rpc_effects = effects
    if not notification:
        result = b'{"effects":true}' if effects else b'{"effects":false}'
        conn.outbox.put(RESPONSE_HEAD + id_json + b',"result":' + result + b"}")
    return True


def _bad_target(target: Any) -> ValidationFailed:
    return ValidationFailed.from_errors(
        [
            {
                "loc": ["subscription"],
                "msg": f"{CANCEL_METHOD} takes the subscription's id"
                ' (a string or an integer): {"subscription": id} or [id]',
                "type": "missing" if target is _NO_TARGET else "id_type",
            }
        ]
    )
