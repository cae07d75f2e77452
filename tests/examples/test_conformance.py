"""Every conformance operation over HTTP, against a real uvicorn server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from examples.conformance.app import create_app

from tests.conftest import serve
from tether.errors import BUILTIN_ERRORS, TetherError

ALICE = {"Authorization": "Bearer alice"}
BOB = {"Authorization": "Bearer bob"}

KINDS = {
    "add": "query",
    "subtract": "query",
    "sum": "query",
    "get_data": "query",
    "notify_hello": "command",
    "notify_sum": "command",
    "update": "command",
    "echo": "query",
    "slow": "query",
    "fail": "command",
    "whoami": "query",
    "admin_stats": "query",
    "ticks": "stream",
    "math.sum": "query",
}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    """One real server for the module: every test here only reads."""
    with serve(create_app()) as server, httpx.Client(base_url=server.url) as http:
        yield http


def call(
    client: httpx.Client, name: str, params: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return client.post(
        f"/api/call/{name}", json=params if params is not None else {}, headers=headers
    )


def ok(response: httpx.Response) -> object:
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"result"}
    return body["result"]


def error(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


@pytest.mark.parametrize(
    ("name", "params", "result"),
    [
        ("add", {"a": 2, "b": 3}, 5),
        ("subtract", {"minuend": 42, "subtrahend": 23}, 19),
        ("subtract", {"subtrahend": 23, "minuend": 42}, 19),
        ("sum", {"a": 1, "b": 2, "c": 4}, 7),
        ("sum", {"a": 1, "b": 2}, 3),
        ("get_data", {}, ["hello", 5]),
        ("notify_hello", {"n": 7}, None),
        ("notify_sum", {"a": 1, "b": 2, "c": 4}, None),
        ("notify_sum", {"a": 1, "b": 2}, None),
        ("update", {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}, None),
        ("echo", {"text": "héllo"}, {"text": "héllo"}),
        ("slow", {"ms": 0}, 0),
    ],
)
def test_operation_result(client: httpx.Client, name: str, params: object, result: object) -> None:
    assert ok(call(client, name, params)) == result


def test_queries_answer_get_and_commands_refuse_it(client: httpx.Client) -> None:
    assert ok(client.get("/api/call/add", params={"a": 2, "b": 3})) == 5
    assert ok(client.get("/api/call/sum", params={"a": 1, "b": 2})) == 3
    assert ok(client.get("/api/call/get_data")) == ["hello", 5]
    assert ok(client.get("/api/call/echo", params={"text": "hi"})) == {"text": "hi"}
    error(client.get("/api/call/update", params={"a": 1}), 405, "METHOD_NOT_ALLOWED")
    error(client.get("/api/call/fail", params={"code": "NOT_FOUND"}), 405, "METHOD_NOT_ALLOWED")


def test_kinds_and_names_in_openapi(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    kinds = {
        operation["x-tether"]["name"]: operation["x-tether"]["kind"]
        for path, item in schema["paths"].items()
        if path.startswith(("/api/call/", "/api/stream/"))
        for operation in item.values()
    }
    # Later issues may add operations; these names and kinds are fixed.
    assert {name: kinds.get(name) for name in KINDS} == KINDS


@pytest.mark.parametrize(
    ("name", "params", "loc"),
    [
        ("add", {"a": 1}, ["b"]),
        ("add", {"a": "x", "b": 1}, ["a"]),
        ("add", {"a": 1, "b": 2, "c": 3}, ["c"]),
        ("update", {"a": 1, "b": 2, "c": 3, "d": 4}, ["e"]),
        ("echo", {"text": 5}, ["text"]),
        ("slow", {"ms": -1}, ["ms"]),
    ],
)
def test_invalid_params_are_422(
    client: httpx.Client, name: str, params: object, loc: list[object]
) -> None:
    details = error(call(client, name, params), 422, "VALIDATION_FAILED")["details"]
    assert isinstance(details, list)
    assert [entry["loc"] for entry in details] == [loc]


def test_slow_sleeps(client: httpx.Client) -> None:
    started = time.monotonic()
    assert ok(call(client, "slow", {"ms": 150})) == 150
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize("cls", BUILTIN_ERRORS, ids=lambda cls: cls.code)
def test_fail_raises_each_builtin_error(client: httpx.Client, cls: type[TetherError]) -> None:
    error(call(client, "fail", {"code": cls.code}), cls.status, cls.code)


def test_fail_with_an_unknown_code_is_422(client: httpx.Client) -> None:
    details = error(call(client, "fail", {"code": "NO_SUCH_ERROR"}), 422, "VALIDATION_FAILED")[
        "details"
    ]
    assert isinstance(details, list)
    assert [entry["loc"] for entry in details] == [["code"]]


@pytest.mark.parametrize(
    ("headers", "status", "body"),
    [
        (ALICE, 200, {"name": "alice", "is_staff": True}),
        (BOB, 200, {"name": "bob", "is_staff": False}),
        ({}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Bearer mallory"}, 401, "UNAUTHORIZED"),
        ({"Authorization": "Basic alice"}, 401, "UNAUTHORIZED"),
    ],
)
def test_whoami(client: httpx.Client, headers: dict[str, str], status: int, body: object) -> None:
    response = call(client, "whoami", headers=headers)
    if status == 200:
        assert ok(response) == body
    else:
        error(response, status, str(body))


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [(ALICE, 200, None), (BOB, 403, "FORBIDDEN"), ({}, 401, "UNAUTHORIZED")],
)
def test_admin_stats(
    client: httpx.Client, headers: dict[str, str], status: int, code: str | None
) -> None:
    response = call(client, "admin_stats", headers=headers)
    if code is None:
        result = ok(response)
        assert isinstance(result, dict)
        assert result["users"] == 2
        assert result["operations"] >= len(KINDS)
    else:
        error(response, status, code)


def test_unknown_operation_is_404(client: httpx.Client) -> None:
    error(call(client, "no_such_operation"), 404, "NOT_FOUND")


def test_405_names_the_allowed_methods(client: httpx.Client) -> None:
    # RFC 9110 section 15.5.6: a 405 response MUST carry an Allow header.
    command = client.get("/api/call/update", params={"a": 1})
    error(command, 405, "METHOD_NOT_ALLOWED")
    assert command.headers.get("allow") == "POST"
    query = client.put("/api/call/add", json={"a": 1, "b": 2})
    error(query, 405, "METHOD_NOT_ALLOWED")
    assert query.headers.get("allow") == "GET, POST"


# -- issue 4's additions: the `ticks` stream and the `math` group, over every wire but the
# socket (tests/e2e/test_websocket_*.py drive `math/sum` and `ticks` over WebSocket).


def test_math_sum_over_http(client: httpx.Client) -> None:
    assert ok(call(client, "math.sum", {"values": [1, 2, 3, 4]})) == {"sum": 10}
    assert ok(client.get("/api/call/math.sum?values=1&values=2")) == {"sum": 3}
    error(call(client, "math.sum", {"values": ["x"]}), 422, "VALIDATION_FAILED")


def test_math_sum_over_jsonrpc(client: httpx.Client) -> None:
    response = client.post(
        "/api/jsonrpc",
        json=[
            {"jsonrpc": "2.0", "id": 1, "method": "math.sum", "params": [[1, 2, 3, 4]]},
            {"jsonrpc": "2.0", "id": 2, "method": "math.sum", "params": {"values": [5]}},
        ],
    )
    assert response.json() == [
        {"jsonrpc": "2.0", "id": 1, "result": {"sum": 10}},
        {"jsonrpc": "2.0", "id": 2, "result": {"sum": 5}},
    ]


def test_ticks_is_not_a_call(client: httpx.Client) -> None:
    body = error(call(client, "ticks", {"n": 3}), 400, "BAD_REQUEST")
    assert "/stream/ticks" in str(body["message"])
    rpc = client.post(
        "/api/jsonrpc", json={"jsonrpc": "2.0", "id": 7, "method": "ticks", "params": {"n": 1}}
    ).json()
    assert rpc["id"] == 7
    assert rpc["error"]["data"]["code"] == "BAD_REQUEST"


def sse_data(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            events.append((fields["event"], fields.get("data", "")))
    return events


def test_ticks_over_sse(client: httpx.Client) -> None:
    response = client.get("/api/stream/ticks?n=3&ms=1")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert sse_data(response.text) == [
        ("data", "1"),
        ("data", "2"),
        ("data", "3"),
        ("end", "null"),
    ]
    posted = client.post("/api/stream/ticks", json={"n": 2})
    assert sse_data(posted.text) == [("data", "1"), ("data", "2"), ("end", "null")]
    refused = client.get("/api/stream/ticks?n=-1")
    assert refused.status_code == 422
    assert sse_data(refused.text)[0][0] == "error"


async def test_ticks_and_math_in_process() -> None:
    from examples.conformance.app import create_api

    api = create_api()
    assert [item async for item in api.stream_call("ticks", {"n": 4})] == [1, 2, 3, 4]
    result = await api.call("math.sum", {"values": [2, 3]})
    assert result.sum == 5
