import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Request, Response, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from pydantic import BaseModel, Field
from starlette.types import Message

from tests._core_helpers import asgi_client, mounted
from tether import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Tether,
    TetherError,
    Unauthorized,
)
from tether.transport import TransportHandle
from tether.transports import HttpTransport, default_transports
from tether.transports._body import (
    MAX_DEPTH,
    ClientDisconnected,
    has_body,
    header,
    parse_json,
    read_body,
    require_json_content_type,
)
from tether.transports._disconnect import run_unless_disconnected
from tether.transports.http import encode_error


class Todo(BaseModel):
    id: int
    title: str = "untitled"


def make_app(**tether_options: Any) -> tuple[Tether, FastAPI]:
    api = Tether(**tether_options)

    @api.query
    async def add(a: int, b: int = 0) -> int:
        return a + b

    @api.query
    def total(values: list[int], scale: float = 1.0, label: str | None = None) -> list[Any]:
        return [sum(values) * scale, label]

    @api.query
    def get_todo(todo: Todo) -> Todo:
        return todo

    @api.query
    def nothing() -> str:
        return "nothing"

    @api.command
    def create(title: str) -> Todo:
        return Todo(id=1, title=title)

    @api.command
    def echo(value: Any = None) -> Any:
        return value

    return api, mounted(api)


def error(code: str, message: str) -> dict[str, Any]:
    """The error body of a built-in error without details."""
    return {"code": code, "message": message, "details": None}


async def post_raw(
    app: FastAPI, path: str, content: bytes, content_type: str | None = "application/json"
) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    async with asgi_client(app) as client:
        return await client.post(path, content=content, headers=headers)


# -- calls ---------------------------------------------------------------------------------


async def test_post_call() -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        response = await client.post("/api/call/add", json={"a": 2, "b": 3})
    assert response.status_code == 200
    assert response.json() == {"result": 5}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))


async def test_post_with_model_and_list_params() -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        response = await client.post("/api/call/get_todo", json={"todo": {"id": 3}})
        assert response.json() == {"result": {"id": 3, "title": "untitled"}}
        response = await client.post("/api/call/total", json={"values": [1, 2, 3]})
        assert response.json() == {"result": [6.0, None]}


async def test_get_query_with_scalar_and_list_params() -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        response = await client.get("/api/call/add", params={"a": "4", "b": "5"})
        assert (response.status_code, response.json()) == (200, {"result": 9})
        response = await client.get("/api/call/add?a=4")
        assert response.json() == {"result": 4}
        response = await client.get("/api/call/total?values=1&values=2&scale=0.5&label=x")
        assert response.json() == {"result": [1.5, "x"]}
        response = await client.get("/api/call/total?values=7")
        assert response.json() == {"result": [7.0, None]}
        response = await client.get("/api/call/total", params={"values": ["%20", "2"]})
        assert response.status_code == 422
        response = await client.get("/api/call/nothing")
        assert response.json() == {"result": "nothing"}
        response = await client.get("/api/call/add?a=%C3%A9")
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["loc"] == ["a"]


async def test_get_validation_errors() -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        response = await client.get("/api/call/add?a=1&a=2")
        assert response.status_code == 422
        assert response.json() == {
            "error": {
                "code": "VALIDATION_FAILED",
                "message": "Invalid parameters",
                "details": [
                    {"loc": ["a"], "msg": "Parameter given more than once", "type": "duplicate"}
                ],
            }
        }
        response = await client.get("/api/call/add?a=1&c=2")
        assert response.status_code == 422
        assert response.json()["error"]["details"][0]["type"] == "extra_forbidden"
        response = await client.get("/api/call/add")
        assert response.json()["error"]["details"][0] == {
            "loc": ["a"],
            "msg": "Field required",
            "type": "missing",
        }


async def test_get_on_a_command_is_405() -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        response = await client.get("/api/call/create?title=x")
    assert response.status_code == 405
    assert response.json() == {
        "error": error("METHOD_NOT_ALLOWED", "GET is not allowed for create; use POST")
    }
    assert response.headers["allow"] == "POST"


async def test_get_on_a_query_with_a_model_param_is_405() -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        response = await client.get("/api/call/get_todo?todo=1")
    assert response.status_code == 405
    body = response.json()
    assert body["error"] == error(
        "METHOD_NOT_ALLOWED", "get_todo takes structured input; call it with POST and a JSON body"
    )
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_other_methods_are_405(method: str) -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        query = await client.request(method, "/api/call/add", json={"a": 1})
        command = await client.request(method, "/api/call/create", json={"title": "t"})
    assert query.status_code == command.status_code == 405
    assert query.json()["error"]["message"] == f"{method} is not allowed for add; use GET, POST"
    assert command.json()["error"]["message"] == f"{method} is not allowed for create; use POST"
    assert query.headers["allow"] == "GET, POST"
    assert command.headers["allow"] == "POST"
    async with asgi_client(app) as client:
        structured = await client.request(method, "/api/call/get_todo", json={})
    assert structured.headers["allow"] == "POST"
    assert (
        structured.json()["error"]["message"] == f"{method} is not allowed for get_todo; use POST"
    )


async def test_only_405_carries_allow() -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        assert "allow" not in (await client.post("/api/call/add", json={"a": 1})).headers
        assert "allow" not in (await client.post("/api/call/add", json={})).headers


async def test_a_stream_operation_is_not_called_through_call() -> None:
    api = Tether()

    @api.stream
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    app = FastAPI()
    api.mount(app, transports=[HttpTransport()])
    async with asgi_client(app) as client:
        for method in ("GET", "POST", "PUT"):
            response = await client.request(method, "/api/call/ticks", json={"n": 1})
            assert response.status_code == 400
            assert response.json() == {
                "error": {
                    "code": "BAD_REQUEST",
                    "message": "ticks is a stream: read it from /api/stream/ticks",
                    "details": {"operation": "ticks", "kind": "stream"},
                }
            }
        doc = (await client.get("/openapi.json")).json()
    # The HTTP transport does not document a stream as a /call/ route.
    assert "/api/call/ticks" not in doc["paths"]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_operation_is_404(method: str) -> None:
    _, app = make_app()
    async with asgi_client(app) as client:
        response = await client.request(
            method, "/api/call/nope", json={} if method == "POST" else None
        )
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "NOT_FOUND",
            "message": "Unknown operation 'nope'",
            "details": {"operation": "nope"},
        }
    }


async def test_tether_error_raised_by_the_operation() -> None:
    api = Tether()

    class Gone(NotFound):
        code = "TODO_GONE"
        status = 410

    @api.command
    def delete(id: int) -> None:
        raise Gone("deleted already", details={"id": id})

    app = mounted(api)
    async with asgi_client(app) as client:
        response = await client.post("/api/call/delete", json={"id": 4})
    assert response.status_code == 410
    assert response.json() == {
        "error": {"code": "TODO_GONE", "message": "deleted already", "details": {"id": 4}}
    }


async def test_error_with_unserializable_details_still_answers_an_envelope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Tether()

    @api.command
    def bad() -> None:
        raise Conflict("conflict", details={"obj": object()})

    app = mounted(api)
    with caplog.at_level("ERROR", logger="tether"):
        async with asgi_client(app) as client:
            response = await client.post("/api/call/bad", json={})
    assert response.status_code == 409
    assert response.json() == {
        "error": {"code": "CONFLICT", "message": "conflict", "details": None}
    }
    assert len(caplog.records) == 1


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"{",
        b'{"a": 1,}',
        b"{'a': 1}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e999}',
        b"NaN",
        b'{"a": "\xff\xfe"}',
        b"\xef\xbb\xbf\xff",
        b'{"a": 1}' + b"\x00",
        b'{"a": ' * 10_000 + b"1" + b"}" * 10_000,
        b"[" * 10_000 + b"]" * 10_000,
    ],
    ids=[
        "text",
        "truncated",
        "trailing-comma",
        "single-quotes",
        "nan",
        "infinity",
        "minus-infinity",
        "1e999",
        "bare-nan",
        "non-utf8",
        "bom-garbage",
        "trailing-nul",
        "deep-object",
        "deep-array",
    ],
)
async def test_malformed_json_is_400(content: bytes) -> None:
    _, app = make_app()
    response = await post_raw(app, "/api/call/echo", content)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "BAD_REQUEST"
    assert body["error"]["message"].startswith("Malformed JSON")


@pytest.mark.parametrize(
    ("content", "received"),
    [(b"[1, 2]", "list"), (b'"a"', "str"), (b"1", "int"), (b"null", "NoneType"), (b"true", "bool")],
)
async def test_body_that_is_not_an_object_is_400(content: bytes, received: str) -> None:
    _, app = make_app()
    response = await post_raw(app, "/api/call/add", content)
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "BAD_REQUEST",
            "message": "The request body must be a JSON object of parameters",
            "details": {"received": received},
        }
    }


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json"],
)
async def test_wrong_content_type_is_415(content_type: str) -> None:
    _, app = make_app()
    response = await post_raw(app, "/api/call/add", b'{"a": 1}', content_type)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.api+json",
    ],
)
async def test_json_content_types_are_accepted(content_type: str) -> None:
    _, app = make_app()
    response = await post_raw(app, "/api/call/add", b'{"a": 1, "b": 1}', content_type)
    assert (response.status_code, response.json()) == (200, {"result": 2})


@pytest.mark.parametrize("content", [b'{"value": 1}', b""], ids=["body", "empty"])
async def test_a_post_without_content_type_is_415(content: bytes) -> None:
    # A cross-site page can POST a body of no type without a CORS preflight (a "simple"
    # request); an empty one too: a command without parameters is a target as well.
    api, app = make_app()
    ran: list[object] = []

    @api.command
    def act() -> str:
        ran.append(True)
        return "acted"

    for path in ("/api/call/echo", "/api/call/act"):
        response = await post_raw(app, path, content, None)
        assert response.status_code == 415
        assert response.json() == {
            "error": error(
                "UNSUPPORTED_MEDIA_TYPE",
                "Content-Type must be application/json; the request has none",
            )
        }
    assert ran == []


async def test_empty_body_means_no_params() -> None:
    _, app = make_app()
    response = await post_raw(app, "/api/call/nothing", b"")
    assert (response.status_code, response.json()) == (200, {"result": "nothing"})
    response = await post_raw(app, "/api/call/add", b"")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"] == ["a"]


async def test_utf8_body_is_decoded() -> None:
    _, app = make_app()
    response = await post_raw(app, "/api/call/echo", '{"value": "héllo ✓"}'.encode())
    assert response.json() == {"result": "héllo ✓"}


async def test_body_over_the_limit_is_413() -> None:
    _, app = make_app(max_body_size=64)
    async with asgi_client(app) as client:
        ok = await client.post("/api/call/echo", json={"value": "x" * 40})
        assert ok.status_code == 200
        response = await client.post("/api/call/echo", json={"value": "x" * 100})
    assert response.status_code == 413
    assert response.json() == {
        "error": {
            "code": "PAYLOAD_TOO_LARGE",
            "message": "Request body is 112 bytes; the limit is 64",
            "details": {"limit": 64},
        }
    }


async def test_streamed_body_over_the_limit_is_413() -> None:
    # No Content-Length (a chunked upload) and a body that never ends: the 413 can only
    # come from counting the bytes as they arrive.
    _, app = make_app(max_body_size=64)
    receive = CountingReceive(b"x" * 10)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/call/echo",
        "raw_path": b"/api/call/echo",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "server": ("test", 80),
        "client": ("test", 1),
    }
    await app(scope, receive, send)
    assert receive.calls == 7
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == {
        "code": "PAYLOAD_TOO_LARGE",
        "message": "Request body exceeds the limit of 64 bytes",
        "details": {"limit": 64},
    }


async def test_invalid_content_length_is_400() -> None:
    api, _ = make_app()
    transport = HttpTransport()
    sent: list[Message] = []
    transport.handle = TransportHandle(api)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/call/add",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"abc")],
        "path_params": {"name": "add"},
        "query_string": b"",
    }

    async def receive() -> Message:
        raise AssertionError("body must not be read")

    async def send(message: Message) -> None:
        sent.append(message)

    await transport(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["message"] == "Invalid Content-Length header"


async def test_client_disconnect_while_reading_sends_nothing() -> None:
    api, _ = make_app()
    transport = HttpTransport()
    transport.handle = TransportHandle(api)
    sent: list[Message] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/call/add",
        "headers": [(b"content-type", b"application/json")],
        "path_params": {"name": "add"},
        "query_string": b"",
    }
    messages: list[Message] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await transport(scope, receive, send)
    assert sent == []
    assert messages == []


# -- _body ------------------------------------------------------------------------------------


def test_header_lookup() -> None:
    scope = {"headers": [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]}
    assert header(scope, b"a") == b"1"
    assert header(scope, b"b") == b"2"
    assert header(scope, b"c") is None


def test_require_json_content_type() -> None:
    require_json_content_type({"headers": [(b"content-type", b"application/problem+json")]})
    with pytest.raises(TetherError) as info:
        require_json_content_type({"headers": []})
    assert info.value.status == 415
    with pytest.raises(TetherError) as info:
        require_json_content_type({"headers": [(b"content-type", b"text/json")]})
    assert info.value.status == 415
    assert info.value.detail_message == "Content-Type must be application/json, not 'text/json'"


class CountingReceive:
    """An endless request body: it proves the reader stops instead of reading it all."""

    def __init__(self, chunk: bytes, chunks: int | None = None) -> None:
        self.chunk = chunk
        self.chunks = chunks
        self.calls = 0

    async def __call__(self) -> Message:
        self.calls += 1
        more = self.chunks is None or self.calls < self.chunks
        return {"type": "http.request", "body": self.chunk, "more_body": more}


async def test_read_body_refuses_declared_length_without_reading() -> None:
    receive = CountingReceive(b"x" * 10)
    scope = {"headers": [(b"content-length", b"1000000000")]}
    with pytest.raises(PayloadTooLarge) as info:
        await read_body(scope, receive, 100)
    assert receive.calls == 0
    assert info.value.details == {"limit": 100}


async def test_read_body_stops_at_the_limit_of_an_endless_body() -> None:
    receive = CountingReceive(b"x" * 10)  # never ends
    with pytest.raises(PayloadTooLarge):
        await read_body({"headers": []}, receive, 100)
    assert receive.calls == 11


async def test_read_body_stops_when_the_declared_length_lies() -> None:
    receive = CountingReceive(b"x" * 10)
    with pytest.raises(PayloadTooLarge):
        await read_body({"headers": [(b"content-length", b"5")]}, receive, 50)
    assert receive.calls == 6


async def test_read_body_joins_chunks_and_accepts_the_limit_exactly() -> None:
    receive = CountingReceive(b"abcd", chunks=25)
    assert await read_body({"headers": []}, receive, 100) == b"abcd" * 25
    single = CountingReceive(b"abc", chunks=1)
    assert await read_body({"headers": [(b"content-length", b"3")]}, single, 3) == b"abc"


async def test_read_body_empty_and_disconnect() -> None:
    async def empty() -> Message:
        return {"type": "http.request"}

    assert await read_body({"headers": []}, empty, 10) == b""

    async def gone() -> Message:
        return {"type": "http.disconnect"}

    with pytest.raises(BadRequest, match="Client disconnected"):
        await read_body({"headers": []}, gone, 10)


class StalledReceive:
    """A body whose first `parts` arrive at once, after which nothing more ever comes."""

    def __init__(self, *parts: bytes) -> None:
        self.parts = list(parts)

    async def __call__(self) -> Message:
        if not self.parts:
            await anyio.sleep_forever()
        return {"type": "http.request", "body": self.parts.pop(0), "more_body": True}


@pytest.mark.parametrize("parts", [(), (b"{",)], ids=["headers-only", "one-byte"])
async def test_read_body_times_out_a_stalled_body(parts: tuple[bytes, ...]) -> None:
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        await read_body({"headers": []}, StalledReceive(*parts), 100, 0.2)
    assert 0.2 <= time.monotonic() - started < 2
    assert (info.value.status, info.value.code) == (408, "REQUEST_TIMEOUT")
    assert info.value.details == {"timeout": 0.2}


async def test_read_body_deadline_counts_the_whole_body() -> None:
    # A byte every 50 ms never stalls long, but the whole body is still due in 0.3 s.
    async def trickle() -> Message:
        await anyio.sleep(0.05)
        return {"type": "http.request", "body": b" ", "more_body": True}

    started = time.monotonic()
    with pytest.raises(RequestTimeout):
        await read_body({"headers": []}, trickle, 1000, 0.3)
    assert time.monotonic() - started < 1


async def test_a_body_read_in_time_leaves_no_deadline_behind() -> None:
    # Whole at once (no timer armed), and in two parts (armed while waiting): once read,
    # nothing cancels the task later.
    async def whole() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    parts: list[Message] = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.request", "body": b"}", "more_body": False},
    ]

    async def later() -> Message:
        await anyio.sleep(0.01)
        return parts.pop(0)

    assert await read_body({"headers": []}, whole, 10, 0.05) == b"{}"
    assert await read_body({"headers": []}, later, 10, 0.05) == b"{}"
    with anyio.fail_after(2):
        await anyio.sleep(0.2)  # past both deadlines: not cancelled


def test_has_body() -> None:
    assert has_body({"headers": [(b"content-length", b"10")]})
    assert has_body({"headers": [(b"transfer-encoding", b"chunked")]})
    assert not has_body({"headers": [(b"content-length", b"0")]})
    assert not has_body({"headers": [(b"host", b"x")]})


async def test_a_stalled_body_holds_no_slot_and_gets_408_with_connection_close() -> None:
    api, _ = make_app(max_in_flight=1, body_timeout=0.2)
    transport = HttpTransport()
    transport.handle = TransportHandle(api)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/call/add",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"50")],
        "path_params": {"name": "add"},
        "query_string": b"",
    }
    async with anyio.create_task_group() as group:
        group.start_soon(transport, scope, StalledReceive(b"{"), send)
        await anyio.sleep(0.05)
        assert api.admission.in_flight == 0  # the one slot is free while the body is due
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"]["code"] == "REQUEST_TIMEOUT"


async def test_an_early_413_says_connection_close_and_a_read_body_does_not() -> None:
    _, app = make_app(max_body_size=10)
    async with asgi_client(app) as client:
        too_large = await client.post("/api/call/echo", json={"value": "x" * 20})
        invalid = await client.post("/api/call/add", json={"a": "x"})
    assert (too_large.status_code, too_large.headers["connection"]) == (413, "close")
    assert invalid.status_code == 422
    assert "connection" not in invalid.headers


class Disconnecting:
    """A request whose body has been read, and whose client leaves after `after` seconds."""

    def __init__(self, after: float) -> None:
        self.after = after

    async def __call__(self) -> Message:
        await anyio.sleep(self.after)
        return {"type": "http.disconnect"}


async def test_run_unless_disconnected_cancels_the_call_when_the_client_leaves() -> None:
    seen: list[str] = []

    async def call() -> str:
        try:
            await anyio.sleep(10)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise
        return "done"

    started = time.monotonic()
    with pytest.raises(ClientDisconnected):
        await run_unless_disconnected(Disconnecting(0.05), call())
    assert time.monotonic() - started < 2
    assert seen in (["CancelledError"], ["Cancelled"])  # asyncio's or trio's
    with anyio.fail_after(2):
        await anyio.sleep(0.01)  # the task is not left cancelled


async def test_run_unless_disconnected_returns_results_and_errors_untouched() -> None:
    async def quick() -> int:
        await anyio.sleep(0.01)
        return 7

    async def failing() -> int:
        await anyio.sleep(0.01)
        raise NotFound("gone")

    assert await run_unless_disconnected(Disconnecting(0.05), quick()) == 7
    with pytest.raises(NotFound):
        await run_unless_disconnected(Disconnecting(0.05), failing())
    # Past the moment the clients left: nothing watches any more, nothing is cancelled.
    with anyio.fail_after(2):
        await anyio.sleep(0.2)


async def test_run_unless_disconnected_leaves_outer_cancellation_alone() -> None:
    with anyio.move_on_after(0.05) as scope:
        await run_unless_disconnected(Disconnecting(10), anyio.sleep(10))
    assert scope.cancelled_caught


async def test_first_step_then_resume_behaves_like_await() -> None:
    from tether.transports._step import first_step, resume

    async def at_once() -> int:
        return 1

    async def after_a_wait() -> int:
        await anyio.sleep(0.01)
        return 2

    async def fails_after_a_wait() -> int:
        await anyio.sleep(0.01)
        raise NotFound("x")

    assert first_step(at_once()) == (1, None)
    result, waiting = first_step(after_a_wait())
    assert result is None
    assert waiting is not None
    assert await resume(waiting) == 2
    _, waiting = first_step(fails_after_a_wait())
    assert waiting is not None
    with pytest.raises(NotFound):
        await resume(waiting)
    # A cancellation reaches the suspended awaitable through `resume`.
    seen: list[str] = []

    async def forever() -> None:
        try:
            await anyio.sleep(10)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise

    with anyio.move_on_after(0.05) as scope:
        _, waiting = first_step(forever())
        assert waiting is not None
        await resume(waiting)
    assert scope.cancelled_caught
    assert seen in (["CancelledError"], ["Cancelled"])


def test_parse_json() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    for bad in (b"[" * 1025 + b"]" * 1025, b"NaN", b"1e400", b"\xff"):
        with pytest.raises(BadRequest, match="Malformed JSON"):
            parse_json(bad)


@pytest.mark.parametrize(
    ("opening", "closing"), [(b"[", b"]"), (b'{"a":', b"}"), (b'[{"a":', b"}]")]
)
def test_parse_json_depth_limit(opening: bytes, closing: bytes) -> None:
    def nested(levels: int) -> bytes:
        inner = b"[]" if opening == b"[" else b"1"
        return opening * levels + inner + closing * levels

    depth_of = {b"[": 1, b'{"a":': 1, b'[{"a":': 2}[opening]
    ok = (MAX_DEPTH - 1) // depth_of
    assert parse_json(nested(ok)) is not None
    with pytest.raises(BadRequest, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json(nested(MAX_DEPTH // depth_of + 1))
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    with pytest.raises(BadRequest):
        parse_json(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    # Many containers side by side are not deep.
    wide = b"[" + b",".join([b'{"a": [1, {"b": []}]}'] * 1000) + b"]"
    assert len(parse_json(wide)) == 1000


@pytest.mark.parametrize("levels", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
async def test_deep_input_that_is_accepted_is_also_returned(levels: int) -> None:
    # Whatever depth the parser accepts, an operation echoing it must not fail with 500.
    _, app = make_app()
    value = b"[" * levels + b"]" * levels
    response = await post_raw(app, "/api/call/echo", b'{"value": ' + value + b"}")
    if levels + 1 <= MAX_DEPTH:
        assert response.status_code == 200
        assert response.content == b'{"result":' + value + b"}"
    else:
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "BAD_REQUEST"


def test_encode_error() -> None:
    assert json.loads(encode_error(NotFound("x", details=[1]))) == {
        "error": {"code": "NOT_FOUND", "message": "x", "details": [1]}
    }


def test_default_transports_are_fresh() -> None:
    first, second = default_transports(), default_transports()
    assert any(isinstance(t, HttpTransport) for t in first)
    assert all(a is not b for a, b in zip(first, second, strict=True))


# -- OpenAPI ----------------------------------------------------------------------------------


class OutOfStock(Conflict):
    code = "OUT_OF_STOCK"
    message = "Out of stock"


class Teapot(TetherError):
    code = "TEAPOT"
    status = 418
    message = "I'm a teapot"


oauth2 = OAuth2PasswordBearer(tokenUrl="token")


def current_user(token: Annotated[str, Depends(oauth2)]) -> str:
    return token


def tenant(x_tenant: Annotated[str, Header()] = "main") -> str:
    return x_tenant


def scoped(security_scopes: SecurityScopes) -> list[str]:
    return security_scopes.scopes


def documented_app() -> FastAPI:
    api = Tether(user=Depends(current_user), dependencies=[Depends(tenant)], tags=["tethered"])

    @api.query(auth=True, errors=[NotFound], tags=["todos"])
    async def get_todo(
        id: Annotated[int, Field(ge=1, description="The todo's id")],
        request: Request,
        tasks: BackgroundTasks,
        response: Response,
        x_trace: Annotated[str | None, Header()] = None,
    ) -> Todo:
        """Fetch one todo.

        With a longer description.
        """
        return Todo(id=id)

    @api.command(
        name="todos.add",
        auth="staff",
        errors=[OutOfStock, Teapot, Conflict],
        summary="Add a todo",
        deprecated=True,
    )
    def add_todo(todo: Todo, scopes: list[str] = Security(scoped, scopes=["write"])) -> Todo:
        return todo

    @api.query(description="Lists todos.")
    def list_todos(limit: int = 10, tags: list[str] | None = None, json: str = "") -> list[Todo]:
        return []

    @api.command
    def ping() -> None:
        pass

    return mounted(api)


async def openapi_of(app: FastAPI) -> dict[str, Any]:
    async with asgi_client(app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


class TestOpenAPI:
    async def test_every_operation_is_a_route_with_its_name_as_operation_id(self) -> None:
        doc = await openapi_of(documented_app())
        paths = doc["paths"]
        expected = {
            "/api/call/get_todo": {"post": "get_todo", "get": "get_todo__get"},
            "/api/call/todos.add": {"post": "todos.add"},
            "/api/call/list_todos": {"post": "list_todos", "get": "list_todos__get"},
            "/api/call/ping": {"post": "ping"},
        }
        for path, methods in expected.items():
            assert {m: op["operationId"] for m, op in paths[path].items()} == methods

    async def test_named_request_and_response_models(self) -> None:
        doc = await openapi_of(documented_app())
        schemas = doc["components"]["schemas"]
        post = doc["paths"]["/api/call/todos.add"]["post"]
        assert post["requestBody"]["required"] is True
        assert post["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/TodosAddParams"
        }
        assert post["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/TodosAddResult"
        }
        assert schemas["TodosAddParams"]["properties"] == {
            "todo": {"$ref": "#/components/schemas/Todo"}
        }
        assert schemas["TodosAddParams"]["additionalProperties"] is False
        assert schemas["TodosAddResult"]["properties"] == {
            "result": {"$ref": "#/components/schemas/Todo"}
        }
        assert schemas["TodosAddResult"]["required"] == ["result"]
        assert schemas["GetTodoParams"]["properties"]["id"] == {
            "type": "integer",
            "minimum": 1,
            "description": "The todo's id",
            "title": "Id",
        }
        assert schemas["ListTodosResult"]["properties"]["result"] == {
            "type": "array",
            "items": {"$ref": "#/components/schemas/Todo"},
            "title": "Result",
        }
        # Every POST carries a JSON body (415 without a JSON Content-Type), `{}` at least.
        list_post = doc["paths"]["/api/call/list_todos"]["post"]
        assert list_post["requestBody"]["required"] is True
        assert doc["paths"]["/api/call/ping"]["post"]["requestBody"]["required"] is True

    async def test_description_summary_tags_deprecated(self) -> None:
        doc = await openapi_of(documented_app())
        get_todo = doc["paths"]["/api/call/get_todo"]["post"]
        assert get_todo["description"] == "Fetch one todo.\n\nWith a longer description."
        assert get_todo["summary"] == "get_todo"
        assert get_todo["tags"] == ["tethered", "todos"]
        assert "deprecated" not in get_todo
        add = doc["paths"]["/api/call/todos.add"]["post"]
        assert add["summary"] == "Add a todo"
        assert add["deprecated"] is True
        assert "description" not in add
        assert doc["paths"]["/api/call/list_todos"]["get"]["description"] == "Lists todos."

    async def test_x_tether_extension(self) -> None:
        doc = await openapi_of(documented_app())
        assert doc["paths"]["/api/call/get_todo"]["get"]["x-tether"] == {
            "name": "get_todo",
            "kind": "query",
            "auth": True,
            "errors": [
                "BAD_REQUEST",
                "VALIDATION_FAILED",
                "UNAUTHORIZED",
                "FORBIDDEN",
                "NOT_FOUND",
                "INTERNAL_ERROR",
            ],
        }
        assert doc["paths"]["/api/call/todos.add"]["post"]["x-tether"]["auth"] == "staff"
        assert doc["paths"]["/api/call/todos.add"]["post"]["x-tether"]["kind"] == "command"
        assert doc["paths"]["/api/call/ping"]["post"]["x-tether"] == {
            "name": "ping",
            "kind": "command",
            "auth": False,
            "errors": ["BAD_REQUEST", "VALIDATION_FAILED", "INTERNAL_ERROR"],
        }

    async def test_custom_policy_is_described(self) -> None:
        api = Tether(user=Depends(current_user))

        @api.query(auth=lambda user, ctx: True)
        def op() -> None:
            pass

        doc = await openapi_of(mounted(api))
        assert doc["paths"]["/api/call/op"]["post"]["x-tether"]["auth"] == "custom"

    async def test_documented_errors(self) -> None:
        doc = await openapi_of(documented_app())
        responses = doc["paths"]["/api/call/todos.add"]["post"]["responses"]
        assert sorted(responses) == ["200", "400", "401", "403", "409", "415", "418", "422", "500"]
        envelope = {"$ref": "#/components/schemas/ErrorEnvelope"}
        for status in ("400", "401", "403", "409", "418", "422", "500"):
            assert responses[status]["content"]["application/json"]["schema"] == envelope
        assert (
            responses["409"]["description"] == "`OUT_OF_STOCK`: Out of stock; `CONFLICT`: Conflict"
        )
        assert responses["418"]["description"] == "`TEAPOT`: I'm a teapot"
        assert responses["401"]["description"] == "`UNAUTHORIZED`: Authentication required"
        assert doc["components"]["schemas"]["ErrorBody"]["required"] == ["code", "message"]
        assert "HTTPValidationError" not in json.dumps(doc["paths"]["/api/call/todos.add"])

    async def test_header_parameters_and_security(self) -> None:
        doc = await openapi_of(documented_app())
        for method in ("post", "get"):
            route = doc["paths"]["/api/call/get_todo"][method]
            headers = {p["name"] for p in route["parameters"] if p["in"] == "header"}
            # The operation's own Header, the Tether-level dependency's header.
            assert headers == {"x-trace", "x-tenant"}
            assert route["security"] == [{"OAuth2PasswordBearer": []}]
        get = doc["paths"]["/api/call/get_todo"]["get"]
        assert [p["name"] for p in get["parameters"] if p["in"] == "query"] == ["id"]
        assert doc["components"]["securitySchemes"]["OAuth2PasswordBearer"]["type"] == "oauth2"
        list_get = doc["paths"]["/api/call/list_todos"]["get"]
        assert [p["name"] for p in list_get["parameters"] if p["in"] == "query"] == [
            "limit",
            "tags",
            "json",
        ]

    async def test_query_parameters_document_what_the_input_model_reads(self) -> None:
        api = Tether()

        @api.query
        def search(
            text: Annotated[str, Field(min_length=2, max_length=5, description="What")],
            page: Annotated[int, Field(ge=1)] = 1,
            tags: list[str] = Field(default_factory=list),
            sort: Annotated[str, Field(alias="orderBy")] = "id",
            json: bool = False,
        ) -> int:
            return page

        app = mounted(api)
        doc = await openapi_of(app)
        params = {p["name"]: p for p in doc["paths"]["/api/call/search"]["get"]["parameters"]}
        assert list(params) == ["text", "page", "tags", "orderBy", "json"]
        assert params["text"]["required"] is True
        assert params["text"]["description"] == "What"
        assert params["text"]["schema"]["minLength"] == 2
        assert params["text"]["schema"]["maxLength"] == 5
        assert params["page"]["schema"]["minimum"] == 1
        assert params["page"]["required"] is False
        # A default_factory makes the input optional.
        assert params["tags"]["required"] is False
        assert params["orderBy"]["schema"]["default"] == "id"
        # The documented names are the ones a GET call really takes.
        async with asgi_client(app) as client:
            response = await client.get(
                "/api/call/search", params={"text": "ab", "page": 2, "orderBy": "x", "json": 1}
            )
            assert response.json() == {"result": 2}
            response = await client.get("/api/call/search", params={"text": "ab", "page": 0})
            assert response.status_code == 422

    async def test_no_internal_parameter_leaks(self) -> None:
        doc = await openapi_of(documented_app())
        text = json.dumps(doc)
        assert "__tether" not in text
        assert "tether_field_" not in text
        names: set[str] = set()
        for methods in doc["paths"].values():
            for route in methods.values():
                names.update(p["name"] for p in route.get("parameters", ()))
        for schema_name, schema in doc["components"]["schemas"].items():
            if schema_name.endswith(("Params", "Result")):  # the operations' own models
                names.update(schema.get("properties", {}))
        for internal in (
            "request",
            "tasks",
            "response",
            "self",
            "security_scopes",
            "scopes",
            "params",
        ):
            assert internal not in names, internal
        titles = {s.get("title") for s in doc["components"]["schemas"].values()}
        assert "Params" not in titles

    async def test_swagger_ui_is_served(self) -> None:
        async with asgi_client(documented_app()) as client:
            response = await client.get("/docs")
        assert response.status_code == 200
        assert "swagger-ui" in response.text

    async def test_documentation_routes_never_match(self) -> None:
        # Dispatch goes through the single call route: a path that only a documentation
        # route has (a trailing segment) is not served.
        app = documented_app()
        async with asgi_client(app) as client:
            response = await client.post("/api/call/ping/extra", json={})
        assert response.status_code == 404


async def test_dependency_named_params_does_not_clash_with_the_documented_body() -> None:
    api = Tether()

    @api.command
    def f(a: int, params: Annotated[str, Header()], _params: Annotated[str, Header()]) -> str:
        return f"{a}{params}{_params}"

    app = mounted(api)
    doc = await openapi_of(app)
    route = doc["paths"]["/api/call/f"]["post"]
    assert {p["name"] for p in route["parameters"]} == {"params", "-params"}
    assert route["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FParams"
    }
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/call/f", json={"a": 1}, headers={"params": "p", "-params": "q"}
        )
    assert response.json() == {"result": "1pq"}


async def test_response_dependency_cannot_break_the_body_headers() -> None:
    api = Tether()

    @api.command
    def f(response: Response) -> str:
        response.headers["content-length"] = "999"
        response.headers["content-type"] = "text/html"
        response.headers["x-kept"] = "1"
        return "body"

    app = mounted(api)
    async with asgi_client(app) as client:
        response = await client.post("/api/call/f", json={})
    assert response.json() == {"result": "body"}
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers.get_list("content-length") == [str(len(response.content))]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-kept"] == "1"


@pytest.mark.parametrize("status", [204, 304])
async def test_statuses_without_a_body(status: int) -> None:
    api = Tether()

    @api.command
    def f(response: Response) -> None:
        response.status_code = status
        response.headers["x-kept"] = "1"

    app = mounted(api)
    async with asgi_client(app) as client:
        response = await client.post("/api/call/f", json={})
    assert response.status_code == status
    assert response.content == b""
    assert "content-length" not in response.headers
    assert "content-type" not in response.headers
    assert response.headers["x-kept"] == "1"


async def test_error_headers_are_sent() -> None:
    api = Tether()

    @api.query
    def guarded() -> None:
        raise Unauthorized(
            headers={"WWW-Authenticate": 'Bearer realm="api"', "Content-Length": "1"}
        )

    app = mounted(api)
    async with asgi_client(app) as client:
        response = await client.get("/api/call/guarded")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.headers.get_list("content-length") == [str(len(response.content))]
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_http_exception_headers_reach_the_client() -> None:
    # RFC 9110 11.6.1: a 401 carries WWW-Authenticate; FastAPI's OAuth2PasswordBearer
    # raises HTTPException(401, headers={"WWW-Authenticate": "Bearer"}).
    oauth2 = OAuth2PasswordBearer(tokenUrl="token")
    api = Tether()

    @api.query
    def me(token: str = Depends(oauth2)) -> str:
        return token

    app = mounted(api)
    async with asgi_client(app) as client:
        response = await client.get("/api/call/me")
    assert response.status_code == 401
    assert response.headers.get("www-authenticate") == "Bearer"


async def test_get_reads_an_aliased_list_input_by_its_alias() -> None:
    api = Tether()

    @api.query
    def total(values: Annotated[list[int], Field(alias="v")]) -> int:
        return sum(values)

    app = mounted(api)
    async with asgi_client(app) as client:
        assert (await client.post("/api/call/total", json={"v": [1, 2]})).json() == {"result": 3}
        response = await client.get("/api/call/total?v=1&v=2")
    assert response.json() == {"result": 3}


async def test_integers_beyond_64_bits_keep_every_digit() -> None:
    api = Tether()

    @api.query
    async def echo_int(n: int) -> str:
        return str(n)

    app = FastAPI()
    api.mount(app)
    big = 123456789012345678901234567890
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        response = await client.post(
            "/api/call/echo_int",
            content=b'{"n": ' + str(big).encode() + b"}",
            headers={"content-type": "application/json"},
        )
        assert response.json() == {"result": str(big)}
        # A long digit string inside a string is left a string.
        response = await client.post(
            "/api/call/echo_int",
            content=b'{"n": "1234567890123456789012"}',
            headers={"content-type": "application/json"},
        )
        assert response.json() == {"result": "1234567890123456789012"}
