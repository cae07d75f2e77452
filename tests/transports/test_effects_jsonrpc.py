"""Cache effects over JSON-RPC on HTTP: responses stay the specification's unless the client
sends `X-Tether-Effects: 1`, then a response whose call had effects gets the `effects`
member; the HTTP answer carries `X-Tether-Invalidate` (every call's, in message order) and
`Cache-Control: no-store` when the message calls a command.

No `from __future__ import annotations`: operations defined inside tests annotate with
local names, which FastAPI resolves at registration.
"""

import json
from typing import Any

import anyio
import pytest
from fastapi import FastAPI

from tests._cache_users import effects_api
from tests._core_helpers import asgi_client, mounted

OPT_IN = {"X-Tether-Effects": "1"}


def make_app() -> FastAPI:
    api = effects_api()

    @api.query
    async def add(a: int, b: int) -> int:
        return a + b

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> str:
        # The later item finishes first: the header still follows the message's order.
        await anyio.sleep(0.05 if owner_id == 1 else 0)
        return title

    return mounted(api)


@pytest.fixture
def app() -> FastAPI:
    return make_app()


def request(method: str, params: Any, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if id is not None:
        message["id"] = id
    return message


async def test_without_opt_in_the_response_is_pure(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/jsonrpc", json=request("add_todo", {"owner_id": 5, "title": "x"})
        )
    assert response.json() == {"jsonrpc": "2.0", "id": 1, "result": "x"}
    assert response.headers["cache-control"] == "no-store"
    assert json.loads(response.headers["x-tether-invalidate"]) == [
        {"context": "todos", "params": {"owner_id": 5}}
    ]


async def test_with_opt_in_the_effects_member_is_added(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        invalidated = await client.post(
            "/api/jsonrpc",
            json=request("add_todo", {"owner_id": 5, "title": "x"}),
            headers=OPT_IN,
        )
        merged = await client.post(
            "/api/jsonrpc", json=request("rename", ["bob"], id="r"), headers=OPT_IN
        )
    assert invalidated.json() == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": "x",
        "effects": {"invalidate": [{"context": "todos", "params": {"owner_id": 5}}], "merge": []},
    }
    assert merged.json() == {
        "jsonrpc": "2.0",
        "id": "r",
        "result": {"id": 1, "name": "bob"},
        "effects": {
            "invalidate": [],
            "merge": [
                {"context": "user", "slot": "current_user", "value": {"id": 1, "name": "bob"}}
            ],
        },
    }
    assert "x-tether-invalidate" not in merged.headers
    assert merged.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("value", ["0", "yes", "true"])
async def test_only_the_value_1_opts_in(app: FastAPI, value: str) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/jsonrpc",
            json=request("rename", {"name": "bob"}),
            headers={"X-Tether-Effects": value},
        )
    assert "effects" not in response.json()


async def test_a_query_only_message_has_no_cache_headers(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/jsonrpc",
            json=[request("add", [1, 2], id=1), request("todos", {"owner_id": 1}, id=2)],
            headers=OPT_IN,
        )
    assert response.json() == [
        {"jsonrpc": "2.0", "id": 1, "result": 3},
        {"jsonrpc": "2.0", "id": 2, "result": []},
    ]
    assert "cache-control" not in response.headers
    assert "x-tether-invalidate" not in response.headers


async def test_a_command_without_effects_is_not_stored_and_stays_pure(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/jsonrpc", json=request("plain", {"value": 2}), headers=OPT_IN
        )
    assert response.json() == {"jsonrpc": "2.0", "id": 1, "result": 2}
    assert response.headers["cache-control"] == "no-store"
    assert "x-tether-invalidate" not in response.headers


async def test_a_batch_of_mixed_items(app: FastAPI) -> None:
    batch = [
        request("add_todo", {"owner_id": 1, "title": "slow"}, id=1),
        request("add", [2, 3], id=2),
        request("refuse", {"owner_id": 9}, id=3),
        request("add_todo", {"owner_id": 2, "title": "fast"}, id=None),  # a notification
        request("rename", {"name": "eve"}, id=4),
        request("nope", {}, id=5),
    ]
    async with asgi_client(app) as client:
        pure = await client.post("/api/jsonrpc", json=batch)
        opted = await client.post("/api/jsonrpc", json=batch, headers=OPT_IN)
    for response in (pure, opted):
        assert response.headers["cache-control"] == "no-store"
        # Every call's invalidations, the notification's too, in the message's order.
        assert json.loads(response.headers["x-tether-invalidate"]) == [
            {"context": "todos", "params": {"owner_id": 1}},
            {"context": "todos", "params": {"owner_id": 2}},
        ]
    by_id = {item["id"]: item for item in pure.json()}
    assert sorted(by_id) == [1, 2, 3, 4, 5]
    assert all("effects" not in item for item in by_id.values())
    opted_by_id = {item["id"]: item for item in opted.json()}
    assert opted_by_id[1]["effects"] == {
        "invalidate": [{"context": "todos", "params": {"owner_id": 1}}],
        "merge": [],
    }
    assert opted_by_id[4]["effects"]["merge"][0]["value"] == {"id": 1, "name": "eve"}
    for plain_id in (2, 3, 5):
        assert "effects" not in opted_by_id[plain_id]
        assert opted_by_id[plain_id] == by_id[plain_id]
    assert opted_by_id[3]["error"]["data"]["code"] == "CONFLICT"


async def test_notifications_only_answer_204_with_the_headers(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/jsonrpc",
            json=[
                request("add_todo", {"owner_id": 7, "title": "a"}, id=None),
                request("rename", {"name": "x"}, id=None),
            ],
            headers=OPT_IN,
        )
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    assert json.loads(response.headers["x-tether-invalidate"]) == [
        {"context": "todos", "params": {"owner_id": 7}}
    ]


async def test_a_failed_command_has_no_invalidate_header(app: FastAPI) -> None:
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/jsonrpc", json=request("refuse", {"owner_id": 1}), headers=OPT_IN
        )
    body = response.json()
    assert body["error"]["data"]["code"] == "CONFLICT"
    assert "effects" not in body
    assert "x-tether-invalidate" not in response.headers
    assert response.headers["cache-control"] == "no-store"
