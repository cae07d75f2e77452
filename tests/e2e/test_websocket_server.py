"""The WebSocket transport on a real uvicorn server, driven by the `websockets` client."""

import json
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from examples.docs.websocket_shutdown import TetherServer
from fastapi import Depends, FastAPI, Header, HTTPException
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import LiveServer
from tether import Service, Tether, query
from tether.transports.http import HttpTransport
from tether.transports.jsonrpc import JsonRpcTransport
from tether.transports.websocket import WebSocketTransport

pytestmark = pytest.mark.e2e

Factory = Callable[..., LiveServer]


class Events:
    """What the server's generators did, seen from the test thread."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.stopped_at = 0.0


def build(
    events: Events | None = None, *, tether: dict[str, Any] | None = None, **options: Any
) -> tuple[FastAPI, WebSocketTransport]:
    events = events or Events()
    api = Tether(**(tether or {}))

    class Math(Service, name="math"):
        @query
        async def sum(self, values: list[int]) -> dict[str, int]:
            return {"sum": sum(values)}

    api.include(Math)

    @api.query
    async def blob(size: int) -> str:
        return "x" * size

    @api.query
    async def who(x_user: str = Header("anon")) -> str:
        return x_user

    @api.stream
    async def ticks(n: int, ms: int = 0) -> AsyncIterator[int]:
        try:
            for i in range(1, n + 1):
                if ms:
                    await anyio.sleep(ms / 1000)
                yield i
        finally:
            events.stopped_at = time.monotonic()
            events.stopped.set()

    app = FastAPI()
    transport = WebSocketTransport(**options)
    api.mount(app, transports=[HttpTransport(), JsonRpcTransport(), transport])
    return app, transport


def ask(ws: ClientConnection, message: Any) -> Any:
    ws.send(json.dumps(message))
    return json.loads(ws.recv(timeout=5))


def test_both_dialects_and_subscriptions_over_uvicorn(live_server: Factory) -> None:
    app, _ = build()
    server = live_server(app)
    with connect(f"{server.ws_url}/api/ws", additional_headers={"x-user": "ada"}) as ws:
        assert ask(ws, {"uuid": 1, "route": "math/sum", "payload": [1, 2, 3, 4]}) == {
            "uuid": 1,
            "status": 200,
            "headers": {},
            "payload": {"sum": 10},
        }
        assert ask(ws, {"uuid": 2, "route": "who"})["payload"] == "ada"
        assert ask(ws, {"uuid": 3, "route": "who", "headers": {"x-user": "bob"}})["payload"] == (
            "bob"
        )
        assert ask(ws, {"route": "PING"}) == {"uuid": None, "route": "PONG"}
        assert ask(ws, {"jsonrpc": "2.0", "id": 1, "method": "math.sum", "params": [[2, 2]]}) == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": {"sum": 4},
        }
        ws.send(json.dumps({"uuid": "t", "route": "ticks", "payload": {"n": 3}}))
        items = [json.loads(ws.recv(timeout=5)) for _ in range(4)]
        assert [m["payload"] for m in items] == [1, 2, 3, None]
        assert items[-1]["headers"] == {"stream": "end", "items": 3}


def test_a_client_that_leaves_cancels_the_generator_within_a_second(
    live_server: Factory,
) -> None:
    events = Events()
    app, transport = build(events)
    server = live_server(app)
    ws = connect(f"{server.ws_url}/api/ws", legacy=True)
    ws.send(json.dumps({"uuid": 1, "route": "ticks", "payload": {"n": 100000, "ms": 10}}))
    assert json.loads(ws.recv(timeout=5))["payload"] == 1
    # Drop the TCP connection without a closing handshake.
    ws.socket.shutdown(socket.SHUT_RDWR)
    ws.socket.close()
    left = time.monotonic()
    assert events.stopped.wait(5)
    assert events.stopped_at - left < 1.0
    deadline = time.monotonic() + 5
    while transport.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert transport.connections == 0


def test_a_message_over_the_limit_closes_with_1009(live_server: Factory) -> None:
    app, _ = build(max_message_size=1000)
    server = live_server(app)
    with connect(f"{server.ws_url}/api/ws") as ws:
        ws.send(json.dumps({"uuid": 1, "route": "blob", "payload": 1, "pad": "x" * 2000}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


def test_a_connection_dependency_refuses_the_handshake_with_1008(live_server: Factory) -> None:
    def token(x_token: str | None = Header(None)) -> None:
        if x_token != "secret":
            raise HTTPException(403, "Bad token")

    app, _ = build(tether={"connection_dependencies": [Depends(token)]})
    server = live_server(app)
    with connect(f"{server.ws_url}/api/ws") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "Bad token")
    with connect(f"{server.ws_url}/api/ws", additional_headers={"x-token": "secret"}) as ws:
        assert ask(ws, {"uuid": 1, "route": "who"})["payload"] == "anon"


# -- a client that does not read -------------------------------------------------------


def open_raw(port: int) -> socket.socket:
    """A WebSocket handshake on a plain socket, which then reads only when told to."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"GET /api/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def text_frame(data: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert len(data) < 65536
    header = bytes([0x81, 0x80 | 126]) + len(data).to_bytes(2, "big")
    return header + mask + masked


def read_until_close(sock: socket.socket) -> tuple[int, int]:
    """Read frames until the close frame; return (data frames seen, close code)."""
    sock.settimeout(10)
    buffer = b""
    frames = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise AssertionError(f"connection ended without a close frame after {frames}")
        buffer += chunk
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            offset = 2
            if length == 126:
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                break
            opcode = buffer[0] & 0x0F
            payload = buffer[offset : offset + length]
            buffer = buffer[offset + length :]
            if opcode == 0x8:
                return frames, int.from_bytes(payload[:2], "big")
            frames += 1


def test_a_client_that_does_not_read_is_closed_with_1013_and_others_are_served(
    live_server: Factory,
) -> None:
    app, _ = build(max_queued_messages=16)
    server = live_server(app)
    stuck = open_raw(server.port)
    request = json.dumps({"uuid": 0, "route": "blob", "payload": 65536}).encode()
    try:
        stuck.settimeout(10)
        for index in range(400):
            stuck.sendall(text_frame(request.replace(b'"uuid": 0', f'"uuid": {index}'.encode())))
            if index % 50 == 0:
                # Meanwhile, another connection is answered at once.
                with connect(f"{server.ws_url}/api/ws") as other:
                    started = time.monotonic()
                    assert ask(other, {"uuid": 1, "route": "math/sum", "payload": [1]})[
                        "payload"
                    ] == {"sum": 1}
                    assert time.monotonic() - started < 2.0
    except OSError:
        # The server stopped reading this client: its send buffer filled up. Expected.
        pass
    time.sleep(0.5)
    frames, code = read_until_close(stuck)
    stuck.close()
    assert code == 1013
    assert 0 < frames < 400


# -- shutdown -------------------------------------------------------------------------------


def subscribe_forever(server: LiveServer) -> ClientConnection:
    ws = connect(f"{server.ws_url}/api/ws", legacy=True)
    ws.send(json.dumps({"uuid": 1, "route": "ticks", "payload": {"n": 10**9, "ms": 1}}))
    assert json.loads(ws.recv(timeout=5))["payload"] == 1
    return ws


def read_forever(ws: ClientConnection) -> None:
    while True:
        ws.recv(timeout=5)


def drain_close_code(ws: ClientConnection) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        read_forever(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def test_shutdown_closes_sockets_with_1001_and_does_not_hang() -> None:
    events = Events()
    app, _ = build(events)
    server = LiveServer(app)
    # The documented server (docs/transports/websocket.md): close with 1001 before shutting down.
    closing = TetherServer(server.config)
    server.server = closing
    server.thread = threading.Thread(target=closing.run, daemon=True)
    server.start()
    ws = subscribe_forever(server)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    assert drain_close_code(ws) == 1001
    assert events.stopped.is_set()
    ws.close()


def test_plain_uvicorn_shutdown_does_not_hang_on_a_streaming_socket() -> None:
    events = Events()
    app, _ = build(events)
    server = LiveServer(app)
    server.start()
    ws = subscribe_forever(server)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 5
    # uvicorn itself closes sockets that are still open with 1012 (service restart).
    assert drain_close_code(ws) == 1012
    assert events.stopped.is_set()
    ws.close()


def test_the_conformance_app_over_the_socket(live_server: Factory) -> None:
    from examples.conformance.app import create_app

    server = live_server(create_app())
    with connect(f"{server.ws_url}/api/ws") as ws:
        assert ask(ws, {"uuid": 1, "route": "math/sum", "payload": [1, 2, 3, 4]}) == {
            "uuid": 1,
            "status": 200,
            "headers": {},
            "payload": {"sum": 10},
        }
        ws.send(json.dumps({"uuid": "t", "route": "ticks", "payload": {"n": 3, "ms": 1}}))
        envelope = [json.loads(ws.recv(timeout=5)) for _ in range(4)]
        assert [m["payload"] for m in envelope] == [1, 2, 3, None]
        assert envelope[-1]["headers"] == {"stream": "end", "items": 3}
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 9, "method": "ticks", "params": [2]}))
        rpc = [json.loads(ws.recv(timeout=5)) for _ in range(3)]
        assert [m["params"]["result"] for m in rpc[:2]] == [1, 2]
        assert rpc[2] == {"jsonrpc": "2.0", "id": 9, "result": {"items": 2, "cancelled": False}}
        invalid = ask(ws, {"uuid": 2, "route": "ticks", "payload": {"n": -1}})
        assert invalid["status"] == 422
        assert invalid["headers"] == {"stream": "error", "items": 0}
