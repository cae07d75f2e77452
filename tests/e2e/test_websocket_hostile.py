"""The WebSocket endpoint against hostile clients, on a real uvicorn server.

- Ids and uuids of any size (JSON has no 64-bit limit) are echoed exactly, in both
  dialects and every message that echoes one, and the socket stays open and serving.
- A handshake from a foreign browser origin is refused with 403 and tether's envelope;
  the page's own host, the allowed origins, and clients without `Origin` get in.
- Plain HTTP to the socket's path is answered 426 `UPGRADE_REQUIRED`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from tests.conftest import LiveServer
from tether import Tether

pytestmark = pytest.mark.e2e

Factory = Callable[..., LiveServer]

# Past 64 bits both ways, and far past them: JSON has no size limit on integers.
BIG_IDS = [2**64, 2**63, -(2**63) - 1, 2**200]


def build(**tether: Any) -> FastAPI:
    api = Tether(prefix="/api", **tether)

    @api.query
    async def add(a: int, b: int) -> int:
        return a + b

    @api.query
    async def nap(ms: int) -> str:
        await anyio.sleep(ms / 1000)
        return "rested"

    @api.stream
    async def ticks(n: int, ms: int = 0) -> AsyncIterator[int]:
        for i in range(1, n + 1):
            if ms:
                await anyio.sleep(ms / 1000)
            yield i

    app = FastAPI()
    api.mount(app)
    return app


def start(live_server: Factory, **tether: Any) -> LiveServer:
    # log_config=None: uvicorn leaves logging alone, so its errors reach pytest's caplog.
    return live_server(build(**tether), log_config=None)


def send(ws: ClientConnection, message: Any) -> None:
    ws.send(json.dumps(message))


def receive(ws: ClientConnection) -> Any:
    return json.loads(ws.recv(timeout=5))


def still_serves(ws: ClientConnection) -> None:
    """The socket is open and answers a call in each dialect."""
    send(ws, {"uuid": "after", "route": "add", "payload": {"a": 2, "b": 3}})
    assert receive(ws) == {"uuid": "after", "status": 200, "headers": {}, "payload": 5}
    send(ws, {"jsonrpc": "2.0", "id": "after", "method": "add", "params": [2, 3]})
    assert receive(ws) == {"jsonrpc": "2.0", "id": "after", "result": 5}


def replies_by_id(ws: ClientConnection, count: int) -> dict[Any, Any]:
    """Read until `count` JSON-RPC responses have come (skipping subscription items)."""
    replies: dict[Any, Any] = {}
    while len(replies) < count:
        message = receive(ws)
        if message.get("method") != "subscription":
            replies[message["id"]] = message
    return replies


@pytest.fixture
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if the server logged an error (such as 'Exception in ASGI application')."""
    # Servers started with `start` log through the root logger, where caplog listens.
    caplog.set_level(logging.ERROR)
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


# -- ids of any size ------------------------------------------------------------------


@pytest.mark.usefixtures("no_server_errors")
@pytest.mark.parametrize("big", BIG_IDS)
def test_envelope_uuids_of_any_size_are_echoed_exactly(live_server: Factory, big: int) -> None:
    server = start(live_server)
    with connect(f"{server.ws_url}/api/ws") as ws:
        send(ws, {"uuid": big, "route": "PING"})
        assert receive(ws) == {"uuid": big, "route": "PONG"}
        send(ws, {"uuid": big, "route": "add", "payload": {"a": 1, "b": 2}})
        assert receive(ws) == {"uuid": big, "status": 200, "headers": {}, "payload": 3}
        # CANCEL of nothing: the 404 names the uuid in its details.
        send(ws, {"uuid": big, "route": "CANCEL"})
        reply = receive(ws)
        assert (reply["uuid"], reply["status"]) == (big, 404)
        assert reply["payload"]["error"]["details"] == {"subscription": big}
        # A subscription under the uuid, then a CANCEL that finds it.
        send(ws, {"uuid": big, "route": "ticks", "payload": {"n": 100000, "ms": 5}})
        assert receive(ws) == {
            "uuid": big,
            "status": 200,
            "headers": {"stream": "item"},
            "payload": 1,
        }
        send(ws, {"uuid": big, "route": "CANCEL"})
        reply = receive(ws)
        while reply["headers"].get("stream") == "item":
            reply = receive(ws)
        assert reply["uuid"] == big
        assert reply["headers"]["stream"] == "cancelled"
        # A uuid already in flight: the 409 names it in its details.
        send(ws, {"uuid": big, "route": "nap", "payload": {"ms": 300}})
        send(ws, {"uuid": big, "route": "add", "payload": {"a": 1, "b": 2}})
        conflict = receive(ws)
        assert (conflict["uuid"], conflict["status"]) == (big, 409)
        assert conflict["payload"]["error"]["details"] == {"uuid": big}
        assert receive(ws) == {"uuid": big, "status": 200, "headers": {}, "payload": "rested"}
        still_serves(ws)


@pytest.mark.usefixtures("no_server_errors")
@pytest.mark.parametrize("big", BIG_IDS)
def test_jsonrpc_ids_of_any_size_are_echoed_exactly(live_server: Factory, big: int) -> None:
    server = start(live_server)
    with connect(f"{server.ws_url}/api/ws") as ws:
        send(ws, {"jsonrpc": "2.0", "id": big, "method": "add", "params": [1, 2]})
        assert receive(ws) == {"jsonrpc": "2.0", "id": big, "result": 3}
        send(ws, [{"jsonrpc": "2.0", "id": big, "method": "add", "params": [1, 2]}])
        assert receive(ws) == [{"jsonrpc": "2.0", "id": big, "result": 3}]
        # A subscription whose id is big: its items name it, and so does its end.
        send(ws, {"jsonrpc": "2.0", "id": big, "method": "ticks", "params": {"n": 2}})
        assert [receive(ws) for _ in range(3)] == [
            {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"subscription": big, "result": 1},
            },
            {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"subscription": big, "result": 2},
            },
            {"jsonrpc": "2.0", "id": big, "result": {"items": 2, "cancelled": False}},
        ]
        # rpc.cancel: a big request id, and a big subscription id that is not open.
        send(ws, {"jsonrpc": "2.0", "id": big, "method": "rpc.cancel", "params": [big]})
        reply = receive(ws)
        assert reply["id"] == big
        assert reply["error"]["code"] == -32004
        assert reply["error"]["data"]["details"] == {"subscription": big}
        # A big subscription id that is open: rpc.cancel finds it and ends it.
        send(ws, {"jsonrpc": "2.0", "id": big, "method": "ticks", "params": {"n": 100000, "ms": 5}})
        assert receive(ws)["params"] == {"subscription": big, "result": 1}
        send(
            ws,
            {"jsonrpc": "2.0", "id": -big, "method": "rpc.cancel", "params": {"subscription": big}},
        )
        answers = replies_by_id(ws, 2)
        assert answers[-big] == {"jsonrpc": "2.0", "id": -big, "result": {"cancelled": True}}
        assert answers[big]["result"]["cancelled"] is True
        # A subscription id already open: the conflict names it.
        send(ws, {"jsonrpc": "2.0", "id": big, "method": "ticks", "params": {"n": 100000, "ms": 5}})
        send(ws, {"jsonrpc": "2.0", "id": big, "method": "ticks", "params": {"n": 1}})
        (reply,) = replies_by_id(ws, 1).values()
        assert reply["id"] == big
        assert reply["error"]["data"] == {"code": "CONFLICT", "details": {"id": big}}
        send(ws, {"jsonrpc": "2.0", "id": 9, "method": "rpc.cancel", "params": [big]})
        assert replies_by_id(ws, 2)[9]["result"] == {"cancelled": True}
        still_serves(ws)


@pytest.mark.usefixtures("no_server_errors")
def test_a_cancel_naming_no_id_is_invalid_params_and_echoes_nothing(live_server: Factory) -> None:
    server = start(live_server)
    deep: Any = 2**64
    for _ in range(200):
        deep = [deep]
    with connect(f"{server.ws_url}/api/ws") as ws:
        send(ws, {"jsonrpc": "2.0", "id": 7, "method": "rpc.cancel", "params": [deep]})
        reply = receive(ws)
        assert reply["id"] == 7
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"]["details"][0]["loc"] == ["subscription"]
        # A PING echoes whatever uuid it carries, however deep or big.
        send(ws, {"uuid": deep, "route": "PING"})
        assert receive(ws) == {"uuid": deep, "route": "PONG"}
        still_serves(ws)


# -- origins ----------------------------------------------------------------------------


def refused(url: str, origin: str) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        connect(url, origin=Origin(origin))
    return caught.value


def opens(url: str, origin: str | None = None) -> bool:
    with connect(url, origin=None if origin is None else Origin(origin)) as ws:
        send(ws, {"uuid": 1, "route": "add", "payload": {"a": 1, "b": 1}})
        return bool(receive(ws)["payload"] == 2)


@pytest.mark.usefixtures("no_server_errors")
def test_a_foreign_origin_is_refused_at_the_handshake_with_403(live_server: Factory) -> None:
    server = start(live_server)
    url = f"{server.ws_url}/api/ws"
    for origin in (
        "https://evil.example",
        f"http://127.0.0.1:{server.port + 1}",  # same host, another port: another origin
        f"http://localhost:{server.port}",  # another host name for the same address
        "null",  # sandboxed frames and file: pages
    ):
        error = refused(url, origin)
        assert error.response.status_code == 403, origin
        assert error.response.headers["content-type"] == "application/json"
        body = json.loads(error.response.body)
        assert body["error"]["code"] == "FORBIDDEN"
        assert body["error"]["details"] == {"origin": origin}
    # The page's own host (the Host header), in any case; and a client that is no browser.
    assert opens(url, origin=f"http://127.0.0.1:{server.port}")
    assert opens(url, origin=f"HTTP://127.0.0.1:{server.port}")
    assert opens(url)
    # The server keeps serving HTTP and JSON-RPC too.
    answer = httpx.post(f"{server.url}/api/call/add", json={"a": 1, "b": 2})
    assert answer.json() == {"result": 3}


@pytest.mark.usefixtures("no_server_errors")
def test_allowed_origins_open_the_socket_from_other_origins(live_server: Factory) -> None:
    server = start(
        live_server, allowed_origins=["https://App.Example.com", "http://localhost:3000"]
    )
    url = f"{server.ws_url}/api/ws"
    assert opens(url, origin="https://app.example.com")
    assert opens(url, origin="https://app.example.com:443")  # the default port, spelled out
    assert opens(url, origin="http://LOCALHOST:3000")
    assert opens(url, origin=f"http://127.0.0.1:{server.port}")  # its own host still
    for origin in ("http://app.example.com", "https://app.example.com:8443", "http://localhost"):
        assert refused(url, origin).response.status_code == 403, origin


@pytest.mark.usefixtures("no_server_errors")
def test_a_star_allows_every_origin(live_server: Factory) -> None:
    server = start(live_server, allowed_origins=["*"])
    url = f"{server.ws_url}/api/ws"
    assert opens(url, origin="https://evil.example")
    assert opens(url, origin="null")


# -- plain HTTP at the socket's path ------------------------------------------------------


@pytest.mark.usefixtures("no_server_errors")
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "OPTIONS"])
def test_plain_http_at_the_socket_path_is_told_to_upgrade(
    live_server: Factory, method: str
) -> None:
    server = start(live_server)
    with httpx.Client() as client:
        answer = client.request(method, f"{server.url}/api/ws", content=b'{"x": 1}')
        assert answer.status_code == 426
        assert answer.headers["upgrade"] == "websocket"
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {
            "error": {
                "code": "UPGRADE_REQUIRED",
                "message": "This endpoint speaks WebSocket: send an Upgrade: websocket handshake",
                "details": None,
            }
        }
        head = client.head(f"{server.url}/api/ws")
        assert (head.status_code, head.content) == (426, b"")
    # The socket itself still opens at that path.
    assert opens(f"{server.ws_url}/api/ws")
