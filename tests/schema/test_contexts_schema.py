"""Contexts in the schemas: OpenAPI's context routes, `x-tether` cache fields and
`x-tether-contexts`; the same fields and object in OpenRPC.

No `from __future__ import annotations`: operations defined inside tests annotate with
local names, which FastAPI resolves at registration.
"""

from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from tests._core_helpers import asgi_client, mounted
from tether import Tether


class Todo(BaseModel):
    id: int
    title: str


class Profile(BaseModel):
    id: int
    name: str


class Window(BaseModel):
    start: int
    end: int


async def current_user(x_user: Annotated[str | None, Header()] = None) -> dict[str, Any] | None:
    return {"id": x_user, "is_staff": True} if x_user else None


def make_api() -> Tether:
    api = Tether(user=Depends(current_user))
    api.context("user", per_user=True, description="Who is signed in.")

    @api.query(context="todos", rev=2)
    async def todos(owner_id: Annotated[int, Field(ge=1)]) -> list[Todo]:
        return []

    @api.query(context="todos")
    async def todo_count(owner_id: int, tags: list[str] | None = None) -> int:
        return 0

    @api.query(context="user", auth=True)
    async def current_profile() -> Profile:
        return Profile(id=1, name="ada")

    @api.query(context="window")
    async def in_window(window: Window) -> int:
        return 0

    @api.query
    async def search(text: str) -> list[str]:
        return []

    @api.command(affects=["todos", search], merge={"user": "current_profile"})
    async def everything(owner_id: int, text: str) -> Profile:
        return Profile(id=1, name=text)

    @api.command(affects=["todos"])
    async def clear() -> None:
        return None

    @api.command
    async def plain() -> None:
        return None

    return api


async def openapi(app: FastAPI) -> dict[str, Any]:
    async with asgi_client(app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


async def openrpc(app: FastAPI) -> dict[str, Any]:
    async with asgi_client(app) as client:
        response = await client.get("/api/openrpc.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


CONTEXTS = {
    "todos": {
        "slots": ["todos", "todo_count"],
        "params": {"owner_id": True, "tags": False},
        "rev": "todos:2",
        "per_user": False,
    },
    "user": {
        "slots": ["current_profile"],
        "params": {},
        "rev": None,
        "per_user": True,
    },
    "window": {"slots": ["in_window"], "params": {"window": True}, "rev": None, "per_user": False},
}


async def test_openapi_lists_the_contexts() -> None:
    document = await openapi(mounted(make_api()))
    assert document["x-tether-contexts"] == CONTEXTS


async def test_openapi_x_tether_has_the_cache_fields() -> None:
    paths = (await openapi(mounted(make_api())))["paths"]
    todos = paths["/api/call/todos"]
    for method in ("get", "post"):
        assert todos[method]["x-tether"]["context"] == "todos"
        assert todos[method]["x-tether"]["rev"] == "2"
    count = paths["/api/call/todo_count"]["post"]["x-tether"]
    assert count["context"] == "todos"
    assert "rev" not in count
    everything = paths["/api/call/everything"]["post"]["x-tether"]
    assert everything["affects"] == [
        {"context": "todos", "params": ["owner_id"]},
        {"query": "search", "params": ["text"]},
    ]
    assert everything["merge"] == [{"context": "user", "slot": "current_profile"}]
    assert paths["/api/call/clear"]["post"]["x-tether"]["affects"] == [
        {"context": "todos", "params": []}
    ]
    assert "merge" not in paths["/api/call/clear"]["post"]["x-tether"]
    # Operations without cache coordination keep the extension as it was.
    assert set(paths["/api/call/plain"]["post"]["x-tether"]) == {"name", "kind", "auth", "errors"}
    assert set(paths["/api/call/search"]["post"]["x-tether"]) == {"name", "kind", "auth", "errors"}
    # The JSON-RPC and WebSocket documentation routes are left alone.
    assert "x-tether-contexts" not in paths["/api/jsonrpc"]["post"]


async def test_openapi_documents_each_context_route() -> None:
    document = await openapi(mounted(make_api()))
    route = document["paths"]["/api/context/todos"]
    get = route["get"]
    assert get["tags"] == ["contexts"]
    assert get["operationId"] == "todos__context"
    assert route["post"]["operationId"] == "todos__context_post"
    parameters = {p["name"]: p for p in get["parameters"]}
    assert parameters["owner_id"]["required"] is True
    assert parameters["owner_id"]["in"] == "query"
    assert parameters["owner_id"]["schema"]["type"] == "integer"
    assert parameters["owner_id"]["schema"]["minimum"] == 1
    assert parameters["tags"]["required"] is False
    assert {"type": "array", "items": {"type": "string"}} in parameters["tags"]["schema"]["anyOf"]
    ok = get["responses"]["200"]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]
    result = schemas[ok["$ref"].rsplit("/", 1)[1]]
    assert result["required"] == ["result"]
    slots = schemas[result["properties"]["result"]["$ref"].rsplit("/", 1)[1]]
    assert set(slots["properties"]) == {"todos", "todo_count"}
    assert slots["properties"]["todos"]["items"]["$ref"].endswith("/Todo")
    assert slots["properties"]["todo_count"]["type"] == "integer"
    assert {"400", "422", "500"} <= set(get["responses"])
    post_body = route["post"]["requestBody"]
    assert post_body["required"] is True
    assert "415" in route["post"]["responses"]


async def test_a_context_with_auth_documents_the_gate_and_its_errors() -> None:
    document = await openapi(mounted(make_api()))
    route = document["paths"]["/api/context/user"]["get"]
    assert route["description"] == "Who is signed in."
    assert {"401", "403"} <= set(route["responses"])
    assert "x-user" in {p["name"] for p in route["parameters"]}


async def test_structured_params_are_documented_as_post_only() -> None:
    document = await openapi(mounted(make_api()))
    route = document["paths"]["/api/context/window"]
    assert set(route) == {"post"}


async def test_contexts_registered_after_mount_are_documented() -> None:
    api = make_api()
    app = mounted(api)
    before = await openapi(app)
    assert "/api/context/late" not in before["paths"]

    @api.query(context="late")
    async def late_one(n: int) -> int:
        return n

    @api.query(context="todos")
    async def todo_titles(owner_id: int) -> list[str]:
        return []

    after = await openapi(app)
    assert "/api/context/late" in after["paths"]
    assert after["x-tether-contexts"]["late"]["slots"] == ["late_one"]
    assert after["x-tether-contexts"]["todos"]["slots"] == ["todos", "todo_count", "todo_titles"]
    # Rebuilt, not added to: one GET and one POST route per context.
    todos_routes = [
        route
        for route in app.router.routes
        if isinstance(route, APIRoute) and route.path == "/api/context/todos"
    ]
    assert sorted(method for route in todos_routes for method in route.methods) == [
        "GET",
        "POST",
    ]


async def test_without_contexts_the_document_has_no_contexts_object() -> None:
    api = Tether()

    @api.query
    async def ping() -> str:
        return "pong"

    app = mounted(api)
    document = await openapi(app)
    assert "x-tether-contexts" not in document
    assert not [path for path in document["paths"] if "/context/" in path]
    assert "x-tether-contexts" not in await openrpc(app)


async def test_openrpc_has_the_same_fields_and_contexts() -> None:
    document = await openrpc(mounted(make_api()))
    assert document["x-tether-contexts"] == CONTEXTS
    methods = {method["name"]: method for method in document["methods"]}
    assert methods["todos"]["x-tether"]["context"] == "todos"
    assert methods["todos"]["x-tether"]["rev"] == "2"
    assert methods["everything"]["x-tether"]["affects"] == [
        {"context": "todos", "params": ["owner_id"]},
        {"query": "search", "params": ["text"]},
    ]
    assert methods["everything"]["x-tether"]["merge"] == [
        {"context": "user", "slot": "current_profile"}
    ]
    assert set(methods["plain"]["x-tether"]) == {"name", "kind", "auth", "errors"}


@pytest.mark.parametrize("strict", [False, True], ids=["lax", "strict"])
async def test_documented_required_params_are_what_the_bundle_needs(strict: bool) -> None:
    api = Tether(strict=strict)

    @api.query(context="listing")
    async def listing(done: bool | None = None) -> int:
        return 0

    @api.query(context="pair")
    async def first(owner_id: int, page: int) -> int:
        return page

    @api.query(context="pair")
    async def second(owner_id: int, size: int = 10) -> int:
        return size

    @api.query(context="flagged")
    async def flag_default(flag: bool | None = None) -> bool | None:
        return flag

    @api.query(context="flagged")
    async def flag_needed(flag: bool | None) -> bool | None:
        return flag

    app = mounted(api)
    document = await openapi(app)
    values = {"done": "true", "owner_id": "1", "page": "2", "size": "3", "flag": "false"}
    checked = 0
    async with asgi_client(app) as client:
        for name in ("listing", "pair", "flagged"):
            for parameter in document["paths"][f"/api/context/{name}"]["get"]["parameters"]:
                # A required param documented as nullable takes `null` (a strict query
                # string reads it as None); a lax one has no null to send.
                nullable = {"type": "null"} in parameter["schema"].get("anyOf", ())
                if parameter["required"] and nullable:
                    sent = await client.get(
                        f"/api/context/{name}", params={parameter["name"]: "null"}
                    )
                    assert sent.status_code == 200, sent.text
                params = {
                    p["name"]: values[p["name"]]
                    for p in document["paths"][f"/api/context/{name}"]["get"]["parameters"]
                    if p["name"] != parameter["name"]
                }
                without = await client.get(f"/api/context/{name}", params=params)
                assert (without.status_code == 422) == parameter["required"], parameter
                checked += 1
    assert checked == 5
    flag = document["paths"]["/api/context/flagged"]["get"]["parameters"][0]
    assert flag["required"] is True
    assert ({"type": "null"} in flag["schema"].get("anyOf", ())) == strict
    # The POST body documents the same needs.
    for name in ("listing", "pair", "flagged"):
        route = document["paths"][f"/api/context/{name}"]
        required = {p["name"] for p in route["get"]["parameters"] if p["required"]}
        body = route["post"]["requestBody"]["content"]["application/json"]["schema"]
        model = document["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
        assert set(model.get("required", ())) == required
        assert model["additionalProperties"] is False
        assert (
            required == {"listing": set(), "pair": {"owner_id", "page"}, "flagged": {"flag"}}[name]
        )
