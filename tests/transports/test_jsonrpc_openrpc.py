"""OpenRPC discovery: `GET {prefix}/openrpc.json` and the `rpc.discover` method.

The document's validity against the official OpenRPC meta-schema is checked by node in
tests/e2e/test_jsonrpc_interop.py; here, its content.
"""

# No `from __future__ import annotations`: operations here annotate with local types.
import json
import logging
from collections.abc import Callable
from typing import Annotated, Any

import httpx
import pytest
from examples.conformance.app import create_app
from fastapi import Depends, FastAPI
from pydantic import BaseModel, Field

from tether import Conflict, Tether
from tether.schema.openrpc import OPENRPC_VERSION, openrpc_document


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


async def document_of(app: FastAPI) -> dict[str, Any]:
    async with client_for(app) as client:
        response = await client.get("/api/openrpc.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()  # type: ignore[no-any-return]


def method(document: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [m for m in document["methods"] if m["name"] == name]
    return found  # type: ignore[no-any-return]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix)
    return document["components"]["schemas"][ref[len(prefix) :]]  # type: ignore[no-any-return]


async def test_the_document_lists_every_conformance_operation() -> None:
    document = await document_of(create_app())
    assert document["openrpc"] == OPENRPC_VERSION == "1.3.2"
    assert document["info"] == {"title": "tether conformance", "version": "0.1.0"}
    assert document["servers"] == [{"name": "JSON-RPC", "url": "/api/jsonrpc"}]
    assert [m["name"] for m in document["methods"]] == [
        "add",
        "subtract",
        "sum",
        "get_data",
        "notify_hello",
        "notify_sum",
        "update",
        "echo",
        "slow",
        "fail",
        "whoami",
        "admin_stats",
        "ticks",
        "math.sum",
    ]
    # A stream is listed for WebSocket subscriptions, and says so in its extension.
    assert method(document, "ticks")["x-tether"]["kind"] == "stream"


async def test_params_are_in_signature_order_with_required_flags_and_schemas() -> None:
    document = await document_of(create_app())
    subtract = method(document, "subtract")
    assert subtract["paramStructure"] == "either"
    assert subtract["params"] == [
        {"name": "minuend", "required": True, "schema": {"title": "Minuend", "type": "integer"}},
        {
            "name": "subtrahend",
            "required": True,
            "schema": {"title": "Subtrahend", "type": "integer"},
        },
    ]
    assert subtract["result"] == {
        "name": "result",
        "schema": {"title": "Result", "type": "integer"},
    }
    total = method(document, "sum")
    assert [(p["name"], p["required"]) for p in total["params"]] == [
        ("a", True),
        ("b", True),
        ("c", False),
    ]
    assert total["params"][2]["schema"]["default"] == 0
    slow = method(document, "slow")
    assert slow["params"][0]["schema"]["minimum"] == 0
    assert method(document, "get_data")["params"] == []
    assert method(document, "update")["result"]["schema"] == {"title": "Result", "type": "null"}
    assert method(document, "add")["description"] == "Return a + b."


async def test_model_results_are_shared_schemas_and_wrappers_are_not() -> None:
    document = await document_of(create_app())
    echo = method(document, "echo")
    assert echo["result"]["schema"] == {"$ref": "#/components/schemas/Echo"}
    schemas = document["components"]["schemas"]
    assert resolve(document, echo["result"]["schema"])["properties"] == {
        "text": {"title": "Text", "type": "string"}
    }
    assert {"Echo", "User", "Stats"} <= set(schemas)
    assert not any(name.endswith(("Params", "Result")) for name in schemas)


async def test_each_method_lists_the_errors_it_declares_by_jsonrpc_code() -> None:
    document = await document_of(create_app())
    add_errors = {e["data"]["code"]: e["code"] for e in method(document, "add")["errors"]}
    assert add_errors == {
        "BAD_REQUEST": -32000,
        "VALIDATION_FAILED": -32602,
        "INTERNAL_ERROR": -32603,
    }
    whoami_errors = {e["data"]["code"]: e["code"] for e in method(document, "whoami")["errors"]}
    assert whoami_errors["UNAUTHORIZED"] == -32001
    assert whoami_errors["FORBIDDEN"] == -32003
    fail_errors = {e["data"]["code"] for e in method(document, "fail")["errors"]}
    assert {"NOT_FOUND", "CONFLICT", "TOO_MANY_REQUESTS"} <= fail_errors
    first = method(document, "add")["errors"][0]
    assert first == {"code": -32000, "message": "Bad request", "data": {"code": "BAD_REQUEST"}}
    assert method(document, "whoami")["x-tether"]["auth"] is not None


async def test_rpc_discover_answers_the_same_document() -> None:
    app = create_app()
    document = await document_of(app)
    async with client_for(app) as client:
        choices: tuple[object, ...] = (None, [], {})
        for params in choices:
            message: dict[str, Any] = {"jsonrpc": "2.0", "method": "rpc.discover", "id": 1}
            if params is not None:
                message["params"] = params
            response = await client.post("/api/jsonrpc", json=message)
            assert response.json() == {"jsonrpc": "2.0", "id": 1, "result": document}
        bad = await client.post(
            "/api/jsonrpc",
            json={"jsonrpc": "2.0", "method": "rpc.discover", "params": {"x": 1}, "id": 2},
        )
        silent = await client.post(
            "/api/jsonrpc", json={"jsonrpc": "2.0", "method": "rpc.discover"}
        )
    assert bad.json()["error"]["code"] == -32602
    assert silent.status_code == 204


async def test_options_of_operations_show_in_their_methods() -> None:
    class Item(BaseModel):
        name: str
        price: float

    api = Tether(tags=["shop"])

    @api.command(
        summary="Buy things",
        description="Buy every item.",
        deprecated=True,
        tags=["orders"],
        errors=[Conflict],
    )
    async def buy(
        items: list[Item],
        schema: Annotated[str, Field(description="How to pay.")] = "card",
    ) -> list[Item]:
        return items

    app = FastAPI(title="Shop", version="2.1", description="Sells things.")
    api.mount(app)
    document = await document_of(app)
    assert document["info"] == {"title": "Shop", "version": "2.1", "description": "Sells things."}
    buy_method = method(document, "buy")
    assert buy_method["summary"] == "Buy things"
    assert buy_method["description"] == "Buy every item."
    assert buy_method["deprecated"] is True
    assert buy_method["tags"] == [{"name": "shop"}, {"name": "orders"}]
    # `schema` shadows a BaseModel attribute: still documented under its own name.
    assert [p["name"] for p in buy_method["params"]] == ["items", "schema"]
    assert buy_method["params"][1]["description"] == "How to pay."
    assert buy_method["params"][1]["required"] is False
    assert resolve(document, buy_method["params"][0]["schema"]["items"])["title"] == "Item"
    assert {"code": -32009, "message": "Conflict", "data": {"code": "CONFLICT"}} in buy_method[
        "errors"
    ]


async def test_operations_added_after_mounting_are_discovered() -> None:
    api = Tether()

    @api.query
    async def first() -> int:
        return 1

    app = FastAPI()
    api.mount(app)
    assert [m["name"] for m in (await document_of(app))["methods"]] == ["first"]

    @api.query
    async def second() -> int:
        return 2

    assert [m["name"] for m in (await document_of(app))["methods"]] == ["first", "second"]


async def test_an_operation_without_a_json_schema_fails_discovery_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = Tether()

    @api.query
    async def callback() -> Callable[[], int]:
        return lambda: 1

    app = FastAPI()
    api.mount(app)
    with caplog.at_level(logging.ERROR, logger="tether"):
        async with client_for(app) as client:
            response = await client.get("/api/openrpc.json")
            discover = await client.post(
                "/api/jsonrpc", json={"jsonrpc": "2.0", "method": "rpc.discover", "id": 1}
            )
    assert response.status_code == 500
    assert response.json()["error"]["code"] == -32603
    assert discover.json()["error"] == {
        "code": -32603,
        "message": "Internal server error",
        "data": {"code": "INTERNAL_ERROR", "details": None},
    }
    assert "'rpc.discover' failed" in caplog.text


def test_a_document_can_be_built_before_mounting() -> None:
    api = Tether(prefix="/rpc")

    class Out(BaseModel):
        value: int

    @api.query
    async def get(n: int, dep: Annotated[int, Depends(lambda: 1)]) -> Out:
        return Out(value=n + dep)

    document = openrpc_document(api)
    assert document["info"] == {"title": "tether", "version": "0"}
    assert document["servers"][0]["url"] == "/rpc/jsonrpc"
    # Dependencies are not params.
    assert [p["name"] for p in document["methods"][0]["params"]] == ["n"]
    assert json.loads(json.dumps(document)) == document
    titled = openrpc_document(api, title="T", version="9", server_url="https://x.test/rpc")
    assert titled["info"] == {"title": "T", "version": "9"}
    assert titled["servers"][0]["url"] == "https://x.test/rpc"
