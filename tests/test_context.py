from typing import Any

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.websockets import WebSocket

from tether import CallContext
from tether.context import in_process_scope


async def test_call_context_defaults() -> None:
    scope: dict[str, Any] = {"type": "http", "headers": [], "method": "POST", "path": "/x"}
    ctx = CallContext("http", scope)
    assert ctx.transport == "http"
    assert ctx.scope is scope
    assert ctx.body is None
    assert ctx.user is None
    assert ctx.background is None
    assert ctx.response is None
    assert ctx.state == {}
    # The default receive channel is an empty body.
    assert await ctx.receive() == {"type": "http.request", "body": b"", "more_body": False}
    assert await ctx.request().body() == b""


async def test_request_uses_the_body_already_read() -> None:
    async def receive() -> Any:
        raise AssertionError("the body was already read")

    scope = in_process_scope(None, "/api/call/x")
    ctx = CallContext("http", scope, receive, body=b'{"a": 1}')
    request = ctx.request()
    assert await request.body() == b'{"a": 1}'
    assert await request.json() == {"a": 1}
    assert request.url.path == "/api/call/x"


def test_state_is_per_context() -> None:
    a = CallContext("x", {"type": "http"})
    b = CallContext("x", {"type": "http"})
    a.state["k"] = 1
    assert b.state == {}


def test_in_process_scope() -> None:
    app = FastAPI()
    scope = in_process_scope(app, "/api/call/get", {"X-Token": "t", "Cookie": "a=b"})
    assert scope["type"] == "http"
    assert scope["method"] == "POST"
    assert scope["path"] == "/api/call/get"
    assert scope["raw_path"] == b"/api/call/get"
    assert scope["app"] is app
    assert scope["headers"] == [(b"x-token", b"t"), (b"cookie", b"a=b")]
    assert scope["query_string"] == b""
    pairs = in_process_scope(None, "/p", [("A", "1"), ("a", "2")])
    assert pairs["headers"] == [(b"a", b"1"), (b"a", b"2")]
    assert pairs["app"] is None
    assert in_process_scope(None, "/p")["headers"] == []


def test_in_process_scopes_are_independent() -> None:
    one = in_process_scope(None, "/p")
    two = in_process_scope(None, "/p")
    one["state"]["x"] = 1
    assert two["state"] == {}


async def test_websocket_scope_gives_a_request_derived_from_the_handshake() -> None:
    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [(b"x-tenant", b"acme")],
        "query_string": b"a=1",
    }
    request = CallContext("websocket", scope).request()
    assert isinstance(request, Request)
    assert request.method == "GET"
    assert request.headers["x-tenant"] == "acme"
    assert request.query_params["a"] == "1"
    assert request.url.path == "/ws"
    assert scope["type"] == "websocket"  # the connection's own scope is left alone


async def test_websocket_scope_gives_a_websocket_when_asked() -> None:
    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    ctx = CallContext("websocket", scope)
    connection = ctx.request(websocket=True)
    assert isinstance(connection, WebSocket)
    # Without a send channel, sending is refused.
    with pytest.raises(RuntimeError, match="cannot send"):
        await connection.send({"type": "websocket.accept"})
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    child = {**scope, "path": "/ws2"}
    connection = CallContext("websocket", scope, send=send).request(child, websocket=True)
    assert isinstance(connection, WebSocket)
    assert connection.url.path == "/ws2"
    await connection.send({"type": "websocket.accept"})
    assert sent == [{"type": "websocket.accept"}]


def test_request_for_a_child_scope() -> None:
    ctx = CallContext("http", in_process_scope(None, "/a"), body=b"x")
    request = ctx.request(in_process_scope(None, "/b"))
    assert isinstance(request, Request)
    assert request.url.path == "/b"
