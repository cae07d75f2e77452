"""One rule, every wire: a successful call releases exactly its events, once; a failed one none.

One app on a real uvicorn: `create` (a command handler) emits two events and succeeds,
`create_fail` emits two and raises, and the stream `watch` emits two, yields, and fails or
not (over SSE and as a WebSocket subscription). Each wire calls each with its own tag; an
event handler records what it received.
The in-process calls (`api.call`, `api.send`) run on the server's own event loop, as an
application's code would.
"""

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from websockets.sync.client import connect

from tests.conftest import LiveServer
from tether import Conflict, Tether, TetherError
from tether.events import Command, Event, Events

pytestmark = pytest.mark.e2e


class Create(Command[int]):
    tag: str


class CreateFail(Command[int]):
    tag: str


class Happened(Event):
    tag: str
    index: int


class World:
    """The app, its server's loop, and what the event handler recorded (from any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[tuple[str, int, str]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.api = Tether()
        self.app = FastAPI(lifespan=self._lifespan)
        self._build()

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self.loop = asyncio.get_running_loop()
        yield

    def _build(self) -> None:
        api = self.api

        def emit_two(events: Events, tag: str) -> None:
            events.emit(Happened(tag=tag, index=0), Happened(tag=tag, index=1))

        @api.handler
        async def create(cmd: Create, events: Events = Depends()) -> int:
            emit_two(events, cmd.tag)
            return 1

        @api.handler
        async def create_fail(cmd: CreateFail, events: Events = Depends()) -> int:
            emit_two(events, cmd.tag)
            raise Conflict("refused after emitting")

        @api.stream
        async def watch(tag: str, fail: bool, events: Events = Depends()) -> AsyncIterator[int]:
            emit_two(events, tag)
            yield 1  # the client has an item...
            if fail:
                raise Conflict("the stream failed")  # ...and still, nothing is released

        @api.on(Happened)
        async def record(event: Happened) -> None:
            with self.lock:
                self.records.append((event.tag, event.index, str(event.event_id)))

        api.mount(self.app)

    def on_server(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the server's event loop and return its result."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def seen(self) -> dict[str, list[int]]:
        with self.lock:
            records = list(self.records)
        ids = [event_id for _, _, event_id in records]
        assert len(ids) == len(set(ids)), "an event was handled twice"
        by_tag: dict[str, list[int]] = {}
        for tag, index, _ in records:
            by_tag.setdefault(tag, []).append(index)
        return {tag: sorted(indexes) for tag, indexes in by_tag.items()}


# -- the wires: each calls `create` (ok) or `create_fail` (fail) with a tag -----------------


def _op(ok: bool) -> str:
    return "create" if ok else "create_fail"


def _rpc_ok(message: dict[str, Any]) -> bool:
    return "result" in message


def call_http(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    response = httpx.post(f"{live.url}/api/call/{_op(ok)}", json={"tag": tag})
    return response.status_code == 200


def call_jsonrpc(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    message = {"jsonrpc": "2.0", "id": 1, "method": _op(ok), "params": {"tag": tag}}
    return _rpc_ok(httpx.post(f"{live.url}/api/jsonrpc", json=message).json())


def call_jsonrpc_batch(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    # Its sibling always succeeds: each item releases its own events, or none.
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": _op(ok), "params": {"tag": tag}},
        {"jsonrpc": "2.0", "id": 2, "method": "create", "params": [f"{tag}-sibling"]},
    ]
    replies = {
        item["id"]: item for item in httpx.post(f"{live.url}/api/jsonrpc", json=batch).json()
    }
    assert _rpc_ok(replies[2])
    return _rpc_ok(replies[1])


def call_jsonrpc_notification(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    message = {"jsonrpc": "2.0", "method": _op(ok), "params": {"tag": tag}}
    response = httpx.post(f"{live.url}/api/jsonrpc", json=message)
    assert response.status_code == 204
    return ok  # a notification is never answered


def call_ws_envelope(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    with connect(f"{live.ws_url}/api/ws") as ws:
        ws.send(json.dumps({"uuid": "u1", "route": _op(ok), "payload": {"tag": tag}}))
        reply = json.loads(ws.recv(timeout=5))
    return bool(reply["status"] < 400)


def call_ws_jsonrpc(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    with connect(f"{live.ws_url}/api/ws") as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": _op(ok), "params": [tag]}))
        return _rpc_ok(json.loads(ws.recv(timeout=5)))


def call_sse(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    params = {"tag": tag, "fail": str(not ok).lower()}
    response = httpx.get(f"{live.url}/api/stream/watch", params=params)
    kinds = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "data"  # an item reached the client either way
    return kinds == ["data", "end"]


def call_ws_stream(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    # The stream as a WebSocket subscription: items, then an end (or error) message.
    with connect(f"{live.ws_url}/api/ws") as ws:
        payload = {"tag": tag, "fail": not ok}
        ws.send(json.dumps({"uuid": "s", "route": "watch", "payload": payload}))
        messages = [json.loads(ws.recv(timeout=5))]
        while messages[-1]["headers"].get("stream") not in ("end", "error"):
            messages.append(json.loads(ws.recv(timeout=5)))
    assert messages[0]["payload"] == 1
    return bool(messages[-1]["headers"]["stream"] == "end")


def call_inprocess(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    try:
        world.on_server(world.api.call(_op(ok), {"tag": tag}))
    except TetherError:
        return False
    return True


def call_send(live: LiveServer, world: World, tag: str, ok: bool) -> bool:
    message = Create(tag=tag) if ok else CreateFail(tag=tag)
    try:
        world.on_server(world.api.send(message))
    except TetherError:
        return False
    return True


CALLERS: dict[str, Callable[[LiveServer, World, str, bool], bool]] = {
    "http": call_http,
    "jsonrpc": call_jsonrpc,
    "jsonrpc_batch": call_jsonrpc_batch,
    "jsonrpc_notification": call_jsonrpc_notification,
    "ws_envelope": call_ws_envelope,
    "ws_jsonrpc": call_ws_jsonrpc,
    "sse": call_sse,
    "ws_stream": call_ws_stream,
    "inprocess_call": call_inprocess,
    "inprocess_send": call_send,
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LiveServer, World]]:
    world = World()
    live = LiveServer(world.app)
    live.start()
    try:
        yield live, world
    finally:
        live.stop()


def test_each_wire_releases_a_successful_calls_events_once_and_a_failed_calls_none(
    server: tuple[LiveServer, World],
) -> None:
    live, world = server
    answered: dict[str, bool] = {}
    expected: dict[str, list[int]] = {}
    for wire, caller in CALLERS.items():
        for ok in (True, False):
            tag = f"{wire}-{'ok' if ok else 'fail'}"
            answered[tag] = caller(live, world, tag, ok)
            if ok:
                expected[tag] = [0, 1]
            if wire == "jsonrpc_batch":
                expected[f"{tag}-sibling"] = [0, 1]
    assert answered == {tag: tag.endswith("-ok") for tag in answered}
    # Wait for the handlers (a notification may still be running), then for stragglers.
    deadline = time.monotonic() + 10
    while world.seen() != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    world.on_server(world.api.events.settle())
    time.sleep(0.3)
    assert world.seen() == expected
    stats = world.api.events.stats
    assert (stats.failed, stats.parked, stats.dropped) == (0, 0, 0)
    assert stats.published == stats.handled == sum(len(v) for v in expected.values())
