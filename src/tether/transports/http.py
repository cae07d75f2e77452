"""The HTTP transport: `POST {prefix}/call/{name}` (and `GET` for queries), and context bundles.

A call answers `200 {"result": ...}`; a failure answers the error's status with
`{"error": {"code", "message", "details"}}`. Dispatch is one route and a dict lookup,
whatever the number of operations; each operation also gets documentation-only routes so
that FastAPI's OpenAPI and Swagger UI show it as a real endpoint.

Cache effects (docs/cache.md): a command whose call has effects answers `{"result": ...,
"invalidate": [...], "merge": [...]}` (each member only when not empty) and the
`X-Tether-Invalidate` header (the invalidate list as ASCII JSON); every answer to a command,
success or error, says `Cache-Control: no-store`. Context bundles are served beside calls,
at `GET/POST {prefix}/context/{name}` (`_context_route`).

Against hostile clients: a POST needs a JSON content type (415 otherwise, so no cross-site
"simple" request gets through); the body is read under `Tether(max_body_size=...)` and
`Tether(body_timeout=...)`, before the call takes its in-flight slot; an answer sent before
the body was read whole closes the connection; a query whose client disconnects is
cancelled, a command runs to its end (see docs/transports/http.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

from ..context import CallContext
from ..errors import BadRequest, MethodNotAllowed, TetherError
from ..outcome import Outcome
from ..schema.openapi import document_contexts, documentation_routes
from ._body import (
    CLOSE,
    ClientDisconnected,
    has_body,
    parse_json,
    read_body,
    require_json_content_type,
)
from ._context_route import ContextRoute
from ._disconnect import run_unless_disconnected
from ._json_out import encode_error

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..operation import Operation
    from ..transport import TransportHandle

__all__ = ("NO_STORE", "HttpTransport", "encode_error", "send_outcome")

_JSON_HEADERS = [(b"content-type", b"application/json")]


class _ContextPath(Route):
    """The route of context bundles; a request whose path has no `/context/` is passed fast."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match as a `Route` does, once the path can be a context's at all."""
        if "/context/" not in scope.get("path", ""):
            return Match.NONE, {}
        return super().matches(scope)


NO_STORE = (b"cache-control", b"no-store")
"""The header of every answer to a command: what a command answers is never cached."""
_INVALIDATE = b"x-tether-invalidate"


class _WrongMethod(MethodNotAllowed):
    """A 405 that knows the methods the operation does accept, for the `Allow` header."""

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class HttpTransport:
    """Serves `POST/GET {prefix}/call/{name}` with the invoker, and documents each operation."""

    wire = "http"
    """The wire's name in tether's schema document (`transports` of an operation)."""
    serves = frozenset(("query", "command"))
    """The kinds of operation this wire calls."""

    def __init__(self) -> None:
        self.handle: TransportHandle | None = None
        self.app: FastAPI | None = None

    def attach(self, handle: TransportHandle, app: FastAPI) -> None:
        """Add the call route and one documentation route per operation to `app`."""
        self.handle = handle
        self.app = app
        # The dispatch routes come first: documentation routes never match a request.
        app.router.routes.append(
            Route(f"{handle.prefix}/call/{{name}}", endpoint=self, include_in_schema=False)
        )
        # Context bundles (`_context_route`), behind a route that the other transports'
        # requests, whose routes follow, pass with a substring test instead of a pattern.
        app.router.routes.append(
            _ContextPath(
                f"{handle.prefix}/context/{{name}}",
                endpoint=ContextRoute(handle, _params_object, _query_items),
                include_in_schema=False,
            )
        )
        for op in handle:
            self.operation_added(op)
        document_contexts(app, handle)

    def path_of(self, op: Operation) -> str | None:
        """Return the path that calls `op` (None for a stream, which SSE serves)."""
        if op.kind == "stream" or self.handle is None:
            return None
        return f"{self.handle.prefix}/call/{op.name}"

    def operation_added(self, op: Operation) -> None:
        """Document an operation in the app's OpenAPI (streams are documented by SSE)."""
        assert self.handle is not None
        assert self.app is not None
        if op.kind == "stream":
            return
        self.app.router.routes.extend(documentation_routes(op, self.handle))
        self.app.openapi_schema = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one HTTP call (the ASGI entry point of the call route)."""
        api = self.handle
        assert api is not None
        body_read = False
        try:
            op = _target(api, scope)
            body = b""
            if scope["method"] == "POST":
                body = await read_body(scope, receive, api.max_body_size, api.body_timeout)
                body_read = True
                params = _params_object(body)
            else:
                params = op.params_from_query(_query_items(scope))
            # The body has arrived whole: only now does the call take an in-flight slot, so
            # slow senders hold none.
            api.admission.enter()
            try:
                ctx = CallContext("http", scope, receive, body=body)
                run = api.invoker.run(ctx, op, params, encode=True)
                if op.kind == "query" and op.is_async:
                    # A query whose client has gone is cancelled; a command runs to its end
                    # (the client could not know how far a half-done change went). A sync
                    # query runs in a thread, which cannot be interrupted.
                    outcome = await run_unless_disconnected(
                        receive, run, settle=Outcome.close_dependencies, abandon=Outcome.finish
                    )
                else:
                    outcome = await run
            finally:
                api.admission.leave()
        except ClientDisconnected:
            return  # nobody to answer
        except TetherError as error:
            name = scope["path_params"].get("name", "")
            outcome = Outcome.failed(name, error)
            known = api.operations.get(name)
            no_store = known is not None and known.kind == "command"
        else:
            no_store = op.kind == "command"
        try:
            await send_outcome(
                send, outcome, close=not body_read and has_body(scope), no_store=no_store
            )
        except BaseException:
            # Not sent (the client left): no background task; the dependencies still close.
            await outcome.close_dependencies()
            raise
        if outcome.pending:
            await outcome.finish()


async def send_outcome(
    send: Send, outcome: Outcome, *, close: bool = False, no_store: bool = False
) -> None:
    """Render an outcome as the HTTP answer: `{"result": ...}` or the error envelope.

    The status is 200 (or the one a `Response` dependency set) or the error's; the headers
    are the outcome's. A call with cache effects adds its `invalidate` and `merge` members
    beside `result`, and the `X-Tether-Invalidate` header. `close` adds `Connection: close`,
    for an answer sent before the request's body was read whole; `no_store` adds
    `Cache-Control: no-store` (the answer to a command).
    """
    error = outcome.error
    headers = list(outcome.headers)
    if error is None:
        status = outcome.status or 200
        effects = outcome.effects
        if effects:
            # Only a command with affects=/merge= has effects: queries never come here.
            body = b'{"result":' + outcome.result + b"," + effects.members() + b"}"
            if effects.invalidate_entries:
                headers.append((_INVALIDATE, effects.header().encode("ascii")))
        else:
            body = b'{"result":' + outcome.result + b"}"
    else:
        status = error.status
        body = encode_error(error)
        if isinstance(error, _WrongMethod):
            # RFC 9110 15.5.6: a 405 names the methods the resource accepts.
            headers.append((b"allow", error.allow.encode("latin-1")))
    if no_store:
        # Replaces any Cache-Control a dependency set: a command's answer is never reused.
        if headers:
            headers = [item for item in headers if item[0] != b"cache-control"]
        headers.append(NO_STORE)
    if close:
        # Answered before the body was read whole (413, 408, 415, 404...): closing the
        # connection stops the server from reading the rest, however long it is.
        headers.append(CLOSE)
    if status < 200 or status in (204, 304):
        # These statuses have no body (RFC 9110 15.3.5, 15.4.5); sending one anyway
        # would corrupt the next response on a keep-alive connection.
        body = b""
    else:
        headers[:0] = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _target(api: TransportHandle, scope: Scope) -> Operation:
    """Return the operation the request calls, once its method and content type fit it.

    Raises:
        TetherError: unknown operation, a stream, a method the operation does not take,
            or a POST without a JSON content type.
    """
    op = api.get(scope["path_params"]["name"])
    if op.kind == "stream":
        raise BadRequest(
            f"{op.name} is a stream: read it from {api.prefix}/stream/{op.name}",
            details={"operation": op.name, "kind": "stream"},
        )
    method = scope["method"]
    accepts_get = op.kind == "query" and op.query_shape is not None
    if method == "POST":
        require_json_content_type(scope)
    elif method == "GET" and op.kind == "query" and not accepts_get:
        raise _WrongMethod(
            f"{op.name} takes structured input; call it with POST and a JSON body",
            allow="POST",
        )
    elif method != "GET" or not accepts_get:
        allow = "GET, POST" if accepts_get else "POST"
        raise _WrongMethod(f"{method} is not allowed for {op.name}; use {allow}", allow=allow)
    return op


def _params_object(body: bytes) -> dict[str, Any]:
    """Parse a POST body: a JSON object of parameters (an empty body means none)."""
    if not body:
        return {}
    params = parse_json(body)
    if not isinstance(params, dict):
        raise BadRequest(
            "The request body must be a JSON object of parameters",
            details={"received": type(params).__name__},
        )
    return params


def _query_items(scope: Scope) -> list[tuple[str, str]]:
    raw = scope.get("query_string", b"")
    return parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []
