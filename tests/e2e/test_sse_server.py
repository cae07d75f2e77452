"""SSE through a real uvicorn server on loopback: streaming, leaving clients, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, Response

from tests.conftest import LiveServer
from tests.examples.test_docs_examples import load
from tests.transports.test_sse import parse_events
from tether import NotFound, Tether
from tether.server import TetherServer
from tether.transports import HttpTransport
from tether.transports.sse import SseTransport, StreamAborted

pytestmark = pytest.mark.e2e


class World:
    """What one test app's stream and its yield dependency record, across threads."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.generator_closed = threading.Event()
        self.log: list[str] = []


def create_app(world: World, heartbeat: float = 15.0) -> FastAPI:
    api = Tether(prefix="/api")

    async def resource() -> AsyncIterator[str]:
        world.opened.set()
        try:
            yield "resource"
        except StreamAborted as exc:
            # The teardown is not cancelled: it may still await.
            await anyio.sleep(0.01)
            world.log.append(f"dependency saw: {exc}")
            raise
        finally:
            world.log.append("dependency closed")
            world.closed.set()

    @api.stream
    async def ticks(n: int, ms: int = 0, r: str = Depends(resource)) -> AsyncIterator[int]:
        try:
            for i in range(1, n + 1):
                if ms:
                    await anyio.sleep(ms / 1000)
                yield i
        except BaseException as exc:
            world.log.append(f"generator stopped by {type(exc).__name__}")
            raise
        finally:
            world.generator_closed.set()

    @api.stream
    async def hot(r: str = Depends(resource)) -> AsyncIterator[str]:
        """Never awaits between items: only the transport's checkpoints let others run."""
        try:
            while True:
                yield "x" * 100
        finally:
            world.generator_closed.set()

    @api.stream
    def counting(r: str = Depends(resource)) -> Iterator[int]:
        """A sync generator, run item by item in the thread pool."""
        try:
            i = 0
            while True:
                i += 1
                time.sleep(0.01)
                yield i
        finally:
            world.generator_closed.set()

    @api.stream
    async def failing(after: int) -> AsyncIterator[int]:
        for i in range(after):
            yield i
        raise NotFound("the rest is gone", details={"after": after})

    app = FastAPI()
    api.mount(app, transports=[HttpTransport(), SseTransport(heartbeat=heartbeat)])
    return app


def read_until_data(lines: Iterator[str], count: int) -> list[str]:
    """Read SSE lines until `count` data lines were seen; return the data values."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data: "):
            data.append(line[6:])
            if len(data) == count:
                return data
    raise AssertionError(f"the stream ended after {data}")


def test_stream_over_real_server(live_server: Callable[..., LiveServer]) -> None:
    world = World()
    server = live_server(create_app(world))
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/api/stream/ticks", params={"n": 3})
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.text == (
            "id: 1\nevent: data\ndata: 1\n\n"
            "id: 2\nevent: data\ndata: 2\n\n"
            "id: 3\nevent: data\ndata: 3\n\n"
            "event: end\ndata: null\n\n"
        )
        posted = client.post("/api/stream/ticks", json={"n": 2})
        assert [e.get("data") for e in parse_events(posted.text)] == ["1", "2", "null"]
    assert world.log == ["dependency closed", "dependency closed"]


def test_items_arrive_while_the_stream_runs(live_server: Callable[..., LiveServer]) -> None:
    """Each item is flushed as it is produced, not buffered until the end."""
    world = World()
    server = live_server(create_app(world))
    with (
        httpx.Client(base_url=server.url) as client,
        client.stream("GET", "/api/stream/ticks", params={"n": 3, "ms": 300}) as response,
    ):
        lines = response.iter_lines()
        started = time.monotonic()
        assert read_until_data(lines, 1) == ["1"]
        first = time.monotonic() - started
        rest = list(lines)
    assert first < 0.6
    assert rest[-3:] == ["event: end", "data: null", ""]


def test_error_mid_stream_then_connection_reused(live_server: Callable[..., LiveServer]) -> None:
    world = World()
    server = live_server(create_app(world))
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/api/stream/failing", params={"after": 2})
        assert response.status_code == 200
        events = parse_events(response.text)
        assert [e["event"] for e in events] == ["data", "data", "error"]
        assert events[-1]["data"] == (
            '{"error":{"code":"NOT_FOUND","message":"the rest is gone","details":{"after":2}}}'
        )
        # The response ended cleanly: the keep-alive connection serves the next request.
        again = client.get("/api/stream/failing", params={"after": 0})
        assert [e["event"] for e in parse_events(again.text)] == ["error"]
        assert client.get("/api/stream/nope").status_code == 404


def test_heartbeat_on_real_server(live_server: Callable[..., LiveServer]) -> None:
    world = World()
    server = live_server(create_app(world, heartbeat=0.05))
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/api/stream/ticks", params={"n": 2, "ms": 300})
    assert response.text.count(": ping\n\n") >= 6
    assert [e.get("data") for e in parse_events(response.text)] == ["1", "2", "null"]


@pytest.mark.parametrize("path", ["ticks?n=1000000&ms=20", "hot", "counting"])
def test_client_leaving_cancels_the_generator_within_a_second(
    live_server: Callable[..., LiveServer], path: str
) -> None:
    world = World()
    server = live_server(create_app(world))
    with (
        httpx.Client(base_url=server.url) as client,
        client.stream("GET", f"/api/stream/{path}") as response,
    ):
        read_until_data(response.iter_lines(), 3)
        assert world.opened.is_set()
        assert not world.closed.is_set()
    # Closing a response that was not read to the end closes its connection.
    left = time.monotonic()
    assert world.generator_closed.wait(1.0)
    assert world.closed.wait(1.0)
    assert time.monotonic() - left < 1.0
    assert "dependency saw: the client disconnected" in world.log
    if path.startswith("ticks"):
        assert world.log[0] == "generator stopped by CancelledError"


def tether_server(app: FastAPI, **config: Any) -> LiveServer:
    """A LiveServer (not yet started) whose server is tether's `TetherServer`."""
    live = LiveServer(app, **config)
    live.server = TetherServer(live.config)
    live.thread = threading.Thread(target=live.server.run, daemon=True)
    return live


def stop_while_streaming(server: LiveServer) -> tuple[float, float, list[str], str | None]:
    """Open an endless stream, stop the server with the client still reading.

    Returns how long `stop()` took, how long after it began the stream ended, the lines read
    after the first two items, and the error the client saw (None: the body ended cleanly).
    """
    server.start()
    rest: list[str] = []
    failure: str | None = None
    try:
        with (
            httpx.Client(base_url=server.url) as client,
            client.stream("GET", "/api/stream/ticks", params={"n": 1000000, "ms": 20}) as response,
        ):
            lines = response.iter_lines()
            read_until_data(lines, 2)
            started = time.monotonic()
            stopper = threading.Thread(target=server.stop)
            stopper.start()
            try:
                rest.extend(lines)  # ends when the server ends the stream
            except httpx.HTTPError as exc:
                failure = type(exc).__name__
            ended = time.monotonic() - started
            stopper.join(15)
            stopped = time.monotonic() - started
    finally:
        if server.thread.is_alive():  # pragma: no cover - only when the test fails
            server.server.force_exit = True
            server.thread.join(5)
    return stopped, ended, rest, failure


def test_server_shutdown_ends_open_streams_promptly() -> None:
    """`TetherServer` calls `api.shutdown()` as it stops: open streams end at once."""
    world = World()
    stopped, ended, rest, failure = stop_while_streaming(
        tether_server(create_app(world), timeout_graceful_shutdown=10)
    )
    # Long before the 10 s grace period: the stream was ended, not waited for.
    assert ended < 1.0
    assert stopped < 1.5
    # Interrupted, not finished: no `end`, so an EventSource reconnects; the body itself
    # ended cleanly.
    assert failure is None
    assert "event: end" not in rest
    assert world.closed.is_set()
    assert "dependency saw: the server is shutting down" in world.log


def test_plain_uvicorn_holds_a_stream_until_its_graceful_shutdown_timeout() -> None:
    """Without `api.shutdown()`, uvicorn waits for the stream, then cuts it: documented."""
    world = World()
    stopped, ended, rest, failure = stop_while_streaming(
        LiveServer(create_app(world), timeout_graceful_shutdown=1)
    )
    # uvicorn waits 0.1 s, then the timeout; then it cancels the stream's task.
    assert 1.0 <= ended < 2.5
    assert stopped < 3.0
    assert failure == "RemoteProtocolError"  # cut mid-body: no `end` either
    assert "event: end" not in rest
    assert not any("the server is shutting down" in entry for entry in world.log)


def test_a_status_without_a_body_keeps_the_connection_usable(
    live_server: Callable[..., LiveServer],
) -> None:
    api = Tether(prefix="/api")

    def no_content(response: Response) -> None:
        response.status_code = 204

    @api.stream
    async def empty(_: None = Depends(no_content)) -> AsyncIterator[int]:
        yield 1  # pragma: no cover - a 204 has no items

    @api.stream
    async def one() -> AsyncIterator[int]:
        yield 1

    app = FastAPI()
    api.mount(app, transports=[SseTransport()])
    server = live_server(app)
    with httpx.Client(base_url=server.url) as client:
        for _ in range(2):
            response = client.get("/api/stream/empty")
            assert response.status_code == 204
            assert response.content == b""
        # The same keep-alive connection serves the next stream, unharmed.
        assert [e.get("data") for e in parse_events(client.get("/api/stream/one").text)] == [
            "1",
            "null",
        ]


def test_docs_example_cursor_closes_when_the_client_leaves(
    live_server: Callable[..., LiveServer],
) -> None:
    module = load("streams_1")
    server = live_server(module.app)
    with (
        httpx.Client(base_url=server.url) as client,
        client.stream("GET", "/api/stream/export", params={"total": 100000, "ms": 20}) as response,
    ):
        assert read_until_data(response.iter_lines(), 2) == [
            '{"done":1,"total":100000}',
            '{"done":2,"total":100000}',
        ]
    deadline = time.monotonic() + 1.0
    while "cursor closed" not in module.LOG and time.monotonic() < deadline:
        time.sleep(0.01)
    assert module.LOG == ["cursor opened", "cursor saw StreamAborted", "cursor closed"]
