"""The JSON-RPC 2.0 transport: `POST {prefix}/jsonrpc`, and `GET {prefix}/openrpc.json`.

Every operation is a method: single calls, notifications and batches, exactly per the
JSON-RPC 2.0 specification. This module is the HTTP endpoint only: it checks the content
type and the body size, parses strict JSON and hands the message to the
`JsonRpcDispatcher`, which the WebSocket transport reuses for its JSON-RPC dialect.

HTTP status: 200 for any JSON-RPC response body (errors included), 204 when nothing is
answered (notifications), and the HTTP-level problems keep theirs, with a JSON-RPC error
body: 413 for a body over `Tether(max_body_size=...)`, 408 for one not arrived within
`Tether(body_timeout=...)`, 415 for a missing content type or one that is not JSON, 405 for
a method other than POST. An answer sent before the body was read whole closes the
connection. The in-flight slot is taken once the body has arrived; a message that calls
only queries is cancelled if its client disconnects (see docs/transports/jsonrpc.md).

Cache effects (docs/cache.md): the response says `Cache-Control: no-store` when the message
calls a command, and `X-Tether-Invalidate` (every call's invalidations, in message order)
when any call invalidated something. Response objects stay the specification's unless the
request says `X-Tether-Effects: 1`: then a response whose call had effects gets the
`effects` extension member, `{"invalidate": [...], "merge": [...]}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import params
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ..context import CallContext
from ..errors import BadRequest, ConfigurationError, MethodNotAllowed, TetherError, TooManyRequests
from ..schema.openapi import DocumentationRoute
from ._body import (
    CLOSE,
    ClientDisconnected,
    has_body,
    header,
    parse_json,
    read_body,
    require_json_content_type,
)
from ._disconnect import run_unless_disconnected
from ._jsonrpc_dispatch import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENCY,
    PARSE_ERROR_RESPONSE,
    JsonRpcDispatcher,
    JsonRpcReply,
    tether_error_response,
)
from ._jsonrpc_docs import documentation_routes

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..operation import Operation
    from ..transport import TransportHandle

__all__ = ("EFFECTS_HEADER", "JsonRpcDispatcher", "JsonRpcReply", "JsonRpcTransport")

_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
_INVALIDATE = b"x-tether-invalidate"
EFFECTS_HEADER = "X-Tether-Effects"
"""The request header (value `1`) that opts in to the `effects` member of responses."""


class JsonRpcTransport:
    """Serves JSON-RPC 2.0 at `POST {prefix}/jsonrpc` and the OpenRPC document beside it.

    Args:
        path: the endpoint's path under the Tether prefix.
        max_batch_size: largest batch accepted (default 100); a larger one is refused whole.
        max_concurrency: how many items of one batch run at once (default 16).
        batch_dependencies: no longer accepted (it protected this wire only); passing it
            raises `ConfigurationError`. Use `Tether(batch_dependencies=[...])`, which
            applies to every operation on every transport, once per batch here.

    Raises:
        ConfigurationError: `batch_dependencies` was passed.
    """

    wire = "jsonrpc"
    """The wire's name in tether's schema document (`transports` of an operation)."""
    serves = frozenset(("query", "command"))
    """The kinds of operation this wire calls."""

    def __init__(
        self,
        *,
        path: str = "/jsonrpc",
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        batch_dependencies: Sequence[params.Depends] | None = None,
    ) -> None:
        if batch_dependencies is not None:
            raise ConfigurationError(
                "JsonRpcTransport(batch_dependencies=...) is gone: it protected JSON-RPC only,"
                " while HTTP, the WebSocket, SSE and in-process calls stayed open. Use"
                " Tether(batch_dependencies=[...]) (solved once per JSON-RPC batch, per call"
                " elsewhere), Tether(dependencies=[...]) (per call) or"
                " Tether(connection_dependencies=[...]) (once per WebSocket connection): each"
                " applies to every operation on every transport"
            )
        self.path = path
        self.max_batch_size = max_batch_size
        self.max_concurrency = max_concurrency
        self.handle: TransportHandle | None = None
        self.dispatcher: JsonRpcDispatcher | None = None
        """The message handler, once attached."""

    def attach(self, handle: TransportHandle, app: FastAPI) -> None:
        """Add the JSON-RPC endpoint, the OpenRPC document and their OpenAPI docs to `app`."""
        endpoint = f"{handle.prefix}{self.path}"
        self.handle = handle
        self.dispatcher = JsonRpcDispatcher(
            handle,
            max_batch_size=self.max_batch_size,
            max_concurrency=self.max_concurrency,
            server_url=endpoint,
        )
        routes = app.router.routes
        # Before every documentation route: those never match, but Starlette tries each
        # route in turn, and there are one or two per operation.
        position = next(
            (i for i, route in enumerate(routes) if isinstance(route, DocumentationRoute)),
            len(routes),
        )
        routes[position:position] = [
            Route(endpoint, endpoint=self, include_in_schema=False),
            Route(
                f"{handle.prefix}/openrpc.json",
                endpoint=self._openrpc,
                methods=["GET"],
                include_in_schema=False,
            ),
        ]
        routes.extend(documentation_routes(endpoint, f"{handle.prefix}/openrpc.json"))
        app.openapi_schema = None

    def operation_added(self, op: Operation) -> None:
        """Nothing to do: the endpoint is generic and the OpenRPC document is rebuilt lazily."""

    async def _openrpc(self, request: Request) -> Response:
        assert self.dispatcher is not None
        try:
            body = self.dispatcher.openrpc_json()
        except TetherError as error:
            return Response(
                tether_error_response(b"null", error),
                status_code=error.status,
                media_type="application/json",
            )
        return Response(body, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP request carrying a JSON-RPC message (the endpoint's ASGI app)."""
        dispatcher = self.dispatcher
        assert dispatcher is not None
        api = dispatcher.handle
        try:
            if scope["method"] != "POST":
                raise _WrongMethod(f"{scope['method']} is not allowed; JSON-RPC uses POST")
            require_json_content_type(scope)
            body = await read_body(scope, receive, api.max_body_size, api.body_timeout)
        except ClientDisconnected:
            return
        except TetherError as error:
            extra = [(b"allow", b"POST")] if isinstance(error, _WrongMethod) else []
            if has_body(scope):
                # Answered before the body was read whole (413, 408, 415...): closing the
                # connection stops the server from reading the rest, however long it is.
                extra.append(CLOSE)
            await _send(send, error.status, tether_error_response(b"null", error), extra)
            return
        # The body has arrived whole: only now does the request take an in-flight slot, so
        # slow senders hold none.
        try:
            api.admission.enter()
        except TooManyRequests as error:
            retry = [(b"retry-after", b"1")]
            await _send(send, error.status, tether_error_response(b"null", error), retry)
            return
        try:
            await self._answer(dispatcher, scope, receive, send, body)
        finally:
            api.admission.leave()

    async def _answer(
        self,
        dispatcher: JsonRpcDispatcher,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
    ) -> None:
        try:
            message = parse_json(body)
        except BadRequest:
            await _send(send, 200, PARSE_ERROR_RESPONSE)
            return

        def make_context() -> CallContext:
            return CallContext("jsonrpc", scope, receive, body=body)

        dispatch = dispatcher.dispatch(
            message,
            make_context,
            effects_member=header(scope, b"x-tether-effects") == b"1",
        )
        cancellable, calls_command = _survey(message, dispatcher.handle.operations)
        if cancellable:
            # Only queries (or nothing callable): cancelled if the client goes away. A
            # message that calls a command runs whole, its queries too: the client could
            # not know how far a half-done change went, and the items share per-batch
            # dependencies.
            try:
                reply = await run_unless_disconnected(
                    receive,
                    dispatch,
                    settle=JsonRpcReply.close_dependencies,
                    abandon=JsonRpcReply.finish,
                )
            except ClientDisconnected:
                return
        else:
            reply = await dispatch
        headers = reply.headers
        if calls_command:
            # What a command answers is never cached; a dependency's own say is replaced.
            if headers:
                headers = [item for item in headers if item[0] != b"cache-control"]
            else:
                headers = []
            headers.append(_NO_STORE)
            invalidate = reply.invalidate_header()
            if invalidate is not None:
                headers.append((_INVALIDATE, invalidate))
        try:
            if reply.body is None:
                await _send(send, 204, b"", headers)
            else:
                await _send(send, 200, reply.body, headers)
        except BaseException:
            # Not sent (the client left): no background task; the dependencies still close.
            await reply.close_dependencies()
            raise
        await reply.finish()


class _WrongMethod(MethodNotAllowed):
    """A request to the JSON-RPC endpoint that is not a POST."""


def _survey(message: Any, operations: Mapping[str, Operation]) -> tuple[bool, bool]:
    """Say whether a message (request or batch) may be cancelled, and whether it calls a command.

    It may be cancelled when it only calls async queries (or nothing): a sync query runs in
    a worker thread, which cannot be interrupted, and a command runs to its end.
    """
    items = message if type(message) is list else (message,)
    cancellable = True
    for item in items:
        method = item.get("method") if type(item) is dict else None
        op = operations.get(method) if type(method) is str else None
        # One test per async query, the common item: this runs for every item of a batch.
        if op is not None and (op.kind != "query" or not op.is_async):
            if op.kind == "command":
                return False, True
            cancellable = False
    return cancellable, False


async def _send(
    send: Send, status: int, body: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers: list[Any]
    if status == 204:
        headers = list(extra)
    else:
        headers = [_JSON, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
