"""The HTTP transport through a real uvicorn server on loopback."""

import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Response
from pydantic import BaseModel

from tests.conftest import LiveServer
from tether import NotFound, Tether

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024


class Todo(BaseModel):
    id: int
    title: str


class World:
    """What the operations of one test app record."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.threads: dict[str, threading.Thread] = {}
        self.release = threading.Event()
        self.task_done = threading.Event()


def build_app(world: World) -> FastAPI:
    async def resource() -> AsyncIterator[str]:
        world.events.append("open")
        try:
            yield "db"
        except Exception as exc:
            world.events.append(f"saw {type(exc).__name__}")
            raise
        finally:
            world.events.append("close")

    def current_user(authorization: Annotated[str | None, Header()] = None) -> str | None:
        return authorization.removeprefix("Bearer ") if authorization else None

    api = Tether(user=Depends(current_user), max_body_size=LIMIT)

    @api.query
    async def add(a: int, b: int = 0) -> int:
        world.threads["loop"] = threading.current_thread()
        return a + b

    @api.query
    def total(values: list[int]) -> int:
        world.threads["sync"] = threading.current_thread()
        return sum(values)

    @api.query
    async def get_todo(todo: Todo) -> Todo:
        return todo

    @api.command
    async def echo(value: Any = None) -> Any:
        return value

    @api.command
    async def use_db(fail: bool = False, db: str = Depends(resource)) -> str:
        world.events.append("run")
        if fail:
            raise NotFound("no row")
        return db

    @api.command
    async def crash() -> None:
        raise RuntimeError("secret stack detail")

    @api.command
    def later(response: Response, tasks: BackgroundTasks) -> str:
        def task() -> None:
            # Blocks until the test has read the response: proves the reply came first.
            world.events.append("task started")
            world.release.wait(5)
            world.events.append("task finished")
            world.task_done.set()

        tasks.add_task(task)
        response.headers["x-later"] = "yes"
        response.set_cookie("seen", "1")
        return "scheduled"

    @api.query(auth="staff")
    async def staff_only() -> str:
        return "ok"

    @api.command
    def no_content(response: Response) -> None:
        response.status_code = 204

    app = FastAPI()
    api.mount(app)
    return app


@pytest.fixture
def server(live_server: Callable[..., LiveServer]) -> tuple[LiveServer, World]:
    world = World()
    return live_server(build_app(world)), world


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the headers: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the body")
        body += chunk
    return int(status_line.split()[1]), headers, body[:length]


def request_bytes(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


# -- calls --------------------------------------------------------------------------------


def test_post_and_get_calls(server: tuple[LiveServer, World]) -> None:
    live, _ = server
    with httpx.Client(base_url=live.url) as client:
        response = client.post("/api/call/add", json={"a": 2, "b": 3})
        assert (response.status_code, response.json()) == (200, {"result": 5})
        assert response.headers["content-type"] == "application/json"
        response = client.get("/api/call/add", params={"a": 4})
        assert response.json() == {"result": 4}
        response = client.get("/api/call/total?values=1&values=2&values=3")
        assert response.json() == {"result": 6}
        response = client.post("/api/call/get_todo", json={"todo": {"id": 1, "title": "t"}})
        assert response.json() == {"result": {"id": 1, "title": "t"}}
        response = client.get("/api/call/get_todo")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        response = client.get("/api/call/echo")
        assert response.status_code == 405


def test_sync_operations_run_off_the_event_loop(server: tuple[LiveServer, World]) -> None:
    live, world = server
    with httpx.Client(base_url=live.url) as client:
        assert client.post("/api/call/add", json={"a": 1}).json() == {"result": 1}
        assert client.post("/api/call/total", json={"values": [1]}).json() == {"result": 1}
    assert world.threads["loop"] is live.thread
    assert world.threads["sync"] is not live.thread
    assert world.threads["sync"] is not threading.main_thread()


# -- bad input: documented status, never 500, and the server keeps serving -------------------

BAD_INPUTS: list[tuple[str, dict[str, str], bytes, int, str]] = [
    ("echo", {"content-type": "application/json"}, b"not json", 400, "BAD_REQUEST"),
    ("echo", {"content-type": "application/json"}, b"[1, 2]", 400, "BAD_REQUEST"),
    ("echo", {"content-type": "application/json"}, b'"text"', 400, "BAD_REQUEST"),
    (
        "echo",
        {"content-type": "application/json"},
        b"[" * 10_000 + b"]" * 10_000,
        400,
        "BAD_REQUEST",
    ),
    (
        "echo",
        {"content-type": "application/json"},
        b'{"value": ' + b"[" * 300 + b"]" * 300 + b"}",
        400,
        "BAD_REQUEST",
    ),
    ("echo", {"content-type": "application/json"}, b'{"value": NaN}', 400, "BAD_REQUEST"),
    ("echo", {"content-type": "application/json"}, b'{"value": Infinity}', 400, "BAD_REQUEST"),
    ("echo", {"content-type": "application/json"}, b'{"value": -Infinity}', 400, "BAD_REQUEST"),
    ("echo", {"content-type": "application/json"}, b'{"value": 1e999}', 400, "BAD_REQUEST"),
    ("echo", {"content-type": "application/json"}, b'{"value": "\xff\xfe"}', 400, "BAD_REQUEST"),
    ("echo", {"content-type": "text/plain"}, b'{"value": 1}', 415, "UNSUPPORTED_MEDIA_TYPE"),
    (
        "echo",
        {"content-type": "application/x-www-form-urlencoded"},
        b"value=1",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    ("nope", {"content-type": "application/json"}, b"{}", 404, "NOT_FOUND"),
    (
        "echo",
        {"content-type": "application/json"},
        b'{"value": "' + b"x" * LIMIT + b'"}',
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    ("add", {"content-type": "application/json"}, b'{"a": "x"}', 422, "VALIDATION_FAILED"),
    ("staff_only", {"content-type": "application/json"}, b"{}", 401, "UNAUTHORIZED"),
    (
        "staff_only",
        {"content-type": "application/json", "authorization": "Bearer bob"},
        b"{}",
        403,
        "FORBIDDEN",
    ),
    ("crash", {"content-type": "application/json"}, b"{}", 500, "INTERNAL_ERROR"),
]


def test_bad_input_is_answered_and_the_server_keeps_serving(
    server: tuple[LiveServer, World],
) -> None:
    live, _ = server
    with httpx.Client(base_url=live.url) as client:
        for name, headers, content, status, code in BAD_INPUTS:
            response = client.post(f"/api/call/{name}", content=content, headers=headers)
            assert response.status_code == status, (name, content[:40])
            body = response.json()
            assert set(body) == {"error"}
            assert set(body["error"]) == {"code", "message", "details"}
            assert body["error"]["code"] == code
            # The next request, on the same client, is served normally.
            assert client.post("/api/call/add", json={"a": 1, "b": 1}).json() == {"result": 2}


def test_good_edge_inputs(server: tuple[LiveServer, World]) -> None:
    live, _ = server
    with httpx.Client(base_url=live.url) as client:
        response = client.post(
            "/api/call/echo", content=b"", headers={"content-type": "application/json"}
        )
        assert (response.status_code, response.json()) == (200, {"result": None})
        response = client.post(
            "/api/call/echo",
            content='{"value": "héllo"}'.encode(),
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert response.json() == {"result": "héllo"}
        nested = b'{"value": ' + b"[" * 100 + b"]" * 100 + b"}"
        response = client.post(
            "/api/call/echo", content=nested, headers={"content-type": "application/json"}
        )
        assert response.status_code == 200
        assert response.content == b'{"result":' + b"[" * 100 + b"]" * 100 + b"}"


def test_internal_error_is_logged_once_without_leaking(
    server: tuple[LiveServer, World], caplog: pytest.LogCaptureFixture
) -> None:
    live, _ = server
    with caplog.at_level(logging.ERROR, logger="tether"), httpx.Client(base_url=live.url) as c:
        response = c.post("/api/call/crash", json={})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "INTERNAL_ERROR", "message": "Internal server error", "details": None}
    }
    assert "secret" not in response.text
    records = [r for r in caplog.records if r.name == "tether"]
    assert len(records) == 1
    assert "'crash'" in records[0].getMessage()


# -- body limit: refused without reading the whole body -----------------------------------------


def test_413_is_sent_before_a_huge_declared_body_arrives(server: tuple[LiveServer, World]) -> None:
    live, _ = server
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/call/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n"
            b'{"value": "'
        )
        started = time.monotonic()
        # Only a few bytes of 10 GB were sent: the answer cannot wait for the rest.
        status, _, body = read_response(sock)
        elapsed = time.monotonic() - started
    assert status == 413
    assert json.loads(body)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert elapsed < 2
    with httpx.Client(base_url=live.url) as client:
        assert client.post("/api/call/add", json={"a": 1}).json() == {"result": 1}


def test_413_for_a_chunked_upload_that_exceeds_the_limit(server: tuple[LiveServer, World]) -> None:
    live, _ = server
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/call/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * 4096
        for _ in range(LIMIT // len(chunk) + 2):
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        # The terminating zero-length chunk is never sent: the body has no end.
        status, _, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["error"] == {
        "code": "PAYLOAD_TOO_LARGE",
        "message": f"Request body exceeds the limit of {LIMIT} bytes",
        "details": {"limit": LIMIT},
    }
    with httpx.Client(base_url=live.url) as client:
        assert client.post("/api/call/add", json={"a": 2}).json() == {"result": 2}


def test_chunked_upload_within_the_limit(server: tuple[LiveServer, World]) -> None:
    live, _ = server
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/call/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (b'{"value": ', b"42}"))
            + b"0\r\n\r\n"
        )
        status, _, body = read_response(sock)
    assert (status, json.loads(body)) == (200, {"result": 42})


# -- dependencies over a real connection ---------------------------------------------------------


def test_yield_dependencies_close_after_the_reply_and_keep_alive_survives(
    server: tuple[LiveServer, World],
) -> None:
    live, world = server
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(request_bytes("/api/call/use_db", b"{}"))
        status, headers, body = read_response(sock)
        assert (status, json.loads(body)) == (200, {"result": "db"})
        # Issue 10: on success the dependency closes after the answer is sent (FastAPI's
        # order), so the client may read the answer a moment before "close".
        deadline = time.monotonic() + 5
        while len(world.events) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert world.events == ["open", "run", "close"]
        # The same connection serves a failing call, then a good one.
        sock.sendall(request_bytes("/api/call/use_db", b'{"fail": true}'))
        status, _, body = read_response(sock)
        assert status == 404
        assert json.loads(body)["error"]["message"] == "no row"
        assert world.events[3:] == ["open", "run", "saw NotFound", "close"]
        sock.sendall(request_bytes("/api/call/add", b'{"a": 5}'))
        status, headers, body = read_response(sock)
        assert (status, json.loads(body)) == (200, {"result": 5})
        assert headers.get("connection", "keep-alive") != "close"


def test_background_task_runs_after_the_response(server: tuple[LiveServer, World]) -> None:
    live, world = server
    with httpx.Client(base_url=live.url) as client:
        response = client.post("/api/call/later", json={})
        # The task is still blocked: the reply did not wait for it.
        assert response.json() == {"result": "scheduled"}
        assert "task finished" not in world.events
        assert response.headers["x-later"] == "yes"
        assert response.cookies["seen"] == "1"
        world.release.set()
        assert world.task_done.wait(5)
    assert world.events == ["task started", "task finished"]


def test_openapi_and_docs(server: tuple[LiveServer, World]) -> None:
    live, _ = server
    with httpx.Client(base_url=live.url) as client:
        doc = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    operation_ids = {
        route["operationId"]
        for path, methods in doc["paths"].items()
        if path.startswith("/api/call/")
        for method, route in methods.items()
        if method == "post"
    }
    assert operation_ids == {
        "add",
        "total",
        "get_todo",
        "echo",
        "use_db",
        "crash",
        "later",
        "staff_only",
        "no_content",
    }


def test_a_bodiless_status_sends_no_body_and_keep_alive_survives(
    server: tuple[LiveServer, World],
) -> None:
    live, _ = server
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(request_bytes("/api/call/no_content", b"{}"))
        status, headers, body = read_response(sock)
        assert (status, body) == (204, b"")
        assert "content-length" not in headers
        # Were a body sent after the 204, it would be read here as the next status line.
        sock.sendall(request_bytes("/api/call/add", b'{"a": 3}'))
        status, _, body = read_response(sock)
        assert (status, json.loads(body)) == (200, {"result": 3})


def test_413_answers_expect_100_continue_without_inviting_the_body(
    server: tuple[LiveServer, World],
) -> None:
    live, _ = server
    with socket.create_connection(("127.0.0.1", live.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/call/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 5000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        # The server never asks for the body: the first thing it says is the 413.
        status, _, body = read_response(sock)
    assert status == 413
    assert json.loads(body)["error"]["details"] == {"limit": LIMIT}


async def test_concurrent_calls_each_close_their_own_dependencies(
    server: tuple[LiveServer, World],
) -> None:
    live, world = server
    async with httpx.AsyncClient(base_url=live.url) as client, anyio.create_task_group() as tg:
        results: list[int] = []

        async def one(fail: bool) -> None:
            response = await client.post("/api/call/use_db", json={"fail": fail})
            results.append(response.status_code)

        for i in range(20):
            tg.start_soon(one, i % 4 == 0)
    assert sorted(results) == [200] * 15 + [404] * 5
    assert world.events.count("open") == world.events.count("close") == 20
    assert world.events.count("saw NotFound") == 5
