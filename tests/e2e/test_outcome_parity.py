"""One outcome, every wire: headers, cookies, background tasks, teardown and errors, on a real server.

The table below is the documented behaviour (docs/dependencies.md, "After the call"). A row
is an operation (its stream variant on SSE); a column is a wire; a cell is what that wire
shows, written as:

- `ok` or the error's code;
- the response headers the wire carries (`x-kind`, `set-cookie*2` for two cookies,
  `www-authenticate`), for wires that carry headers;
- `bg` and `td`, in the order they happened: the background task ran, the yield
  dependency closed;
- `logged`: a teardown error was logged (and not sent).
"""

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Response
from websockets.sync.client import connect

from tests.conftest import LiveServer
from tether import NotFound, Tether, TetherError

pytestmark = pytest.mark.e2e

WIRES = (
    "http",
    "jsonrpc",
    "jsonrpc_batch",
    "ws_envelope",
    "ws_jsonrpc",
    "ws_jsonrpc_plain",
    "sse",
    "inprocess",
)

# fmt: off
TABLE: dict[str, tuple[str, ...]] = {
    #                 http / jsonrpc / jsonrpc_batch / ws_envelope / ws_jsonrpc (opted in) /
    #                 ws_jsonrpc_plain / sse (stream variant) / inprocess
    "cookies": (
        "ok x-kind set-cookie*2 td", "ok x-kind set-cookie*2 td", "ok x-kind set-cookie*2 td",
        "ok x-kind set-cookie*2 td", "ok x-kind set-cookie*2 td",
        "ok td", "ok x-kind set-cookie*2 td", "ok td",
    ),
    "bg_ok": (
        # A batch item's dependencies close in its worker, before the batch is answered.
        "ok bg td", "ok bg td", "ok td bg",
        "ok bg td", "ok bg td",
        "ok bg td", "ok bg td", "ok bg td",
    ),
    "bg_fail": (
        # A failed call releases nothing: no cookie, no header, no background task. SSE
        # sends its headers when the stream opens: a stream failing in its body (here, before
        # its first item) has sent them already, but its background task never runs.
        "NOT_FOUND td", "NOT_FOUND td", "NOT_FOUND td",
        "NOT_FOUND td", "NOT_FOUND td",
        "NOT_FOUND td", "NOT_FOUND x-kind set-cookie*2 td", "NOT_FOUND td",
    ),
    "teardown_fails": (
        "ok td logged", "ok td logged", "ok td logged",
        "ok td logged", "ok td logged",
        "ok td logged", "ok td logged", "ok td logged",
    ),
    "denied": (
        "UNAUTHORIZED www-authenticate", "UNAUTHORIZED www-authenticate",
        "UNAUTHORIZED www-authenticate",
        "UNAUTHORIZED www-authenticate", "UNAUTHORIZED www-authenticate",
        "UNAUTHORIZED", "UNAUTHORIZED www-authenticate", "UNAUTHORIZED",
    ),
}
# fmt: on

SHOWN_HEADERS = ("x-kind", "set-cookie", "www-authenticate")


class World:
    """What the server did, per call tag, seen from the test thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: dict[str, list[str]] = {}

    def record(self, tag: str, what: str) -> None:
        with self.lock:
            self.log.setdefault(tag, []).append(what)

    def settled(self, tag: str) -> list[str]:
        """Wait until the call's after-call work is over; return what it did."""
        deadline = time.monotonic() + 5
        seen: list[str] = []
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                now = list(self.log.get(tag, []))
            if now != seen:
                seen, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since > 0.2:
                break
            time.sleep(0.02)
        return seen


def build(world: World) -> tuple[FastAPI, Tether]:
    api = Tether()

    # Each call is named by its `X-Tag` header, which every wire can carry.
    async def resource(x_tag: str = Header()) -> AsyncIterator[str]:
        try:
            yield x_tag
        finally:
            world.record(x_tag, "td")

    async def failing_resource(x_tag: str = Header()) -> AsyncIterator[str]:
        yield x_tag
        world.record(x_tag, "td")
        raise RuntimeError("teardown failed")

    def guard() -> None:
        raise HTTPException(401, "who are you?", headers={"WWW-Authenticate": "Bearer"})

    def set_headers(response: Response) -> None:
        # A dependency: a stream's headers are sent before its body runs.
        response.headers["x-kind"] = "cookies"
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")

    def later(tag: str) -> None:
        world.record(tag, "bg")

    Tag = Annotated[str, Depends(resource)]
    FailingTag = Annotated[str, Depends(failing_resource)]
    Cookies = Annotated[None, Depends(set_headers)]

    @api.command
    async def cookies(tag: Tag, cookies: Cookies) -> str:
        return "ok"

    @api.command
    async def bg_ok(tag: Tag, tasks: BackgroundTasks) -> str:
        tasks.add_task(later, tag)
        return "ok"

    @api.command
    async def bg_fail(tag: Tag, tasks: BackgroundTasks, cookies: Cookies) -> str:
        tasks.add_task(later, tag)
        raise NotFound("no such row")

    @api.command
    async def teardown_fails(tag: FailingTag) -> str:
        return "ok"

    @api.command
    async def denied(gate: Annotated[None, Depends(guard)]) -> str:
        return "never"

    @api.command
    async def plain() -> int:
        return 1

    @api.stream
    async def cookies_stream(tag: Tag, cookies: Cookies) -> AsyncIterator[str]:
        yield "ok"

    @api.stream
    async def bg_ok_stream(tag: Tag, tasks: BackgroundTasks) -> AsyncIterator[str]:
        tasks.add_task(later, tag)
        yield "ok"

    @api.stream
    async def bg_fail_stream(
        tag: Tag, tasks: BackgroundTasks, cookies: Cookies
    ) -> AsyncIterator[str]:
        tasks.add_task(later, tag)
        if tag:  # always: the generator fails before its first item
            raise NotFound("no such row")
        yield "never"

    @api.stream
    async def teardown_fails_stream(tag: FailingTag) -> AsyncIterator[str]:
        yield "ok"

    @api.stream
    async def denied_stream(gate: Annotated[None, Depends(guard)]) -> AsyncIterator[str]:
        yield "never"

    app = FastAPI()
    api.mount(app)
    return app, api


Seen = tuple[bool, str | None, dict[str, list[str]] | None]
"""What a wire answered: success, the error's code, and the headers it carries (None: none)."""


def _http_headers(response: httpx.Response) -> dict[str, list[str]]:
    return {name: response.headers.get_list(name) for name in SHOWN_HEADERS}


def _member_headers(headers: dict[str, Any] | None) -> dict[str, list[str]]:
    # The socket's shape: a value, or the list of values of a header set more than once.
    return {
        name: value if isinstance(value, list) else [value]
        for name, value in (headers or {}).items()
    }


def _rpc(message: dict[str, Any]) -> tuple[bool, str | None]:
    if "result" in message:
        return True, None
    return False, message["error"]["data"]["code"]


def call_http(live: LiveServer, api: Tether, op: str, tag: str) -> Seen:
    response = httpx.post(f"{live.url}/api/call/{op}", json={}, headers={"x-tag": tag})
    ok = response.status_code == 200
    return ok, None if ok else response.json()["error"]["code"], _http_headers(response)


def call_jsonrpc(live: LiveServer, api: Tether, op: str, tag: str) -> Seen:
    message = {"jsonrpc": "2.0", "id": 1, "method": op}
    response = httpx.post(f"{live.url}/api/jsonrpc", json=message, headers={"x-tag": tag})
    return (*_rpc(response.json()), _http_headers(response))


def call_jsonrpc_batch(live: LiveServer, api: Tether, op: str, tag: str) -> Seen:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": op},
        {"jsonrpc": "2.0", "id": 2, "method": "plain"},
    ]
    response = httpx.post(f"{live.url}/api/jsonrpc", json=batch, headers={"x-tag": tag})
    first = next(item for item in response.json() if item["id"] == 1)
    return (*_rpc(first), _http_headers(response))


def call_ws_envelope(live: LiveServer, api: Tether, op: str, tag: str) -> Seen:
    with connect(f"{live.ws_url}/api/ws") as ws:
        ws.send(json.dumps({"uuid": "u1", "route": op, "headers": {"x-tag": tag}}))
        reply = json.loads(ws.recv(timeout=5))
    ok = reply["status"] < 400
    code = None if ok else reply["payload"]["error"]["code"]
    return ok, code, _member_headers(reply["headers"])


def _ws_jsonrpc(live: LiveServer, op: str, tag: str, query: str) -> dict[str, Any]:
    url = f"{live.ws_url}/api/ws{query}"
    with connect(url, additional_headers={"x-tag": tag}) as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": op}))
        message: dict[str, Any] = json.loads(ws.recv(timeout=5))
    return message


def call_ws_jsonrpc(live: LiveServer, api: Tether, op: str, tag: str) -> Seen:
    message = _ws_jsonrpc(live, op, tag, "?rpc_headers=1")
    return (*_rpc(message), _member_headers(message.get("headers")))


def call_ws_jsonrpc_plain(live: LiveServer, api: Tether, op: str, tag: str) -> Seen:
    message = _ws_jsonrpc(live, op, tag, "")
    # Specification-pure: exactly the members JSON-RPC 2.0 defines.
    assert set(message) <= {"jsonrpc", "id", "result", "error"}
    return (*_rpc(message), None)


def call_sse(live: LiveServer, api: Tether, op: str, tag: str) -> Seen:
    response = httpx.get(f"{live.url}/api/stream/{op}_stream", headers={"x-tag": tag})
    kinds = [
        line[len("event: ") :] for line in response.text.splitlines() if line.startswith("event: ")
    ]
    if response.status_code == 200 and kinds == ["data", "end"]:
        return True, None, _http_headers(response)
    error = response.text.split("data: ", 2)[-1].splitlines()[0]
    return False, json.loads(error)["error"]["code"], _http_headers(response)


def call_inprocess(live: LiveServer, api: Tether, op: str, tag: str) -> Seen:
    async def run() -> Seen:
        try:
            await api.call(op, {}, headers={"x-tag": tag})
        except TetherError as error:
            return False, error.code, None
        return True, None, None

    return anyio.run(run)


CALLERS: dict[str, Callable[[LiveServer, Tether, str, str], Seen]] = {
    "http": call_http,
    "jsonrpc": call_jsonrpc,
    "jsonrpc_batch": call_jsonrpc_batch,
    "ws_envelope": call_ws_envelope,
    "ws_jsonrpc": call_ws_jsonrpc,
    "ws_jsonrpc_plain": call_ws_jsonrpc_plain,
    "sse": call_sse,
    "inprocess": call_inprocess,
}


def observed(seen: Seen, events: list[str], logged: bool) -> str:
    """Write what a wire showed in the table's notation."""
    ok, code, headers = seen
    parts = ["ok" if ok else str(code)]
    if headers is not None:
        for name in SHOWN_HEADERS:
            count = len(headers.get(name, []))
            if count:
                parts.append(name if count == 1 else f"{name}*{count}")
    parts.extend(events)
    if logged:
        parts.append("logged")
    return " ".join(parts)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[LiveServer, Tether, World]]:
    world = World()
    app, api = build(world)
    live = LiveServer(app)
    live.start()
    try:
        yield live, api, world
    finally:
        live.stop()


@pytest.mark.parametrize("op", list(TABLE))
def test_every_wire_shows_the_documented_outcome(
    op: str, server: tuple[LiveServer, Tether, World], caplog: pytest.LogCaptureFixture
) -> None:
    live, api, world = server
    expected = dict(zip(WIRES, TABLE[op], strict=True))
    actual: dict[str, str] = {}
    for wire in WIRES:
        tag = f"{op}-{wire}"
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="tether"):
            seen = CALLERS[wire](live, api, op, tag)
            events = world.settled(tag)
        logged = any("failed while closing" in r.getMessage() for r in caplog.records)
        actual[wire] = observed(seen, events, logged)
    assert actual == expected
