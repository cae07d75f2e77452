"""Cache effects on the HTTP call route: `invalidate` and `merge` beside `result`, the
`X-Tether-Invalidate` header, and `Cache-Control: no-store` on every answer to a command.

No `from __future__ import annotations`: operations defined inside tests annotate with
local names, which FastAPI resolves at registration.
"""

import json
from typing import Any

import pytest
from fastapi import FastAPI, Response

from tests._cache_users import Profile, Todo, effects_api
from tests._core_helpers import asgi_client, mounted


def make_app() -> FastAPI:
    api = effects_api()

    @api.query
    async def search(text: str) -> list[str]:
        return [text]

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> Todo:
        return Todo(id=2, owner_id=owner_id, title=title)

    @api.command(affects=["todos"])
    async def clear_all() -> int:
        return 0

    @api.command(affects=["todos", "search"], merge={"user": "current_user"})
    async def everything(owner_id: int, text: str, name: str) -> Profile:
        return Profile(id=1, name=name)

    @api.command(affects=["todos"])
    async def created(owner_id: int, response: Response) -> int:
        response.status_code = 201
        response.headers["cache-control"] = "max-age=60"
        response.headers["x-extra"] = "kept"
        return owner_id

    return mounted(api)


@pytest.fixture
def app() -> FastAPI:
    return make_app()


async def test_affects_adds_invalidate_and_its_header(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/api/call/add_todo", json={"owner_id": 5, "title": "x"})
    assert response.status_code == 200
    assert response.json() == {
        "result": {"id": 2, "owner_id": 5, "title": "x"},
        "invalidate": [{"context": "todos", "params": {"owner_id": 5}}],
    }
    assert json.loads(response.headers["x-tether-invalidate"]) == [
        {"context": "todos", "params": {"owner_id": 5}}
    ]
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["content-length"]) == len(response.content)


async def test_unscoped_invalidation_names_the_whole_context(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/api/call/clear_all", json={})
    assert response.json() == {"result": 0, "invalidate": [{"context": "todos"}]}
    assert response.headers["x-tether-invalidate"] == '[{"context":"todos"}]'


async def test_merge_adds_merge_without_an_invalidate_header(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/api/call/rename", json={"name": "bob"})
    assert response.json() == {
        "result": {"id": 1, "name": "bob"},
        "merge": [{"context": "user", "slot": "current_user", "value": {"id": 1, "name": "bob"}}],
    }
    assert "x-tether-invalidate" not in response.headers
    assert response.headers["cache-control"] == "no-store"


async def test_both_members_and_a_query_of_no_context(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/call/everything", json={"owner_id": 3, "text": "héllo", "name": "zoë"}
        )
    body = response.json()
    assert body["invalidate"] == [
        {"context": "todos", "params": {"owner_id": 3}},
        {"query": "search", "params": {"text": "héllo"}},
    ]
    assert body["merge"] == [
        {"context": "user", "slot": "current_user", "value": {"id": 1, "name": "zoë"}}
    ]
    raw = response.headers.raw
    header = next(value for name, value in raw if name.lower() == b"x-tether-invalidate")
    # ASCII JSON: a non-ASCII param is escaped, and the header parses to the same list.
    assert b"\\u00e9" in header
    assert header.isascii()
    assert json.loads(header) == body["invalidate"]


async def test_a_command_without_effects_stays_plain_but_is_not_stored(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/api/call/plain", json={"value": 4})
    assert response.content == b'{"result":4}'
    assert response.headers["cache-control"] == "no-store"
    assert "x-tether-invalidate" not in response.headers


async def test_queries_carry_no_cache_headers(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        got = await client.get("/api/call/todos", params={"owner_id": 1})
        posted = await client.post("/api/call/search", json={"text": "a"})
    for response in (got, posted):
        assert response.status_code == 200
        assert "cache-control" not in response.headers
        assert "x-tether-invalidate" not in response.headers
        assert set(response.json()) == {"result"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/call/refuse", {"owner_id": 1}, 409),
        ("POST", "/api/call/add_todo", {"owner_id": "x"}, 422),
        ("GET", "/api/call/add_todo", None, 405),
    ],
    ids=["raised", "invalid", "wrong-method"],
)
async def test_a_failed_command_says_no_store_and_has_no_effects(
    app: FastAPI, method: str, path: str, body: Any, status: int
) -> None:
    async with asgi_client(app) as client:
        response = await client.request(method, path, json=body)
    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"
    assert "x-tether-invalidate" not in response.headers
    assert set(response.json()) == {"error"}


async def test_an_unknown_operation_is_not_a_command(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/api/call/nope", json={})
    assert response.status_code == 404
    assert "cache-control" not in response.headers


async def test_a_dependencys_status_and_headers_stay_but_not_its_caching(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post("/api/call/created", json={"owner_id": 8})
    assert response.status_code == 201
    assert response.headers["x-extra"] == "kept"
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert response.json()["invalidate"] == [{"context": "todos", "params": {"owner_id": 8}}]
