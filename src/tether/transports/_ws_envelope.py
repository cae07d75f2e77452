"""The envelope dialect of the WebSocket transport (fastapi-observable-socket's message schema).

A request is `{"uuid", "route", "headers"?, "payload"?}` (`track_id` and `path` are
aliases of `uuid` and `route`); a reply is `{"uuid", "status", "headers", "payload"}`,
whose `headers` maps a name to its value, or to the list of its values when the call set
it more than once (two `Set-Cookie`).
This module reads requests and writes replies; the connection runs the calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import BadRequest, TetherError, ValidationFailed
from ..outcome import Outcome, header_object
from ._json_out import dumps

if TYPE_CHECKING:
    from starlette.types import Scope

    from ..operation import Operation

__all__ = (
    "CANCEL",
    "PING",
    "bind_payload",
    "encode_uuid",
    "error_reply",
    "headed_reply",
    "item_reply",
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
    list of its values. A failed call's reply has only the error's own headers.
    """
    error = outcome.error
    if error is not None:
        return error_reply(uuid_json, error)
    result: bytes = outcome.result
    if not outcome.headers and outcome.status is None:
        return b'{"uuid":' + uuid_json + _OK_HEAD + result + b"}"
    return (
        b'{"uuid":'
        + uuid_json
        + b',"status":'
        + str(outcome.status or 200).encode()
        + b',"headers":'
        + dumps(header_object(outcome.headers))
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
