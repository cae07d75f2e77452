"""The WebSocket transport: `WS {prefix}/ws`, two message dialects on one socket.

- **Envelope** (fastapi-observable-socket's schema): `{"uuid", "route", "headers"?,
  "payload"?}` is answered with `{"uuid", "status", "headers", "payload"}`.
- **JSON-RPC 2.0**: any message carrying `"jsonrpc"` (and any array, a batch) is answered
  exactly as `POST {prefix}/jsonrpc` answers it, by the same `JsonRpcDispatcher`.

Stream operations are subscriptions in both dialects. Messages on one connection run
concurrently, each in its own task, up to `max_in_flight`; the outgoing queue is bounded.
Close codes: 1008 (a connection dependency refused the handshake), 1009
(message too large), 1011 (a connection dependency failed unexpectedly), 1013 (the
client does not read), 1001 (`shutdown()`). docs/transports/websocket.md has every message.

Before the socket opens, a browser's `Origin` must be the request's own host or one of the
Tether's `allowed_origins` (else HTTP 403: cross-site WebSocket hijacking); a plain HTTP
request to the path is answered 426 `UPGRADE_REQUIRED`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from fastapi import params
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from .._origins import OriginPolicy
from ..dependencies import ConnectionScoped
from ..errors import ConfigurationError, UpgradeRequired
from ._fast_lane import lane
from ._jsonrpc_dispatch import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_CONCURRENCY, JsonRpcDispatcher
from ._ws_connection import CANCEL_METHOD, SUBSCRIPTION_METHOD, Connection
from ._ws_envelope import operation_name

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..operation import Operation
    from ..transport import TransportHandle

__all__ = (
    "CANCEL_METHOD",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_QUEUED_MESSAGES",
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "SUBSCRIPTION_METHOD",
    "WebSocketTransport",
)

DEFAULT_MAX_IN_FLIGHT = 64
"""Calls that run at once on one connection, by default; past it, reading pauses."""
DEFAULT_MAX_SUBSCRIPTIONS = 64
"""Subscriptions open at once on one connection, by default; past it, 429."""
DEFAULT_MAX_QUEUED_MESSAGES = 256
"""Outgoing messages queued on one connection, by default; past it, close 1013."""
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
"""Largest incoming message, in bytes, by default; past it, close 1009."""

# Spellings of routes remembered (each maps to an operation; the cache never outgrows this).
_MAX_CACHED_ROUTES = 4096


class WebSocketTransport:
    """Serves the envelope and JSON-RPC dialects, calls and subscriptions, at `WS {prefix}/ws`.

    Args:
        path: the endpoint's path under the Tether prefix.
        guards: no longer accepted (it protected this wire only); passing it raises
            `ConfigurationError`. Use `Tether(connection_dependencies=[...])`: solved at
            the handshake here (one that raises refuses the socket with close code 1008),
            per call on every other transport.
        max_in_flight: calls (and JSON-RPC messages) running at once on one connection;
            past it the server reads nothing more until one finishes.
        max_subscriptions: subscriptions open at once on one connection; one more is
            answered with 429 `TOO_MANY_REQUESTS`.
        max_queued_messages: outgoing messages queued for a connection; a reply that finds
            the queue full closes the connection with 1013 (the client is not reading).
        max_message_size: largest incoming message in bytes; a larger one closes with 1009.
        max_batch_size: largest JSON-RPC batch, as over HTTP.
        max_batch_concurrency: items of one JSON-RPC batch that run at once.
        close_timeout: seconds to wait for a close frame to go out before giving up.

    Raises:
        ConfigurationError: `guards` was passed, or a limit is below 1.
    """

    wire = "websocket"
    """The wire's name in tether's schema document (`transports` of an operation)."""
    serves = frozenset(("query", "command", "stream"))
    """The kinds of operation this wire calls."""

    def __init__(
        self,
        *,
        path: str = "/ws",
        guards: Sequence[Any] | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        close_timeout: float = 5.0,
    ) -> None:
        if guards is not None:
            raise ConfigurationError(
                "WebSocketTransport(guards=...) is gone: it protected the WebSocket only,"
                " while HTTP, JSON-RPC, SSE and in-process calls stayed open. Use"
                " Tether(connection_dependencies=[...]) (solved once per WebSocket connection,"
                " at the handshake, and per call elsewhere), Tether(dependencies=[...]) (per"
                " call) or Tether(batch_dependencies=[...]) (once per JSON-RPC batch): each"
                " applies to every operation on every transport"
            )
        for name, value in (
            ("max_in_flight", max_in_flight),
            ("max_subscriptions", max_subscriptions),
            ("max_queued_messages", max_queued_messages),
            ("max_message_size", max_message_size),
        ):
            if value < 1:
                raise ConfigurationError(f"{name} must be at least 1")
        self.path = path
        self.max_in_flight = max_in_flight
        self.max_subscriptions = max_subscriptions
        self.max_queued_messages = max_queued_messages
        self.max_message_size = max_message_size
        self.max_batch_size = max_batch_size
        self.max_batch_concurrency = max_batch_concurrency
        self.close_timeout = close_timeout
        self.handle: TransportHandle | None = None
        self.dispatcher: JsonRpcDispatcher | None = None
        """The JSON-RPC message handler (the one the HTTP endpoint uses), once attached."""
        self.origins = OriginPolicy(())
        """Which browser origins may open a socket (the Tether's `allowed_origins`, once attached)."""
        self.closing = False
        """True once `shutdown()` has begun: new connections are closed with 1001."""
        self._handshake: tuple[params.Depends, ...] | None = None
        self._routes: dict[str, Operation] = {}
        self._connections: set[Connection] = set()
        self._all_closed: anyio.Event | None = None

    def attach(self, handle: TransportHandle, app: FastAPI) -> None:
        """Add the WebSocket route to `app`."""
        endpoint = f"{handle.prefix}{self.path}"
        self.handle = handle
        self.dispatcher = JsonRpcDispatcher(
            handle,
            max_batch_size=self.max_batch_size,
            max_concurrency=self.max_batch_concurrency,
            server_url=endpoint,
        )
        self.origins = OriginPolicy(handle.allowed_origins)
        # A plain Starlette route: FastAPI apps have no add_websocket_route any more. Plain
        # HTTP at the same path (any method) is told to upgrade, in tether's error envelope.
        route = WebSocketRoute(endpoint, endpoint=self)
        app.router.routes.append(route)
        app.router.routes.append(Route(endpoint, endpoint=_upgrade_required))
        # A socket keeps the frames of the way in for its whole life: the shorter one.
        lane(app).add("websocket", route, self)

    def operation_added(self, op: Operation) -> None:
        """Forget the handshake dependencies: the new operation may add connection-scoped ones."""
        self._handshake = None

    def route(self, route: str) -> Operation | None:
        """Return the operation an envelope's `route` names (`math/sum`, `math.sum`), or None."""
        op = self._routes.get(route)
        if op is None:
            assert self.handle is not None
            op = self.handle.operations.get(operation_name(route))
            if op is not None and len(self._routes) < _MAX_CACHED_ROUTES:
                self._routes[route] = op
        return op

    def handshake_dependencies(self) -> tuple[params.Depends, ...]:
        """Return the dependencies a connection solves at its handshake, once each.

        The app's own dependencies first (FastAPI solves them at a WebSocket route's
        handshake), then the Tether-level connection-scoped ones, then those of every
        operation.
        """
        deps = self._handshake
        if deps is None:
            assert self.handle is not None
            unique: dict[params.Depends, None] = dict.fromkeys(self.handle.app_dependencies)
            unique.update(
                dict.fromkeys(
                    d for d in self.handle.dependencies if isinstance(d, ConnectionScoped)
                )
            )
            for op in self.handle:
                if op.plan is not None:
                    unique.update(dict.fromkeys(op.plan.connection_scoped))
            deps = self._handshake = tuple(unique)
        return deps

    @property
    def connections(self) -> int:
        """How many sockets are open now."""
        return len(self._connections)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Serve one socket (the ASGI entry point of the route): return its coroutine.

        A plain function: the server awaits the connection's own coroutine, so that an
        idle socket keeps no frame of this one.
        """
        connection = Connection(self, scope, receive, send)
        if self.closing:
            connection.close(1001, "Server shutting down")
        self._connections.add(connection)
        return connection.run()

    def connection_ended(self, connection: Connection) -> None:
        """Forget a connection whose `run` has returned (it calls this itself)."""
        self._connections.discard(connection)
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()

    async def shutdown(
        self, *, code: int = 1001, reason: str = "Server shutting down", wait: float = 5.0
    ) -> None:
        """Close every open socket with `code` (1001, going away) and wait for them to end.

        Call it before the server stops (uvicorn closes sockets that are still open with
        1012 itself). Sockets opened afterwards are closed at once with the same code.
        Waits at most `wait` seconds for the sockets' tasks to end.
        """
        self.closing = True
        if not self._connections:
            return
        self._all_closed = anyio.Event()
        for connection in list(self._connections):
            connection.close(code, reason)
        with anyio.move_on_after(wait):
            await self._all_closed.wait()


class _UpgradeRequiredEndpoint:
    """Answers a plain HTTP request to the WebSocket path: 426 `UPGRADE_REQUIRED`."""

    def __init__(self) -> None:
        self.body = orjson.dumps({"error": UpgradeRequired().to_dict()})
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
            (b"upgrade", b"websocket"),
            # `upgrade`: the Upgrade header is hop-by-hop. `close`: the request's body (if
            # any) is never read, and draining it would be unbounded.
            (b"connection", b"upgrade, close"),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the 426 answer (an ASGI app: Starlette routes every method to it)."""
        await send({"type": "http.response.start", "status": 426, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


_upgrade_required = _UpgradeRequiredEndpoint()
