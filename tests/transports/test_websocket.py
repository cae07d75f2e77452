"""The WebSocket transport in memory: an ASGI driver over anyio streams (asyncio and trio).

`MemorySocket` drives the app's `/api/ws` route exactly as a server would: a websocket
scope, `websocket.connect`, then `websocket.receive` messages; it reads what the app sends.
Other test_websocket_* modules import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any

import anyio
import orjson
import pytest
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from fastapi import FastAPI
from pydantic import BaseModel

from tether import Tether
from tether.errors import ConfigurationError
from tether.transports.http import HttpTransport
from tether.transports.jsonrpc import JsonRpcTransport
from tether.transports.websocket import WebSocketTransport


def mount(api: Tether, **options: Any) -> tuple[FastAPI, WebSocketTransport]:
    """Mount `api` with HTTP, JSON-RPC and a WebSocket transport built with `options`."""
    app = FastAPI()
    transport = WebSocketTransport(**options)
    api.mount(app, transports=[HttpTransport(), JsonRpcTransport(), transport])
    return app, transport


class Closed(Exception):
    """The app closed the socket."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class MemorySocket:
    """A WebSocket client talking to an ASGI app in memory."""

    def __init__(
        self,
        app: Any,
        path: str = "/api/ws",
        headers: Sequence[tuple[str, str]] = (),
        *,
        outgoing_buffer: float = math.inf,
    ) -> None:
        self.app = app
        self.scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
            "subprotocols": [],
            "state": {},
        }
        to_app: tuple[MemoryObjectSendStream[Any], MemoryObjectReceiveStream[Any]]
        to_app = anyio.create_memory_object_stream(math.inf)
        self._to_app_send, self._to_app_receive = to_app
        from_app: tuple[MemoryObjectSendStream[Any], MemoryObjectReceiveStream[Any]]
        from_app = anyio.create_memory_object_stream(outgoing_buffer)
        self._from_app_send, self._from_app_receive = from_app
        self._group: TaskGroup | None = None
        self.app_done = anyio.Event()
        self.accepted = False

    async def _run_app(self) -> None:
        try:
            await self.app(self.scope, self._to_app_receive.receive, self._from_app_send.send)
        finally:
            self.app_done.set()

    async def __aenter__(self) -> MemorySocket:
        self._group = anyio.create_task_group()
        await self._group.__aenter__()
        self._group.start_soon(self._run_app)
        await self._to_app_send.send({"type": "websocket.connect"})
        with anyio.fail_after(5):
            message = await self._from_app_receive.receive()
        assert message["type"] == "websocket.accept", message
        self.accepted = True
        return self

    async def _finish(self) -> None:
        assert self._group is not None
        if not self.app_done.is_set():
            await self._to_app_send.send({"type": "websocket.disconnect", "code": 1000})
        with anyio.fail_after(5):
            await self.app_done.wait()
        self._group.cancel_scope.cancel()
        await self._group.__aexit__(None, None, None)
        for stream in (
            self._to_app_send,
            self._to_app_receive,
            self._from_app_send,
            self._from_app_receive,
        ):
            stream.close()

    async def close_frames(self) -> list[Any]:
        """After the app closed: the close message it sent (reading past queued messages)."""
        seen = []
        with anyio.fail_after(5):
            while True:
                message = await self._from_app_receive.receive()
                seen.append(message)
                if message["type"] == "websocket.close":
                    return seen

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._finish()

    @property
    def unread(self) -> int:
        """Messages sent to the app that it has not received yet."""
        return self._to_app_receive.statistics().current_buffer_used

    async def send_text(self, text: str) -> None:
        await self._to_app_send.send({"type": "websocket.receive", "text": text})

    async def send_bytes(self, data: bytes) -> None:
        await self._to_app_send.send({"type": "websocket.receive", "bytes": data})

    async def send_json(self, data: Any) -> None:
        await self.send_text(orjson.dumps(data).decode())

    async def disconnect(self) -> None:
        await self._to_app_send.send({"type": "websocket.disconnect", "code": 1001})
        with anyio.fail_after(5):
            await self.app_done.wait()

    async def receive(self, wait: float = 5) -> Any:
        """The next message as JSON; raises Closed when the app closes the socket."""
        with anyio.fail_after(wait):
            message = await self._from_app_receive.receive()
        if message["type"] == "websocket.close":
            raise Closed(message.get("code", 1000), message.get("reason", ""))
        assert message["type"] == "websocket.send", message
        # json, not orjson: integers beyond 64 bits must come back exact.
        return json.loads(message["text"])

    async def receive_many(self, count: int) -> list[Any]:
        return [await self.receive() for _ in range(count)]

    async def call(self, data: Any) -> Any:
        await self.send_json(data)
        return await self.receive()

    async def nothing_pending(self) -> None:
        """Assert that no message is waiting (a PING is answered by the next message)."""
        await self.send_json({"uuid": "barrier", "route": "PING"})
        assert await self.receive() == {"uuid": "barrier", "route": "PONG"}


class Point(BaseModel):
    x: int
    y: int


# -- shared tiny app --------------------------------------------------------------------


def small_api(**options: Any) -> Tether:
    api = Tether(**options)

    @api.query
    async def add(a: int, b: int) -> int:
        return a + b

    @api.query(name="math.sum")
    async def total(values: list[int]) -> dict[str, int]:
        return {"sum": sum(values)}

    @api.query
    async def hello() -> str:
        return "hi"

    @api.stream
    async def ticks(n: int, ms: int = 0) -> AsyncIterator[int]:
        for i in range(1, n + 1):
            if ms:
                await anyio.sleep(ms / 1000)
            yield i

    return api


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    ["max_in_flight", "max_subscriptions", "max_queued_messages", "max_message_size"],
)
def test_limits_must_be_positive(option: str) -> None:
    options: dict[str, Any] = {option: 0}
    with pytest.raises(ConfigurationError, match=option):
        WebSocketTransport(**options)


@pytest.mark.parametrize("guards", [[], [lambda: None]])
def test_guards_are_refused_for_tether_level_dependencies(guards: list[Any]) -> None:
    # A guard protected the socket only; Tether's dependencies protect every transport.
    with pytest.raises(ConfigurationError, match="guards") as refused:
        WebSocketTransport(guards=guards)
    message = str(refused.value)
    assert "Tether(connection_dependencies=[...])" in message
    assert "Tether(dependencies=[...])" in message
    assert "Tether(batch_dependencies=[...])" in message


def test_attach_adds_one_websocket_route() -> None:
    app, transport = mount(small_api(), path="/socket")
    paths = [getattr(route, "path", None) for route in app.router.routes]
    assert "/api/socket" in paths
    assert transport.dispatcher is not None
    assert transport.dispatcher.server_url == "/api/socket"
    assert transport.connections == 0


# -- the envelope dialect ------------------------------------------------------------------


class TestEnvelope:
    async def test_object_payload_binds_by_name(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call({"uuid": 1, "route": "add", "payload": {"a": 1, "b": 2}})
        assert reply == {"uuid": 1, "status": 200, "headers": {}, "payload": 3}

    async def test_array_binds_positionally(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            assert (await ws.call({"uuid": "a", "route": "add", "payload": [5, 6]}))[
                "payload"
            ] == 11
            too_many = await ws.call({"uuid": "b", "route": "add", "payload": [1, 2, 3]})
        assert too_many["status"] == 422
        assert too_many["payload"]["error"]["code"] == "VALIDATION_FAILED"
        assert too_many["payload"]["error"]["details"][0]["loc"] == [2]

    async def test_single_input_takes_any_other_payload_whole(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            whole = await ws.call({"uuid": 1, "route": "math/sum", "payload": [1, 2, 3, 4]})
            named = await ws.call({"uuid": 2, "route": "math.sum", "payload": {"values": [5]}})
        assert whole == {"uuid": 1, "status": 200, "headers": {}, "payload": {"sum": 10}}
        assert named["payload"] == {"sum": 5}

    async def test_single_model_input_takes_an_object_that_does_not_name_it(self) -> None:
        api = Tether()

        @api.query
        async def norm(point: Point) -> int:
            return abs(point.x) + abs(point.y)

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            whole = await ws.call({"uuid": 1, "route": "norm", "payload": {"x": 3, "y": -4}})
            named = await ws.call(
                {"uuid": 2, "route": "norm", "payload": {"point": {"x": 1, "y": 1}}}
            )
        assert whole["payload"] == 7
        assert named["payload"] == 2

    async def test_scalar_payload_for_many_inputs_is_invalid(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call({"uuid": 1, "route": "add", "payload": 5})
        assert reply["status"] == 422
        assert reply["payload"]["error"]["details"][0]["loc"] == ["payload"]

    async def test_no_payload_calls_without_params(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call({"uuid": 7, "route": "hello"})
            leading_slash = await ws.call({"uuid": 8, "route": "/hello", "payload": None})
        assert reply["payload"] == "hi"
        assert leading_slash["payload"] == "hi"

    async def test_track_id_and_path_are_aliases(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call({"track_id": 9, "path": "add", "payload": [1, 1]})
        assert reply == {"uuid": 9, "status": 200, "headers": {}, "payload": 2}

    async def test_ping_is_answered_with_pong(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            assert await ws.call({"route": "PING"}) == {"uuid": None, "route": "PONG"}
            assert await ws.call({"uuid": 4, "path": "PING"}) == {"uuid": 4, "route": "PONG"}

    async def test_errors_carry_the_status_and_the_error_envelope(self) -> None:
        from tether import NotFound

        api = Tether()

        @api.query
        async def find(key: str) -> str:
            raise NotFound(f"no {key}", details={"key": key})

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            reply = await ws.call({"uuid": "f", "route": "find", "payload": {"key": "k"}})
        assert reply == {
            "uuid": "f",
            "status": 404,
            "headers": {},
            "payload": {"error": {"code": "NOT_FOUND", "message": "no k", "details": {"key": "k"}}},
        }

    async def test_an_unexpected_exception_is_a_500_without_its_text(self) -> None:
        api = Tether()

        @api.command
        async def boom() -> None:
            raise RuntimeError("secret")

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            reply = await ws.call({"uuid": 1, "route": "boom"})
        assert reply["status"] == 500
        assert reply["payload"]["error"]["code"] == "INTERNAL_ERROR"
        assert "secret" not in orjson.dumps(reply).decode()


class TestBadMessages:
    """Each is answered with an error message, and the connection keeps serving."""

    async def check_still_serving(self, ws: MemorySocket) -> None:
        reply = await ws.call({"uuid": "next", "route": "add", "payload": [2, 2]})
        assert reply["payload"] == 4

    async def test_text_that_is_not_json(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            await ws.send_text("{not json")
            reply = await ws.receive()
            assert reply["uuid"] is None
            assert reply["status"] == 400
            assert reply["payload"]["error"]["code"] == "BAD_REQUEST"
            assert reply["payload"]["error"]["message"].startswith("Malformed JSON")
            await self.check_still_serving(ws)

    async def test_text_that_is_not_json_but_mentions_jsonrpc_gets_a_parse_error(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            await ws.send_text('{"jsonrpc": "2.0", "method": "add", "params": [1, 2')
            assert await ws.receive() == {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32700, "message": "Parse error"},
            }
            await self.check_still_serving(ws)

    async def test_binary_frame(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            await ws.send_bytes(b'{"uuid": 1, "route": "add"}')
            reply = await ws.receive()
            assert reply["status"] == 415
            assert reply["payload"]["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
            await self.check_still_serving(ws)

    @pytest.mark.parametrize("uuid", [None, 1.5, True, {"a": 1}, [1]])
    async def test_missing_or_invalid_uuid(self, uuid: Any) -> None:
        app, _ = mount(small_api())
        message: dict[str, Any] = {"route": "add", "payload": [1, 2]}
        if uuid is not None:
            message["uuid"] = uuid
        async with MemorySocket(app) as ws:
            reply = await ws.call(message)
            assert reply["uuid"] is None
            assert reply["status"] == 400
            assert reply["payload"]["error"]["details"] == {"field": "uuid"}
            await self.check_still_serving(ws)

    @pytest.mark.parametrize("message", [{"uuid": 1}, {"uuid": 1, "route": 5}])
    async def test_missing_route(self, message: dict[str, Any]) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call(message)
            assert reply["uuid"] == 1
            assert reply["status"] == 400
            assert reply["payload"]["error"]["details"] == {"field": "route"}
            await self.check_still_serving(ws)

    @pytest.mark.parametrize("message", [5, "text", None, True])
    async def test_json_that_is_not_an_object(self, message: Any) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call(message)
            assert reply["status"] == 400
            await self.check_still_serving(ws)

    async def test_unknown_operation(self) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call({"uuid": "u", "route": "math/nope"})
            assert reply["uuid"] == "u"
            assert reply["status"] == 404
            assert reply["payload"]["error"]["details"] == {"operation": "math.nope"}
            await self.check_still_serving(ws)

    async def test_duplicate_uuid_while_the_first_is_in_flight(self) -> None:
        api = Tether()
        release = anyio.Event()

        @api.query
        async def slow() -> str:
            await release.wait()
            return "done"

        app, _ = mount(api)
        async with MemorySocket(app) as ws:
            await ws.send_json({"uuid": "d", "route": "slow"})
            await ws.send_json({"uuid": "d", "route": "slow"})
            duplicate = await ws.receive()
            assert duplicate["uuid"] == "d"
            assert duplicate["status"] == 409
            assert duplicate["payload"]["error"]["code"] == "CONFLICT"
            release.set()
            assert (await ws.receive())["payload"] == "done"
            # Once answered, the uuid may be used again.
            assert (await ws.call({"uuid": "d", "route": "slow"}))["payload"] == "done"

    @pytest.mark.parametrize(
        "headers", [["x"], "x", {"x-a": {"nested": 1}}, {"x-a": None}, {"x-a": "caf\u20ac"}]
    )
    async def test_bad_headers(self, headers: Any) -> None:
        app, _ = mount(small_api())
        async with MemorySocket(app) as ws:
            reply = await ws.call({"uuid": 1, "route": "hello", "headers": headers})
            assert reply["status"] == 400
            await self.check_still_serving(ws)

    async def test_message_over_the_size_limit_closes_with_1009(self) -> None:
        app, _ = mount(small_api(), max_message_size=100)
        async with MemorySocket(app) as ws:
            assert (await ws.call({"uuid": 1, "route": "math/sum", "payload": [1] * 10}))[
                "status"
            ] == 200
            await ws.send_json({"uuid": 2, "route": "math/sum", "payload": [1] * 100})
            with pytest.raises(Closed) as closed:
                await ws.receive()
            assert closed.value.code == 1009

    async def test_multibyte_text_is_measured_in_bytes(self) -> None:
        app, _ = mount(small_api(), max_message_size=100)
        async with MemorySocket(app) as ws:
            # 40 characters, 120 bytes of UTF-8.
            await ws.send_text('{"uuid": 1, "route": "hello", "x": "' + "\u20ac" * 40 + '"}')
            with pytest.raises(Closed) as closed:
                await ws.receive()
            assert closed.value.code == 1009

    async def test_binary_frame_over_the_size_limit_closes_with_1009(self) -> None:
        app, _ = mount(small_api(), max_message_size=100)
        async with MemorySocket(app) as ws:
            await ws.send_bytes(b"x" * 101)
            with pytest.raises(Closed) as closed:
                await ws.receive()
            assert closed.value.code == 1009


def reply_of(uuid: Any, payload: Any) -> dict[str, Any]:
    return {"uuid": uuid, "status": 200, "headers": {}, "payload": payload}


async def gather_replies(ws: MemorySocket, count: int) -> dict[Any, Any]:
    replies = await ws.receive_many(count)
    return {reply["uuid"]: reply for reply in replies}


def factory_calls(n: int) -> Callable[[int], dict[str, Any]]:
    def make(i: int) -> dict[str, Any]:
        return {"uuid": i, "route": "add", "payload": [i, n]}

    return make


async def test_many_calls_on_one_connection_are_all_answered() -> None:
    app, _ = mount(small_api())
    make = factory_calls(1000)
    async with MemorySocket(app) as ws:
        for i in range(200):
            await ws.send_json(make(i))
        replies = await gather_replies(ws, 200)
    assert replies == {i: reply_of(i, i + 1000) for i in range(200)}
