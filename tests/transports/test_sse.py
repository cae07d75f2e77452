"""The SSE transport in memory (asyncio and trio): wire format, errors, limits, OpenAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Response
from pydantic import BaseModel, Field
from starlette.types import Message

from tests.examples.test_docs_examples import load
from tether import ConfigurationError, NotFound, Tether
from tether.transports import HttpTransport
from tether.transports.sse import SseTransport, StreamAborted, error_event


def parse_events(text: str) -> list[dict[str, str]]:
    """Parse a text/event-stream body into its events (comments left out), per the spec."""
    events: list[dict[str, str]] = []
    event: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            if event:
                events.append(event)
            event = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            event[field] = value[1:] if value.startswith(" ") else value
    if event:
        raise AssertionError(f"an event was not terminated by a blank line: {event}")
    return events


class Point(BaseModel):
    x: int
    y: int


class User(BaseModel):
    name: str
    is_staff: bool = False


async def current_user(x_user: str | None = Header(None)) -> User | None:
    if x_user is None:
        return None
    return User(name=x_user, is_staff=x_user == "admin")


class World:
    """What one test app records."""

    def __init__(self) -> None:
        self.log: list[str] = []


def create_api(world: World) -> Tether:
    api = Tether(prefix="/api", user=Depends(current_user), max_body_size=1024)

    async def resource() -> AsyncIterator[str]:
        world.log.append("open")
        try:
            yield "r"
        except Exception as exc:
            world.log.append(f"saw {type(exc).__name__}: {exc}")
            raise
        finally:
            world.log.append("close")

    async def broken_teardown() -> AsyncIterator[None]:
        try:
            yield
        finally:
            raise RuntimeError("teardown failed")

    @api.stream
    async def ticks(n: int, ms: int = 0, r: str = Depends(resource)) -> AsyncIterator[int]:
        for i in range(1, n + 1):
            if ms:
                await anyio.sleep(ms / 1000)
            yield i

    @api.stream
    def letters(word: str) -> Iterator[str]:
        yield from word

    @api.stream
    async def points(points: list[Point]) -> AsyncIterator[Point]:
        for point in points:
            yield point

    @api.stream
    async def tagged(tags: list[str]) -> AsyncIterator[str]:
        for tag in tags:
            yield tag

    @api.stream
    async def failing(after: int, r: str = Depends(resource)) -> AsyncIterator[int]:
        for i in range(after):
            yield i
        raise NotFound("the rest is gone", details={"after": after})

    @api.stream
    async def crashing() -> AsyncIterator[int]:
        yield 1
        raise ZeroDivisionError("boom")

    @api.stream
    async def teardown_fails(_: None = Depends(broken_teardown)) -> AsyncIterator[int]:
        yield 1

    @api.stream
    async def teardown_fails_after_error(_: None = Depends(broken_teardown)) -> AsyncIterator[int]:
        yield 1
        raise NotFound("first")

    @api.stream(auth="staff")
    async def staff_only() -> AsyncIterator[str]:
        yield "secret"

    def set_cookie(response: Response, tasks: BackgroundTasks) -> None:
        response.set_cookie("seen", "yes")
        response.headers["x-extra"] = "1"
        response.headers["content-type"] = "text/plain"
        tasks.add_task(world.log.append, "background ran")

    @api.stream
    async def with_cookie(response: Response, _: None = Depends(set_cookie)) -> AsyncIterator[int]:
        # Too late: the headers went out once the dependencies were solved.
        response.headers["x-too-late"] = "1"
        yield 1

    @api.stream
    async def forever(r: str = Depends(resource)) -> AsyncIterator[int]:
        i = 0
        while True:
            i += 1
            await anyio.sleep(0.01)
            yield i

    async def hanging() -> AsyncIterator[None]:
        world.log.append("solving")
        try:
            await anyio.sleep(3600)
            yield  # pragma: no cover - never reached
        finally:
            world.log.append("solving stopped")

    @api.stream
    async def slow_to_open(_: None = Depends(hanging)) -> AsyncIterator[int]:  # pragma: no cover
        yield 1

    def created(response: Response) -> None:
        response.status_code = 201

    def no_content(response: Response, tasks: BackgroundTasks) -> None:
        response.status_code = 204
        response.headers["x-extra"] = "1"
        tasks.add_task(world.log.append, "background ran")

    @api.stream
    async def with_status(_: None = Depends(created)) -> AsyncIterator[int]:
        yield 1

    @api.stream
    async def without_content(
        r: str = Depends(resource), _: None = Depends(no_content)
    ) -> AsyncIterator[int]:
        world.log.append("iterated")  # pragma: no cover - a 204 has no items
        yield 1  # pragma: no cover

    @api.query
    async def plain() -> int:
        return 1

    return api


def create_app(world: World, heartbeat: float = 15.0) -> FastAPI:
    app = FastAPI()
    create_api(world).mount(app, transports=[HttpTransport(), SseTransport(heartbeat=heartbeat)])
    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


def data(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    events = parse_events(response.text)
    assert events[-1] == {"event": "end", "data": "null"}, events
    return [event["data"] for event in events[:-1]]


class TestWireFormat:
    async def test_get_exact_bytes_and_headers(self) -> None:
        world = World()
        async with client_for(create_app(world)) as client:
            response = await client.get("/api/stream/ticks?n=2")
        assert response.status_code == 200
        assert response.text == (
            "id: 1\nevent: data\ndata: 1\n\nid: 2\nevent: data\ndata: 2\n\nevent: end\ndata: null\n\n"
        )
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["connection"] == "keep-alive"
        assert "content-length" not in response.headers
        assert world.log == ["open", "close"]

    async def test_post_json_body(self) -> None:
        async with client_for(create_app(World())) as client:
            response = await client.post(
                "/api/stream/points", json={"points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}
            )
        assert data(response) == ['{"x":1,"y":2}', '{"x":3,"y":4}']

    async def test_post_json_subtype_and_empty_body(self) -> None:
        async with client_for(create_app(World())) as client:
            response = await client.post(
                "/api/stream/ticks",
                content=b'{"n": 1}',
                headers={"content-type": "application/merge-patch+json"},
            )
            assert data(response) == ["1"]
            # An empty body is no parameters: ticks then fails validation (n is required).
            json_type = {"content-type": "application/json"}
            empty = await client.post("/api/stream/ticks", headers=json_type)
            assert empty.status_code == 422
            # Without a JSON content type, even an empty POST is refused (no CSRF door).
            untyped = await client.post("/api/stream/ticks")
            assert untyped.status_code == 415

    async def test_ids_increase_past_checkpoints(self) -> None:
        async with client_for(create_app(World())) as client:
            response = await client.get("/api/stream/ticks", params={"n": 100})
        events = parse_events(response.text)
        assert [int(e["id"]) for e in events[:-1]] == list(range(1, 101))
        assert [int(e["data"]) for e in events[:-1]] == list(range(1, 101))
        assert "id" not in events[-1]

    async def test_sync_generator(self) -> None:
        async with client_for(create_app(World())) as client:
            response = await client.get("/api/stream/letters", params={"word": "abc"})
        assert data(response) == ['"a"', '"b"', '"c"']

    async def test_repeated_query_keys_make_a_list(self) -> None:
        async with client_for(create_app(World())) as client:
            response = await client.get("/api/stream/tagged?tags=a&tags=b%0Ac")
        # A newline inside an item stays escaped in its JSON: one data line per event.
        assert data(response) == ['"a"', '"b\\nc"']

    async def test_heartbeat(self) -> None:
        async with client_for(create_app(World(), heartbeat=0.01)) as client:
            response = await client.get("/api/stream/ticks", params={"n": 2, "ms": 100})
        assert response.text.count(": ping\n\n") >= 5
        assert data(response) == ["1", "2"]

    async def test_no_heartbeat_before_it_is_due(self) -> None:
        async with client_for(create_app(World(), heartbeat=5)) as client:
            response = await client.get("/api/stream/ticks", params={"n": 2, "ms": 10})
        assert ": ping" not in response.text

    async def test_dependency_response_headers_and_background_tasks(self) -> None:
        world = World()
        async with client_for(create_app(world)) as client:
            response = await client.get("/api/stream/with_cookie")
        assert data(response) == ["1"]
        assert response.headers["set-cookie"].startswith("seen=yes")
        assert response.headers["x-extra"] == "1"
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert "x-too-late" not in response.headers
        assert world.log == ["background ran"]

    async def test_a_status_set_by_a_response_dependency_is_honoured(self) -> None:
        async with client_for(create_app(World())) as client:
            response = await client.get("/api/stream/with_status")
        assert response.status_code == 201
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert parse_events(response.text) == [
            {"id": "1", "event": "data", "data": "1"},
            {"event": "end", "data": "null"},
        ]

    async def test_a_status_without_a_body_ends_the_stream_at_once(self) -> None:
        world = World()
        async with client_for(create_app(world)) as client:
            response = await client.get("/api/stream/without_content")
        assert response.status_code == 204
        assert response.content == b""
        assert "content-type" not in response.headers
        assert response.headers["x-extra"] == "1"
        # Not iterated, yet a success: the background task runs, then the teardown.
        assert world.log == ["open", "background ran", "close"]


JSON = {"content-type": "application/json"}


class TestErrorsBeforeTheFirstItem:
    @pytest.mark.parametrize(
        ("method", "url", "kwargs", "status", "code"),
        [
            ("GET", "/api/stream/nope", {}, 404, "NOT_FOUND"),
            ("GET", "/api/stream/plain", {}, 400, "BAD_REQUEST"),
            ("GET", "/api/stream/ticks?n=x", {}, 422, "VALIDATION_FAILED"),
            ("GET", "/api/stream/ticks?n=1&n=2", {}, 422, "VALIDATION_FAILED"),
            ("POST", "/api/stream/ticks", {"json": {"n": "x"}}, 422, "VALIDATION_FAILED"),
            ("GET", "/api/stream/staff_only", {}, 401, "UNAUTHORIZED"),
            ("GET", "/api/stream/staff_only", {"headers": {"x-user": "bob"}}, 403, "FORBIDDEN"),
            ("POST", "/api/stream/ticks", {"content": b"{", "headers": JSON}, 400, "BAD_REQUEST"),
            ("POST", "/api/stream/ticks", {"json": [1]}, 400, "BAD_REQUEST"),
            (
                "POST",
                "/api/stream/ticks",
                {"content": b"{}", "headers": {**JSON, "content-length": "x"}},
                400,
                "BAD_REQUEST",
            ),
            (
                "POST",
                "/api/stream/ticks",
                {"content": b"x" * 2000, "headers": JSON},
                413,
                "PAYLOAD_TOO_LARGE",
            ),
            (
                "POST",
                "/api/stream/ticks",
                {"content": b"{}", "headers": {"content-type": "text/plain"}},
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            ("GET", "/api/stream/points", {}, 405, "METHOD_NOT_ALLOWED"),
            ("PUT", "/api/stream/ticks", {}, 405, "METHOD_NOT_ALLOWED"),
        ],
    )
    async def test_error_status_and_one_error_event(
        self, method: str, url: str, kwargs: dict[str, Any], status: int, code: str
    ) -> None:
        world = World()
        async with client_for(create_app(world)) as client:
            response = await client.request(method, url, **kwargs)
        assert response.status_code == status
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert int(response.headers["content-length"]) == len(response.content)
        events = parse_events(response.text)
        assert [event["event"] for event in events] == ["error"]
        assert httpx.Response(200, content=events[0]["data"]).json()["error"]["code"] == code
        if status == 405:
            assert response.headers["allow"] == "GET, POST"
        # Dependencies that were opened are closed again; none stays open.
        assert world.log.count("open") == world.log.count("close")

    async def test_not_a_stream_names_the_call_route(self) -> None:
        async with client_for(create_app(World())) as client:
            response = await client.get("/api/stream/plain")
        error = httpx.Response(200, content=parse_events(response.text)[0]["data"]).json()
        assert error == {
            "error": {
                "code": "BAD_REQUEST",
                "message": "plain is a query, not a stream; call it at /api/call/plain",
                "details": {"operation": "plain", "kind": "query"},
            }
        }

    async def test_authorised_user_streams(self) -> None:
        async with client_for(create_app(World())) as client:
            response = await client.get("/api/stream/staff_only", headers={"x-user": "admin"})
        assert data(response) == ['"secret"']


class TestErrorsWhileStreaming:
    async def test_error_event_then_close(self) -> None:
        world = World()
        async with client_for(create_app(world)) as client:
            response = await client.get("/api/stream/failing", params={"after": 2})
        assert response.status_code == 200
        assert response.text == (
            "id: 1\nevent: data\ndata: 0\n\nid: 2\nevent: data\ndata: 1\n\n"
            "event: error\ndata: "
            '{"error":{"code":"NOT_FOUND","message":"the rest is gone","details":{"after":2}}}'
            "\n\n"
        )
        # The yield dependency sees the operation's own exception, then closes.
        assert world.log == ["open", "saw NotFound: the rest is gone", "close"]

    async def test_unexpected_exception_is_an_internal_error_logged_once(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with client_for(create_app(World())) as client:
            with caplog.at_level(logging.ERROR, logger="tether"):
                response = await client.get("/api/stream/crashing")
        events = parse_events(response.text)
        assert [e["event"] for e in events] == ["data", "error"]
        assert events[1]["data"] == (
            '{"error":{"code":"INTERNAL_ERROR","message":"Internal server error","details":null}}'
        )
        assert "boom" not in response.text
        assert len(caplog.records) == 1

    async def test_dependency_failing_to_close_after_the_end_is_logged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Issue 10: the end is sent before the teardown (FastAPI's order), so a teardown
        # error can no longer replace it; it is logged once, with the operation's name.
        async with client_for(create_app(World())) as client:
            with caplog.at_level(logging.ERROR, logger="tether"):
                response = await client.get("/api/stream/teardown_fails")
        events = parse_events(response.text)
        assert [e["event"] for e in events] == ["data", "end"]
        assert len(caplog.records) == 1
        assert "'teardown_fails' failed while closing" in caplog.records[0].getMessage()

    async def test_first_error_wins_over_a_failing_teardown(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        async with client_for(create_app(World())) as client:
            with caplog.at_level(logging.ERROR, logger="tether"):
                response = await client.get("/api/stream/teardown_fails_after_error")
        events = parse_events(response.text)
        assert [e["event"] for e in events] == ["data", "error"]
        assert '"NOT_FOUND"' in events[1]["data"]
        assert len(caplog.records) == 1  # the teardown failure is logged


class RawExchange:
    """Drive the ASGI app directly: a client that leaves after `leave_after` body messages."""

    def __init__(self, leave_after: int | None, body: bytes = b"") -> None:
        self.leave_after = leave_after
        self.body = body
        self.sent: list[Message] = []
        self.gone = anyio.Event()
        self.body_read = False

    async def receive(self) -> Message:
        if not self.body_read:
            self.body_read = True
            if self.leave_after == -1:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": self.body, "more_body": False}
        if self.leave_after != 0:
            await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        bodies = [m for m in self.sent if m["type"] == "http.response.body"]
        if self.leave_after is not None and len(bodies) >= self.leave_after:
            self.gone.set()

    async def run(self, app: FastAPI, method: str, path: str, query: bytes = b"") -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query,
            "headers": [(b"host", b"test"), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
            "state": {},
        }
        with anyio.fail_after(5):
            await app(scope, self.receive, self.send)


class TestClientLeaving:
    async def test_leaving_cancels_the_stream_and_closes_dependencies(self) -> None:
        world = World()
        exchange = RawExchange(leave_after=3)
        await exchange.run(create_app(world), "GET", "/api/stream/forever")
        bodies = [m["body"] for m in exchange.sent if m["type"] == "http.response.body"]
        assert bodies == [
            b"id: 1\nevent: data\ndata: 1\n\n",
            b"id: 2\nevent: data\ndata: 2\n\n",
            b"id: 3\nevent: data\ndata: 3\n\n",
        ]
        assert world.log == ["open", "saw StreamAborted: the client disconnected", "close"]

    async def test_leaving_while_dependencies_are_solved(self) -> None:
        world = World()
        exchange = RawExchange(leave_after=0)
        await exchange.run(create_app(world), "GET", "/api/stream/slow_to_open")
        assert exchange.sent == []
        assert world.log == ["solving", "solving stopped"]

    async def test_leaving_before_the_body_is_read(self) -> None:
        world = World()
        exchange = RawExchange(leave_after=-1)
        await exchange.run(create_app(world), "POST", "/api/stream/ticks")
        assert exchange.sent == []
        assert world.log == []

    @pytest.mark.parametrize("fail_at", [0, 3])
    async def test_a_send_that_raises_oserror_is_a_client_that_left(
        self, fail_at: int, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Servers other than uvicorn may raise from `send` once the client is gone."""
        world = World()
        exchange = RawExchange(leave_after=None)
        original = exchange.send

        async def send(message: Message) -> None:
            if len(exchange.sent) == fail_at:
                raise ConnectionResetError("gone")
            await original(message)

        exchange.send = send  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR, logger="tether"):
            await exchange.run(create_app(world), "GET", "/api/stream/forever")
        assert len(exchange.sent) == fail_at
        assert world.log == ["open", "saw StreamAborted: the client disconnected", "close"]
        assert caplog.records == []

    async def test_a_heartbeat_that_raises_oserror_ends_the_stream(self) -> None:
        world = World()
        exchange = RawExchange(leave_after=None)
        original = exchange.send

        async def send(message: Message) -> None:
            if message.get("body") == b": ping\n\n":
                raise BrokenPipeError("gone")
            await original(message)

        exchange.send = send  # type: ignore[method-assign]
        await exchange.run(
            create_app(world, heartbeat=0.03), "GET", "/api/stream/ticks", b"n=1000&ms=10"
        )
        bodies = [m for m in exchange.sent if m["type"] == "http.response.body"]
        assert 1 <= len(bodies) < 1000
        assert all(m.get("more_body") for m in bodies)  # no `end`: the client is gone
        assert world.log == ["open", "saw StreamAborted: the client disconnected", "close"]

    async def test_stream_aborted_is_an_exception(self) -> None:
        assert issubclass(StreamAborted, Exception)


class TestTransport:
    async def test_mounted_by_default(self) -> None:
        api = create_api(World())
        app = FastAPI()
        api.mount(app)
        async with client_for(app) as client:
            assert data(await client.get("/api/stream/ticks?n=1")) == ["1"]

    def test_heartbeat_must_be_positive(self) -> None:
        with pytest.raises(ConfigurationError, match="heartbeat"):
            SseTransport(heartbeat=0)

    async def test_custom_path(self) -> None:
        api = create_api(World())
        app = FastAPI()
        api.mount(app, transports=[SseTransport(path="/events")])
        async with client_for(app) as client:
            assert data(await client.get("/api/events/ticks?n=1")) == ["1"]
            assert (await client.get("/api/stream/ticks?n=1")).status_code == 404

    def test_error_event(self) -> None:
        assert error_event(NotFound("x")) == (
            b'event: error\ndata: {"error":{"code":"NOT_FOUND","message":"x","details":null}}\n\n'
        )


class TestOpenApi:
    async def test_streams_documented_as_event_streams(self) -> None:
        app = create_app(World())
        async with client_for(app) as client:
            document = (await client.get("/openapi.json")).json()
        paths = document["paths"]
        ticks = paths["/api/stream/ticks"]
        assert set(ticks) == {"get", "post"}
        get = ticks["get"]
        assert get["operationId"] == "ticks__sse_get"
        assert [p["name"] for p in get["parameters"]] == ["n", "ms"]
        # Each event is one of data, end, error: exactly what the stream sends.
        events = get["responses"]["200"]["content"]["text/event-stream"]["itemSchema"]["oneOf"]
        item, end, failed = events
        assert item["required"] == ["event", "data", "id"]
        assert item["properties"]["event"] == {"const": "data"}
        assert item["properties"]["data"]["contentMediaType"] == "application/json"
        assert item["properties"]["data"]["contentSchema"]["type"] == "integer"
        assert end["properties"]["event"] == {"const": "end"}
        assert end["properties"]["data"]["const"] == "null"
        assert failed["properties"]["event"] == {"const": "error"}
        assert "`data` (id: its number from 1" in get["responses"]["200"]["description"]
        error_item = get["responses"]["422"]["content"]["text/event-stream"]["itemSchema"]
        assert error_item["properties"]["event"] == {"const": "error"}
        assert error_item["properties"]["data"]["contentSchema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }
        assert "ErrorEnvelope" in document["components"]["schemas"]
        assert get["x-tether"]["kind"] == "stream"
        post = ticks["post"]
        assert post["operationId"] == "ticks__sse"
        assert "requestBody" in post
        # Structured input: POST only.
        assert set(paths["/api/stream/points"]) == {"post"}
        points_200 = paths["/api/stream/points"]["post"]["responses"]["200"]["content"]
        assert points_200["text/event-stream"]["itemSchema"]["oneOf"][0]["properties"]["data"][
            "contentSchema"
        ] == {"$ref": "#/components/schemas/Point"}
        # Auth shows in the errors; no input: the body is `{}`, JSON as every POST's.
        staff = paths["/api/stream/staff_only"]["post"]
        assert staff["requestBody"]["required"] is True
        assert {"401", "403"} <= set(staff["responses"])
        # Queries and commands are not SSE's.
        assert "/api/stream/plain" not in paths
        # tether never answers FastAPI's own 422 shape.
        assert "HTTPValidationError" not in str(document)

    async def test_streams_are_not_documented_as_calls(self) -> None:
        """A stream answers 400 at {prefix}/call/{name}; OpenAPI only shows its SSE routes."""
        app = create_app(World())
        async with client_for(app) as client:
            assert (await client.post("/api/call/ticks", json={"n": 1})).status_code == 400
            paths = (await client.get("/openapi.json")).json()["paths"]
        assert "/api/stream/ticks" in paths
        assert "/api/call/ticks" not in paths
        assert "/api/call/plain" in paths

    async def test_query_constraints_aliases_and_a_dependency_named_params(self) -> None:
        api = Tether(prefix="/api")

        @api.stream
        async def limited(
            n: Annotated[int, Field(ge=1, le=10)],
            params: Annotated[str | None, Header()] = None,
            tags: Annotated[list[str], Field(alias="tag")] = [],  # noqa: B006
        ) -> AsyncIterator[int]:
            for i in range(n):
                yield i

        app = FastAPI()
        api.mount(app, transports=[SseTransport()])
        async with client_for(app) as client:
            document = (await client.get("/openapi.json")).json()
            assert data(await client.get("/api/stream/limited?n=2")) == ["0", "1"]
            assert (await client.get("/api/stream/limited?n=11")).status_code == 422
        limited_doc = document["paths"]["/api/stream/limited"]
        by_name = {p["name"]: p for p in limited_doc["get"]["parameters"]}
        assert by_name["n"]["schema"]["minimum"] == 1
        assert by_name["n"]["schema"]["maximum"] == 10
        assert by_name["params"]["in"] == "header"
        assert by_name["tag"]["in"] == "query"
        assert "requestBody" in limited_doc["post"]

    async def test_stream_added_after_mount_is_documented(self) -> None:
        api = Tether(prefix="/api")
        app = FastAPI()
        api.mount(app, transports=[SseTransport()])
        async with client_for(app) as client:
            assert "/api/stream/late" not in (await client.get("/openapi.json")).json()["paths"]

            @api.stream
            async def late() -> AsyncIterator[int]:
                yield 1

            assert "/api/stream/late" in (await client.get("/openapi.json")).json()["paths"]
            assert data(await client.get("/api/stream/late")) == ["1"]


async def read_into(received: list[Any], items: AsyncIterator[Any]) -> None:
    async for item in items:
        received.append(item)


class TestDocsExamples:
    async def test_sse_1(self) -> None:
        module = load("sse_1")
        (route,) = [
            r for r in module.app.router.routes if getattr(r, "path", "") == "/api/stream/{name}"
        ]
        assert isinstance(route.app, SseTransport)
        assert route.app.heartbeat == 5
        async with client_for(module.app) as client:
            response = await client.get("/api/stream/ticks", params={"n": 2})
            assert response.text == (
                "id: 1\nevent: data\ndata: 1\n\nid: 2\nevent: data\ndata: 2\n\n"
                "event: end\ndata: null\n\n"
            )
            pages = await client.post("/api/stream/pages", json={"of": "docs"})
            assert pages.text == (
                'id: 1\nevent: data\ndata: ["docs-1","docs-2"]\n\n'
                "event: error\ndata: "
                '{"error":{"code":"NOT_FOUND","message":"no more pages of docs",'
                '"details":{"of":"docs"}}}\n\n'
            )
            invalid = await client.get("/api/stream/ticks", params={"n": "many"})
            assert invalid.status_code == 422
            assert invalid.text.startswith('event: error\ndata: {"error":{"code":"VALIDATION_')
            assert (await client.post("/api/call/ticks", json={"n": 1})).status_code == 400

    async def test_sse_2(self) -> None:
        client_module = load("sse_2")
        app_module = load("sse_1")
        async with client_for(app_module.app) as client:
            items = [i async for i in client_module.read_stream(client, "ticks", n=3)]
            assert items == [1, 2, 3]
            received: list[Any] = []
            with pytest.raises(RuntimeError, match="NOT_FOUND: no more pages of x"):
                await read_into(received, client_module.read_stream(client, "pages", of="x"))
            assert received == [["x-1", "x-2"]]

    async def test_sse_2_interrupted_stream(self) -> None:
        client_module = load("sse_2")
        truncated = b": ping\n\nid: 1\nevent: data\ndata: 1\n\n"

        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=truncated)

        async with httpx.AsyncClient(
            transport=httpx.MockTransport(handler), base_url="http://test"
        ) as client:
            received: list[Any] = []
            with pytest.raises(RuntimeError, match="interrupted"):
                await read_into(received, client_module.read_stream(client, "ticks", n=3))
        assert received == [1]


class TestShutdown:
    """`Tether.shutdown()` ends open SSE streams: no server flag to poll, no `end` event."""

    @staticmethod
    def forever_app() -> tuple[FastAPI, Tether, list[str], SseTransport]:
        events: list[str] = []
        api = Tether()

        async def resource() -> AsyncIterator[None]:
            events.append("open")
            try:
                yield
            finally:
                events.append("close")

        @api.stream
        async def forever(_: None = Depends(resource)) -> AsyncIterator[int]:
            number = 0
            while True:
                number += 1
                yield number
                await anyio.sleep(0.01)

        app = FastAPI()
        sse = SseTransport()
        api.mount(app, transports=[sse])
        return app, api, events, sse

    @staticmethod
    def scope(path: str) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"test")],
            "client": ("127.0.0.1", 1),
            "server": ("test", 80),
        }

    async def test_an_open_stream_ends_without_end_and_closes_its_dependencies(self) -> None:
        app, api, events, sse = self.forever_app()
        sent: list[Message] = []
        first_item = anyio.Event()
        client_stays = anyio.Event()

        async def receive() -> Message:
            await client_stays.wait()  # the client never leaves
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)
            if b"event: data" in message.get("body", b""):
                first_item.set()

        async with anyio.create_task_group() as group:
            group.start_soon(app, self.scope("/api/stream/forever"), receive, send)
            with anyio.fail_after(5):
                await first_item.wait()
            assert sse.streams == 1
            await api.shutdown()
            with anyio.fail_after(5):
                while sse.streams:  # noqa: ASYNC110 - polled: the transport has no event
                    await anyio.sleep(0.01)
            client_stays.set()
        assert sent[0]["status"] == 200
        assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
        body = b"".join(m.get("body", b"") for m in sent[1:])
        assert b"event: end" not in body
        assert b"event: error" not in body
        assert events == ["open", "close"]

    async def test_a_stream_opened_after_shutdown_ends_as_it_starts(self) -> None:
        app, api, events, sse = self.forever_app()
        await api.shutdown()
        assert sse.closing
        sent: list[Message] = []
        client_stays = anyio.Event()

        async def receive() -> Message:
            await client_stays.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            sent.append(message)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(app, self.scope("/api/stream/forever"), receive, send)
                while not sent or sent[-1].get("more_body", True):  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                client_stays.set()
        assert sent[0]["status"] == 200
        assert sent[1:] == [{"type": "http.response.body", "body": b"", "more_body": False}]
        assert events == ["open", "close"]
