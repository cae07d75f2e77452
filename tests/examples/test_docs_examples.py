"""Every code example shown in docs/ (examples/docs/*.py), exercised.

Each test loads a fresh copy of its example module, so module-level state (an in-memory
store, a list of events) starts empty in every test.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import httpx
import pytest
from fastapi import Header

from tests._docs_examples import client_for, load
from tether import Operation


def body(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


# -- index / README -------------------------------------------------------------------------


async def test_index_1() -> None:
    async with client_for(load("index_1")) as client:
        assert (await client.get("/api/call/greet?name=Ada")).text == '{"result":"Hello, Ada!"}'
        posted = await client.post("/api/call/greet", json={"name": 42})
        assert body(posted, 422)["error"]["details"][0]["loc"] == ["name"]
        call = {"jsonrpc": "2.0", "id": 1, "method": "greet", "params": {"name": "Ada"}}
        assert body(await client.post("/api/jsonrpc", json=call)) == {
            "jsonrpc": "2.0",
            "id": 1,
            "result": "Hello, Ada!",
        }


# -- quickstart -----------------------------------------------------------------------------
# The shell sessions these pages show run against a real server in
# tests/e2e/test_docs_sessions.py; these tests check the example files in-process.


async def test_quickstart_1() -> None:
    module = load("quickstart_1")
    async with client_for(module) as client:
        assert body(await client.get("/api/call/greet?name=Ada")) == {"result": "Hello, Ada!"}
        call = {"jsonrpc": "2.0", "id": 1, "method": "greet", "params": ["Ada"]}
        assert body(await client.post("/api/jsonrpc", json=call))["result"] == "Hello, Ada!"
        events = await client.get("/api/stream/countdown?start=3")
        assert body_lines(events, "data: ")[:3] == ["3", "2", "1"]
        assert body_lines(events, "event: ") == ["data", "data", "data", "end"]
        paths = body(await client.get("/openapi.json"))["paths"]
    assert {"/api/call/greet", "/api/stream/countdown"} <= set(paths)
    assert [n async for n in module.api.stream_call("countdown", {"start": 2})] == [2, 1]


def body_lines(response: httpx.Response, prefix: str) -> list[str]:
    assert response.status_code == 200, response.text
    lines = response.text.split("\n")
    return [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]


async def test_quickstart_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reader saved quickstart_1 as main.py, next to this script.
    monkeypatch.setitem(sys.modules, "main", load("quickstart_1"))
    await load("quickstart_3").run()
    assert capsys.readouterr().out == "Hello, Ada!\n3\n2\n1\n"


async def test_quickstart_4() -> None:
    async with client_for(load("quickstart_4")) as client:
        assert body(await client.post("/api/call/list_notes", json={})) == {"result": []}
        unauthenticated = await client.post("/api/call/add_note", json={"text": "hi"})
        assert body(unauthenticated, 401)["error"]["code"] == "UNAUTHORIZED"
        added = await client.post(
            "/api/call/add_note", json={"text": "hi"}, headers={"X-User": "ada"}
        )
        assert body(added) == {"result": {"id": 1, "text": "hi", "author": "ada"}}
        empty = await client.post("/api/call/add_note", json={"text": ""}, headers={"X-User": "a"})
        assert body(empty, 422)["error"]["details"][0]["loc"] == ["text"]
        assert body(await client.get("/api/call/get_note?id=1"))["result"]["text"] == "hi"
        missing = await client.get("/api/call/get_note?id=9")
        assert body(missing, 404)["error"] == {
            "code": "NOT_FOUND",
            "message": "No note 9",
            "details": {"id": 9},
        }
        assert body(await client.get("/api/call/list_notes?author=bob")) == {"result": []}
        by_ada = body(await client.get("/api/call/list_notes?author=ada"))["result"]
        assert [note["id"] for note in by_ada] == [1]
        paths = body(await client.get("/openapi.json"))["paths"]
        calls = {path for path in paths if path.startswith("/api/call/")}
        assert calls == {"/api/call/list_notes", "/api/call/get_note", "/api/call/add_note"}


# -- operations -----------------------------------------------------------------------------


async def test_operations_1() -> None:
    async with client_for(load("operations_1")) as client:
        assert body(await client.get("/api/call/stock?item=apple")) == {"result": 3}
        restock = await client.post(
            "/api/call/inventory.restock", json={"item": "apple", "count": 2}
        )
        assert body(restock) == {"result": 5}
        conflict = await client.post(
            "/api/call/inventory.restock", json={"item": "apple", "count": -9}
        )
        assert body(conflict, 409)["error"]["code"] == "CONFLICT"
        paths = body(await client.get("/openapi.json"))["paths"]
    stock = paths["/api/call/stock"]["post"]
    assert stock["description"] == (
        "How many of `item` are in stock.\n\nThe docstring is the operation's description in"
        " OpenAPI."
    )
    assert stock["tags"] == ["inventory"]
    restock_doc = paths["/api/call/inventory.restock"]["post"]
    assert restock_doc["operationId"] == "inventory.restock"
    assert restock_doc["summary"] == "Restock an item"
    assert restock_doc["tags"] == ["inventory", "admin"]
    assert "409" in restock_doc["responses"]
    assert "get" not in paths["/api/call/inventory.restock"]
    deprecated = paths["/api/call/count_stock"]["post"]
    assert deprecated["deprecated"] is True
    assert deprecated["description"] == "Use `stock` instead."


async def test_operations_2() -> None:
    async with client_for(load("operations_2")) as client:
        found = await client.get(
            "/api/call/search", params=[("q", "ab"), ("tags", "x"), ("tags", "y"), ("limit", 1)]
        )
        assert body(found) == {"result": ["ab-x"]}
        posted = await client.post(
            "/api/call/search", json={"q": "ab", "tags": ["x", "y"], "order": "desc"}
        )
        assert body(posted) == {"result": ["ab-y", "ab-x"]}
        invalid = await client.post("/api/call/search", json={"q": "a", "limit": 0, "order": "up"})
        locs = [d["loc"] for d in body(invalid, 422)["error"]["details"]]
        assert locs == [["q"], ["limit"], ["order"]]
        customer = {"name": "Ada", "address": {"street": "1 Loop", "city": "London"}}
        registered = await client.post(
            "/api/call/register", json={"customer": {**customer, "since": "2024-02-01"}}
        )
        assert body(registered) == {"result": {**customer, "since": "2024-02-01"}}
        nested = await client.post(
            "/api/call/register", json={"customer": {**customer, "since": "yesterday"}}
        )
        assert body(nested, 422)["error"]["details"][0]["loc"] == ["customer", "since"]
        # A command, and structured input, are never callable with GET.
        get = await client.get("/api/call/register")
        assert body(get, 405)["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_operations_3() -> None:
    module = load("operations_3")
    # The markers registered nothing: two apps can include the same functions.
    second = module.create_app()
    for app in (module.app, second):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert body(await client.post("/api/call/ping", json={})) == {"result": "pong"}
            bumped = await client.post("/api/call/counter.bump", json={"by": 2})
            assert body(bumped) == {"result": 2}
            assert body(await client.get("/api/call/version")) == {"result": "1.0"}


# -- transports/http ------------------------------------------------------------------------


async def test_http_1() -> None:
    module = load("http_1")
    async with client_for(module) as client:
        created = await client.post("/api/call/create_session", json={"name": "ada"})
        assert body(created, 201) == {"result": "ada"}
        assert created.headers["x-session-owner"] == "ada"
        assert created.cookies["session"] == "session-of-ada"
        assert body(await client.post("/api/call/send_welcome", json={"to": "ada"})) == {
            "result": None
        }
        assert module.SENT == ["welcome, ada"]
        too_large = await client.post("/api/call/create_session", json={"name": "x" * (64 * 1024)})
        assert body(too_large, 413)["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "BAD_REQUEST"),
        (b"[1, 2]", {"content-type": "application/json"}, 400, "BAD_REQUEST"),
        (b'{"name": NaN}', {"content-type": "application/json"}, 400, "BAD_REQUEST"),
        (b"[" * 10_000 + b"]" * 10_000, {"content-type": "application/json"}, 400, "BAD_REQUEST"),
        (b"name=ada", {"content-type": "text/plain"}, 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
async def test_http_bad_input(
    content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    async with client_for(load("http_1")) as client:
        response = await client.post("/api/call/create_session", content=content, headers=headers)
        assert body(response, status)["error"]["code"] == code


async def test_http_unknown_operation_and_method() -> None:
    async with client_for(load("http_1")) as client:
        unknown = await client.post("/api/call/nope", json={})
        assert body(unknown, 404)["error"]["code"] == "NOT_FOUND"
        get_command = await client.get("/api/call/create_session?name=ada")
        assert body(get_command, 405)["error"]["code"] == "METHOD_NOT_ALLOWED"


# -- dependencies ---------------------------------------------------------------------------


async def test_dependencies_1(caplog: pytest.LogCaptureFixture) -> None:
    module = load("dependencies_1")
    async with client_for(module) as client:
        assert body(await client.post("/api/call/save", json={"text": "row"})) == {"result": 1}
        assert module.EVENTS == ["open", "commit", "close"]
        module.EVENTS.clear()
        with caplog.at_level(logging.ERROR, logger="tether"):
            failed = await client.post("/api/call/save", json={"text": " "})
        assert body(failed, 500)["error"]["code"] == "INTERNAL_ERROR"
        assert module.EVENTS == ["open", "rollback after ValueError", "close"]
        who = await client.get(
            "/api/call/whoami", headers={"User-Agent": "docs", "Cookie": "theme=dark"}
        )
        assert body(who) == {
            "result": {"path": "/api/call/whoami", "agent": "docs", "theme": "dark"}
        }
    schema = module.app.openapi()
    post = schema["paths"]["/api/call/save"]["post"]
    # Dependencies never leak into the operation's input.
    assert "parameters" not in post
    assert set(schema["components"]["schemas"]["SaveParams"]["properties"]) == {"text"}


async def test_dependencies_2() -> None:
    module = load("dependencies_2")
    async with client_for(module) as client:
        refused = await client.post("/api/call/greet", json={"name": "Ada"})
        assert body(refused, 401)["error"] == {
            "code": "UNAUTHORIZED",
            "message": "Missing or wrong API key",
            "details": None,
        }
        assert module.CALLS == []
        greeted = await client.post(
            "/api/call/greet", json={"name": "Ada"}, headers={"X-API-Key": "secret"}
        )
        assert body(greeted) == {"result": "Hello, Ada!"}
        assert module.CALLS == ["get_settings"]


async def test_dependencies_3() -> None:
    module = load("dependencies_3")
    async with client_for(module) as client:
        allowed = await client.get(
            "/api/call/read_notes", headers={"Authorization": "Bearer t-read"}
        )
        assert body(allowed) == {"result": ["a note"]}
        scopes = await client.get(
            "/api/call/read_notes", headers={"Authorization": "Bearer t-none"}
        )
        assert body(scopes, 403)["error"]["message"] == "Missing scopes: ['notes:read']"
        anonymous = await client.get("/api/call/read_notes")
        assert body(anonymous, 401)["error"]["code"] == "UNAUTHORIZED"
        assert anonymous.headers["www-authenticate"] == "Bearer"
        schema = body(await client.get("/openapi.json"))
    scheme = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["scopes"] == {"notes:read": "Read notes"}
    assert schema["paths"]["/api/call/read_notes"]["post"]["security"] == [
        {"OAuth2PasswordBearer": ["notes:read"]}
    ]


async def test_dependencies_4() -> None:
    module = load("dependencies_2")
    await load("dependencies_4").test_greet_with_other_settings()
    assert module.app.dependency_overrides == {}
    # The override replaced get_settings: the real one never ran.
    assert module.CALLS == []


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "token", "status"),
    [
        ("public", None, 200),
        ("me", None, 401),
        ("me", "t-alan", 200),
        ("me", "t-unknown", 401),
        ("staff_report", "t-alan", 403),
        ("staff_report", "t-grace", 200),
        ("staff_report", "t-ada", 200),
        ("reset", "t-grace", 403),
        ("reset", "t-ada", 200),
        ("pro_feature", None, 401),
        ("pro_feature", "t-grace", 403),
        ("pro_feature", "t-alan", 200),
    ],
)
async def test_auth_1(operation: str, token: str | None, status: int) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with client_for(load("auth_1")) as client:
        response = await client.post(f"/api/call/{operation}", json={}, headers=headers)
    result = body(response, status)
    if status == 401:
        assert result["error"]["code"] == "UNAUTHORIZED"
    elif status == 403:
        assert result["error"]["code"] == "FORBIDDEN"
    elif operation == "me":
        assert result["result"]["name"] == "alan"


async def test_auth_1_openapi() -> None:
    schema = load("auth_1").app.openapi()
    policies = {
        path.rsplit("/", 1)[1]: item["post"]["x-tether"]["auth"]
        for path, item in schema["paths"].items()
        if path.startswith("/api/call/")
    }
    assert policies == {
        "public": False,
        "me": True,
        "staff_report": "staff",
        "reset": "superuser",
        "pro_feature": "custom",
    }


# -- errors ---------------------------------------------------------------------------------


async def test_errors_1(caplog: pytest.LogCaptureFixture) -> None:
    module = load("errors_1")
    async with client_for(module) as client:
        assert body(await client.post("/api/call/order", json={"item": "apple", "count": 1})) == {
            "result": 1
        }
        short = await client.post("/api/call/order", json={"item": "apple", "count": 5})
        assert body(short, 409) == {
            "error": {
                "code": "OUT_OF_STOCK",
                "message": "Not enough stock",
                "details": {"item": "apple", "wanted": 5, "available": 1},
            }
        }
        legacy = await client.get("/api/call/legacy?id=7")
        assert body(legacy, 404)["error"] == {
            "code": "NOT_FOUND",
            "message": "No legacy record 7",
            "details": None,
        }
        with caplog.at_level(logging.ERROR, logger="tether"):
            broken = await client.get("/api/call/broken")
        assert broken.status_code == 500
        assert broken.text == (
            '{"error":{"code":"INTERNAL_ERROR","message":"Internal server error","details":null}}'
        )
    records = [r for r in caplog.records if r.name == "tether"]
    assert len(records) == 1
    assert "'broken'" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is ZeroDivisionError
    responses = module.app.openapi()["paths"]["/api/call/order"]["post"]["responses"]
    assert "OUT_OF_STOCK" in responses["409"]["description"]
    with pytest.raises(module.OutOfStock) as caught:
        await module.api.call("order", {"item": "pear", "count": 1})
    assert caught.value.details == module.Shortage(item="pear", wanted=1, available=0)


# -- configuration --------------------------------------------------------------------------


async def test_configuration_1() -> None:
    module = load("configuration_1")
    key = {"X-Api-Key": "let-me-in"}
    async with client_for(module) as client:
        refused = await client.post("/rpc/call/add", json={"a": 1, "b": 2})
        assert body(refused, 401)["error"]["code"] == "UNAUTHORIZED"
        call = {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]}
        assert body(await client.post("/rpc/jsonrpc", json=call))["error"]["code"] == -32001
        added = await client.post("/rpc/call/add", json={"a": 1, "b": 2}, headers=key)
        assert body(added) == {"result": 3}
        # strict=True: no coercion of a string or a boolean into an integer.
        for loose in ({"a": "1", "b": 2}, {"a": True, "b": 2}):
            coerced = await client.post("/rpc/call/add", json=loose, headers=key)
            assert body(coerced, 422)["error"]["details"][0]["loc"] == ["a"]
        large = await client.post(
            "/rpc/call/add", json={"a": 1, "b": 2, "pad": "x" * 64 * 1024}, headers=key
        )
        assert body(large, 413)["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert module.api.body_timeout == 5.0
    assert module.api.admission.limit == 256
    assert module.api.allowed_origins == ("https://app.example.com",)
    assert module.app.openapi()["paths"]["/rpc/call/add"]["post"]["tags"] == ["rpc"]


async def test_configuration_2() -> None:
    module = load("configuration_2")
    call = {"jsonrpc": "2.0", "method": "add", "params": [1, 2]}
    async with client_for(module) as client:
        batch = [{**call, "id": i} for i in range(20)]
        answers = body(await client.post("/api/jsonrpc", json=batch))
        assert [answer["result"] for answer in answers] == [3] * 20
        too_large = body(await client.post("/api/jsonrpc", json=[*batch, {**call, "id": 20}]))
        assert too_large["error"]["code"] == -32600
    _, jsonrpc, sse, socket = module.api.transports
    assert (jsonrpc.max_batch_size, sse.heartbeat) == (20, 5)
    assert (socket.max_in_flight, socket.max_message_size) == (8, 64 * 1024)


# -- from fastapi-jsonrpc -------------------------------------------------------------------


async def test_from_fastapi_jsonrpc_1() -> None:
    module = load("from_fastapi_jsonrpc_1")
    token = {"user-auth-token": "1"}
    batch = [
        {"jsonrpc": "2.0", "id": i, "method": "withdraw", "params": {"amount": 10}}
        for i in range(3)
    ]
    async with client_for(module) as client:
        answers = body(await client.post("/api/v1/jsonrpc", json=batch, headers=token))
        assert [answer["result"] for answer in answers] == [90, 80, 70]
        # The batch dependency ran once; the per-call one around each of the 3 items.
        assert module.EVENTS == ["auth"] + ["open", "close"] * 3
        call = {"jsonrpc": "2.0", "id": 4, "method": "withdraw", "params": [500]}
        refused = body(await client.post("/api/v1/jsonrpc", json=call, headers=token))
        assert refused["error"] == {
            "code": 6001,
            "message": "Not enough money",
            "data": {"code": "NOT_ENOUGH_MONEY", "details": {"balance": 70, "currency": "USD"}},
        }
        echo = {"jsonrpc": "2.0", "id": 5, "method": "echo", "params": {"data": "x"}}
        anonymous = body(await client.post("/api/v1/jsonrpc", json=echo))
        assert anonymous["error"]["data"]["code"] == "UNAUTHORIZED"
        over_http = await client.post("/api/v1/call/withdraw", json={"amount": 500}, headers=token)
        assert body(over_http, 409)["error"]["code"] == "NOT_ENOUGH_MONEY"
        methods = body(await client.get("/api/v1/openrpc.json"))["methods"]
    assert {method["name"] for method in methods} == {"echo", "withdraw"}
    responses = module.app.openapi()["paths"]["/api/v1/call/withdraw"]["post"]["responses"]
    assert "NOT_ENOUGH_MONEY" in responses["409"]["description"]


# -- testing --------------------------------------------------------------------------------


async def test_testing_2() -> None:
    load("testing_1")
    module = load("testing_2")
    await module.test_divide()
    await module.test_errors_are_raised()


async def test_testing_3() -> None:
    load("testing_1")
    await load("testing_3").test_divide_over_http()


def test_testing_4() -> None:
    load("testing_1")
    load("testing_4").test_divide_over_a_real_server()


def test_testing_1_factory_builds_independent_apps() -> None:
    module = load("testing_1")
    first, second = module.create_api(), module.create_api()
    assert first is not second
    assert isinstance(first.get("divide"), Operation)
    assert first.get("divide") is not second.get("divide")


async def test_auth_1_resolver_runs_once_per_call() -> None:
    module = load("auth_1")
    calls: list[str | None] = []

    async def counting_user(authorization: str | None = Header(None)) -> Any:
        calls.append(authorization)
        return await module.current_user(authorization)

    # The override replaces both uses of current_user: as the resolver and as `me`'s parameter.
    module.app.dependency_overrides[module.current_user] = counting_user
    async with client_for(module) as client:
        response = await client.post(
            "/api/call/me", json={}, headers={"Authorization": "Bearer t-alan"}
        )
        assert body(response)["result"]["name"] == "alan"
        assert calls == ["Bearer t-alan"]
        # Operations without a policy never run the resolver.
        assert body(await client.post("/api/call/public", json={})) == {"result": "hello"}
        assert calls == ["Bearer t-alan"]
