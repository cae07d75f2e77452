"""The WebSocket transport at its edges: raw ASGI drivers, failing sends, background work."""

import logging
import math
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import anyio
import orjson
import pytest
from fastapi import BackgroundTasks

from tether import Tether
from tether.transports.websocket import WebSocketTransport

from .test_websocket import MemorySocket, mount, small_api


def scope() -> dict[str, Any]:
    return {
        "type": "websocket",
        "path": "/api/ws",
        "raw_path": b"/api/ws",
        "query_string": b"",
        "headers": [],
        "root_path": "",
        "scheme": "ws",
        "server": None,
        "client": None,
        "subprotocols": [],
        "state": {},
        "asgi": {"version": "3.0"},
    }


class FlakySend:
    """An ASGI send that records messages and raises once `fail` is set (the client left)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = False
        self.fail_on_close = False

    async def __call__(self, message: MutableMapping[str, Any]) -> None:
        if self.fail and message["type"] == "websocket.send":
            raise OSError("client went away")
        if self.fail_on_close and message["type"] == "websocket.close":
            raise OSError("client went away")
        self.sent.append(dict(message))


def transport_for(api: Tether, **options: Any) -> WebSocketTransport:
    _, transport = mount(api, **options)
    return transport


async def test_a_connection_that_leaves_before_connecting_is_ignored() -> None:
    transport = transport_for(small_api())
    send = FlakySend()

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.disconnect", "code": 1006}

    await transport(scope(), receive, send)
    assert send.sent == []


async def test_a_failing_send_ends_the_connection_without_an_error() -> None:
    transport = transport_for(small_api())
    send = FlakySend()
    inbox_send, inbox = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
    async with inbox_send, inbox:
        await inbox_send.send({"type": "websocket.connect"})
        await inbox_send.send(
            {"type": "websocket.receive", "text": '{"uuid": 1, "route": "hello"}'}
        )
        send.fail = True
        with anyio.fail_after(5):
            await transport(scope(), inbox.receive, send)
    assert send.sent == [{"type": "websocket.accept"}]
    assert transport.connections == 0


async def test_a_failing_queued_send_ends_the_connection() -> None:
    # Replies to PING are queued for the sending task; its failure ends the connection.
    transport = transport_for(small_api())
    send = FlakySend()
    inbox_send, inbox = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
    async with inbox_send, inbox:
        await inbox_send.send({"type": "websocket.connect"})
        await inbox_send.send({"type": "websocket.receive", "text": '{"route": "PING"}'})
        send.fail = True
        with anyio.fail_after(5):
            await transport(scope(), inbox.receive, send)
    assert send.sent == [{"type": "websocket.accept"}]


async def test_a_close_that_cannot_be_sent_is_given_up() -> None:
    transport = transport_for(small_api(), max_message_size=10)
    send = FlakySend()
    send.fail_on_close = True
    inbox_send, inbox = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
    async with inbox_send, inbox:
        await inbox_send.send({"type": "websocket.connect"})
        await inbox_send.send({"type": "websocket.receive", "text": "x" * 100})
        with anyio.fail_after(5):
            await transport(scope(), inbox.receive, send)
    assert send.sent == [{"type": "websocket.accept"}]


async def test_stream_items_wait_while_the_queue_is_half_full() -> None:
    app, _ = mount(small_api(), max_queued_messages=4)
    async with MemorySocket(app, outgoing_buffer=0) as ws:
        await ws.send_json({"uuid": "s", "route": "ticks", "payload": {"n": 20}})
        # The first item's send waits for this reader; the PONGs queue up behind it.
        await anyio.sleep(0.05)
        for index in range(3):
            await ws.send_json({"uuid": index, "route": "PING"})
        await anyio.sleep(0.05)
        messages = [await ws.receive() for _ in range(24)]
    items = [m["payload"] for m in messages if m.get("headers") == {"stream": "item"}]
    pongs = [m["uuid"] for m in messages if m.get("route") == "PONG"]
    assert items == list(range(1, 21))
    assert pongs == [0, 1, 2]
    assert messages[-1]["headers"] == {"stream": "end", "items": 20}
    # Queued replies went out before the items that waited for room.
    assert messages[0]["payload"] == 1
    assert [m.get("route") for m in messages[1:4]] == ["PONG"] * 3


async def test_background_tasks_of_streams_run_and_failures_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[str] = []
    api = Tether()

    def fail() -> None:
        raise RuntimeError("background failure")

    @api.stream
    async def numbers(tasks: BackgroundTasks) -> AsyncIterator[int]:
        tasks.add_task(done.append, "after stream")
        yield 1

    @api.command
    async def flaky(tasks: BackgroundTasks) -> str:
        tasks.add_task(fail)
        return "ok"

    app, _ = mount(api)
    with caplog.at_level(logging.ERROR, logger="tether"):
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": 1, "route": "numbers"})
            assert [m["headers"]["stream"] for m in await ws.receive_many(2)] == ["item", "end"]
            assert (await ws.call({"uuid": 2, "route": "flaky"}))["payload"] == "ok"
            await ws.nothing_pending()
    assert done == ["after stream"]
    assert "a background task of operation 'flaky' failed" in caplog.text


@pytest.mark.parametrize(
    "params", [{"subscription": 1, "extra": 2}, [], [1, 2], {"other": 1}], ids=str
)
async def test_rpc_cancel_with_malformed_params(params: Any) -> None:
    app, _ = mount(small_api())
    async with MemorySocket(app) as ws:
        reply = await ws.call({"jsonrpc": "2.0", "id": 1, "method": "rpc.cancel", "params": params})
        # As a notification, nothing is answered.
        await ws.send_json({"jsonrpc": "2.0", "method": "rpc.cancel", "params": params})
        await ws.nothing_pending()
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"]["details"][0]["loc"] == ["subscription"]


async def test_the_socket_keeps_serving_after_many_errors() -> None:
    app, _ = mount(small_api())
    async with MemorySocket(app) as ws:
        for index in range(50):
            await ws.send_text(orjson.dumps({"uuid": index, "route": "nope"}).decode())
        replies = await ws.receive_many(50)
        assert {r["status"] for r in replies} == {404}
        assert (await ws.call({"uuid": "ok", "route": "hello"}))["payload"] == "hi"


async def test_messages_are_read_as_strictly_as_http_bodies() -> None:
    # Exact integers beyond 64 bits, and the same nesting bound as over HTTP.
    from examples.conformance.app import create_app

    async with MemorySocket(create_app()) as socket:
        big = 123456789012345678901234567890
        await socket.send_text(
            '{"uuid": "b", "route": "add", "payload": {"a": ' + str(big) + ', "b": 1}}'
        )
        reply = await socket.receive()
        assert reply["status"] == 200
        assert reply["payload"] == big + 1
        nested = "[" * 300 + "]" * 300
        await socket.send_text('{"uuid": "d", "route": "echo", "payload": ' + nested + "}")
        refused = await socket.receive()
        assert refused["payload"]["error"]["code"] == "BAD_REQUEST"
        assert "nested deeper" in refused["payload"]["error"]["message"]
