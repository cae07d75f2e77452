"""CallContext: the transport-neutral view of one call's caller."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.websockets import WebSocket

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.background import BackgroundTasks
    from starlette.responses import Response
    from starlette.types import Message, Receive, Scope, Send

__all__ = ("CALL_SCOPE_KEY", "CallContext", "in_process_scope")

CALL_SCOPE_KEY = "tether.call"
"""Key of the call's `CallContext` in the scope its dependencies are solved against."""


async def _no_send(message: Message) -> None:
    raise RuntimeError("this call context cannot send")


async def _empty_receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class CallContext:
    """What the invoker knows about one call: which transport, which request, which user.

    Transports build one per call (per item in a batch, per message on a socket). The ASGI
    `scope` is the request the call's dependencies are solved against; for in-process calls
    it is a synthetic HTTP scope.
    """

    __slots__ = (
        "background",
        "body",
        "emitted",
        "params",
        "receive",
        "response",
        "scope",
        "send",
        "state",
        "transport",
        "user",
    )

    def __init__(
        self,
        transport: str,
        scope: Scope,
        receive: Receive = _empty_receive,
        *,
        body: bytes | None = None,
        send: Send | None = None,
    ) -> None:
        self.transport = transport
        """Name of the transport that carried the call: "http", "jsonrpc", "inprocess", ..."""
        self.scope = scope
        """ASGI scope of the request (or connection) the call's dependencies see."""
        self.receive = receive
        """ASGI receive channel of that request."""
        self.body = body
        """Raw request body, when the transport has already read it."""
        self.send = send
        """ASGI send channel, for WebSocket scopes (dependencies may take the `WebSocket`)."""
        self.user: Any = None
        """The user resolved by the `Tether(user=...)` dependency, once auth has run."""
        self.background: BackgroundTasks | None = None
        """Background tasks the call's dependencies scheduled (the outcome runs them)."""
        self.response: Response | None = None
        """The `Response` dependencies may have set headers, cookies or a status on; the
        invoker copies them, filtered, into the call's `Outcome`."""
        self.state: dict[str, Any] = {}
        """Free-form per-call storage for extensions."""
        self.emitted: list[Any] | None = None
        """Events the call emitted through its `Events` dependency (None: none asked for it)."""
        self.params: dict[str, Any] | None = None
        """The call's validated params, by name, once validated (auth predicates may read
        them; for a live subscription, the params of the topic being admitted)."""

    def request(
        self, scope: Scope | None = None, *, websocket: bool = False
    ) -> Request | WebSocket:
        """Return the connection dependencies are solved against: a `Request`, or a `WebSocket`.

        `scope` replaces the context's own (the invoker passes a child scope that carries
        the call's exit stacks). On a WebSocket connection a message is solved against a
        `Request` derived from the handshake (same headers, cookies, path, app and state),
        so `Request`-typed dependencies work on every transport; `websocket=True` (when
        the operation's dependencies ask for the `WebSocket` and not the `Request`) gives
        them the connection instead.
        """
        scope = self.scope if scope is None else scope
        if scope["type"] == "websocket":
            if websocket:
                return WebSocket(scope, self.receive, self.send or _no_send)
            scope = {**scope, "type": "http", "method": "GET"}
        request = Request(scope, self.receive)
        if self.body is not None:
            request._body = self.body
        return request


def in_process_scope(
    app: FastAPI | None,
    path: str,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> Scope:
    """Build the synthetic HTTP scope that in-process calls solve their dependencies against."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": raw_headers,
        "client": None,
        "server": None,
        "app": app,
        "path_params": {},
        "state": {},
    }
