"""JSON-RPC 2.0 responses: the error codes, the response objects, and one message's reply.

Responses are assembled as bytes: results arrive from the invoker already encoded and are
never re-encoded. A response is exactly the specification's unless its client opted in to
an extension member: `headers` (a socket's `?rpc_headers=1`) or `effects` (the cache
effects of a command's call: `X-Tether-Effects: 1` over HTTP, `?effects=1` or `rpc.hello`
on a socket; see docs/cache.md).
"""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..effects import Effects

from ..errors import TetherError
from ..outcome import Outcome, header_object
from ._json_out import dumps as dumps_exact

__all__ = (
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "INVALID_REQUEST_NULL_ID",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "PARSE_ERROR_RESPONSE",
    "RESPONSE_HEAD",
    "RESULT_MEMBER",
    "JsonRpcReply",
    "error_response",
    "invalid_request",
    "tether_error_response",
    "with_effects_member",
    "with_headers_member",
)

logger = logging.getLogger("tether")

PARSE_ERROR = -32700
"""The message is not valid JSON."""
INVALID_REQUEST = -32600
"""The JSON is not a valid request object (or the batch is empty or too large)."""
METHOD_NOT_FOUND = -32601
"""No operation has that name."""
INVALID_PARAMS = -32602
"""The params did not bind to the operation's inputs (`ValidationFailed`)."""
INTERNAL_ERROR = -32603
"""An unexpected failure on the server (`InternalError`)."""

RESPONSE_HEAD = b'{"jsonrpc":"2.0","id":'
"""How every response object starts; the id's JSON follows."""
RESULT_MEMBER = b',"result":'
"""What follows the id in a successful response; the result's JSON follows."""
_NO_DATA: Any = object()


def error_response(id_json: bytes, code: int, message: str, data: Any = _NO_DATA) -> bytes:
    """Return a JSON-RPC error response for the request whose id is `id_json` (JSON bytes)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not _NO_DATA:
        error["data"] = data
    # The details may echo a client's id: an integer of any size (orjson stops at 64 bits).
    return RESPONSE_HEAD + id_json + b',"error":' + dumps_exact(error) + b"}"


def tether_error_response(id_json: bytes, error: TetherError) -> bytes:
    """Return the error response for a `TetherError`: its JSON-RPC code, message, and data.

    `data` is `{"code": <string code>, "details": <details>}`.
    """
    body = error.to_dict()
    return error_response(
        id_json,
        error.jsonrpc_code,
        body["message"],
        {"code": body["code"], "details": body["details"]},
    )


PARSE_ERROR_RESPONSE = error_response(b"null", PARSE_ERROR, "Parse error")
"""The response to a message that is not valid JSON (its id cannot be known)."""
INVALID_REQUEST_NULL_ID = error_response(b"null", INVALID_REQUEST, "Invalid Request")
"""The response to an invalid request whose id cannot be known."""


def with_headers_member(response: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Add the `headers` extension member to a response object (a socket client opted in).

    Its value has the envelope's shape: `{name: value}`, a list of values for a header
    set more than once (two `Set-Cookie`).
    """
    return response[:-1] + b',"headers":' + dumps_exact(header_object(headers)) + b"}"


def with_effects_member(response: bytes, effects: Effects) -> bytes:
    """Add the `effects` extension member to a response object (its client opted in).

    Its value is `{"invalidate": [...], "merge": [...]}`, both lists, maybe empty.
    """
    return response[:-1] + b',"effects":' + effects.to_json() + b"}"


def invalid_request(id_json: bytes) -> bytes:
    """Return the -32600 response for the request whose id is `id_json`."""
    if id_json == b"null":
        return INVALID_REQUEST_NULL_ID
    return error_response(id_json, INVALID_REQUEST, "Invalid Request")


class JsonRpcReply:
    """What answering one message produced: the response body, and the work left after it.

    The transport sends `body` (with `headers`, where its wire has headers), then awaits
    `finish()` in the task that dispatched the message.
    """

    __slots__ = ("_effects", "_outcomes", "_shared", "body", "headers")

    def __init__(self, body: bytes | None = None) -> None:
        self.body = body
        """Response bytes (one object, or a batch array); None when nothing is answered."""
        self.headers: list[tuple[bytes, bytes]] = []
        """Response headers of the calls (their outcomes'): the cookies and headers that a
        successful call's `Response` dependencies set, and a failed call's own error headers."""
        self._outcomes: list[Outcome] = []
        self._shared: AsyncExitStack | None = None
        self._effects: list[tuple[int, Effects]] | None = None

    def note_effects(self, index: int, effects: Effects) -> None:
        """Record the cache effects of the call at `index` of the message (for the header)."""
        if self._effects is None:
            self._effects = []
        self._effects.append((index, effects))

    def invalidate_header(self) -> bytes | None:
        """Return every call's invalidations, in message order, as ASCII JSON (None: none).

        The value of the `X-Tether-Invalidate` header of an HTTP reply.
        """
        noted = self._effects
        if not noted:
            return None
        noted.sort(key=lambda item: item[0])
        entries = [entry for _, effects in noted for entry in effects.invalidate]
        if not entries:
            return None
        return json.dumps(entries, separators=(",", ":"), ensure_ascii=True, default=str).encode()

    def collect(self, outcome: Outcome) -> None:
        """Take a call's outcome: its headers now, its after-call work for `finish()`."""
        if outcome.headers:
            self.headers.extend(outcome.headers)
        if outcome.pending:
            self._outcomes.append(outcome)

    def close_shared_last(self, stack: AsyncExitStack) -> None:
        """Close `stack` (the message's shared dependencies) after every call's own work."""
        self._shared = stack

    async def close_dependencies(self) -> None:
        """Close every call's yield dependencies, then the shared ones, now (before sending)."""
        for outcome in self._outcomes:
            await outcome.close_dependencies()
        shared = self._shared
        if shared is not None:
            self._shared = None
            await _close_shared(shared)

    async def finish(self) -> None:
        """Do the calls' after-call work, once `body` is sent: background tasks, teardown.

        Each call's outcome finishes in turn (a failure is logged with its operation's name
        and does not stop the other calls'); the dependencies shared by the message (its
        per-batch ones) close last.
        """
        outcomes = self._outcomes
        self._outcomes = []
        shared = self._shared
        self._shared = None
        try:
            for outcome in outcomes:
                await outcome.finish()
        finally:
            if shared is not None:
                await _close_shared(shared)


async def _close_shared(stack: AsyncExitStack) -> None:
    try:
        await stack.aclose()
    except Exception:
        logger.exception("a per-batch yield dependency failed while closing; the answer stands")
