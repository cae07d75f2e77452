"""Cache effects on the WebSocket: envelope replies carry `invalidate` and `merge` in their
`headers`; JSON-RPC responses stay the specification's unless the socket opted in
(`?effects=1`, or `rpc.hello` with `{"effects": true}`).

No `from __future__ import annotations`: operations defined inside tests annotate with
local names, which FastAPI resolves at registration.
"""

from typing import Any

import pytest
from fastapi import FastAPI, Response

from tests._cache_users import effects_api
from tests.transports.test_websocket import MemorySocket, mount


def make_app() -> FastAPI:
    api = effects_api()

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> str:
        return title

    @api.command(affects=["todos"])
    async def with_header(owner_id: int, response: Response) -> int:
        response.headers["x-note"] = "kept"
        return owner_id

    return mount(api)[0]


@pytest.fixture
def app() -> FastAPI:
    return make_app()


def socket(app: FastAPI, query: bytes = b"") -> MemorySocket:
    ws = MemorySocket(app)
    ws.scope["query_string"] = query
    return ws


def rpc(method: str, params: Any, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if id is not None:
        message["id"] = id
    return message


INVALIDATED = [{"context": "todos", "params": {"owner_id": 5}}]
MERGED = [{"context": "user", "slot": "current_user", "value": {"id": 1, "name": "bob"}}]


# -- envelope ------------------------------------------------------------------------------


async def test_envelope_reply_headers_carry_invalidate(app: FastAPI) -> None:
    async with socket(app) as ws:
        reply = await ws.call(
            {"uuid": "a", "route": "add_todo", "payload": {"owner_id": 5, "title": "x"}}
        )
    assert reply == {
        "uuid": "a",
        "status": 200,
        "headers": {"invalidate": INVALIDATED},
        "payload": "x",
    }


async def test_envelope_reply_headers_carry_merge(app: FastAPI) -> None:
    async with socket(app) as ws:
        reply = await ws.call({"uuid": 2, "route": "rename", "payload": {"name": "bob"}})
    assert reply == {
        "uuid": 2,
        "status": 200,
        "headers": {"merge": MERGED},
        "payload": {"id": 1, "name": "bob"},
    }


async def test_envelope_effects_sit_beside_the_calls_own_headers(app: FastAPI) -> None:
    async with socket(app) as ws:
        reply = await ws.call({"uuid": 3, "route": "with_header", "payload": {"owner_id": 5}})
    assert reply["headers"] == {"x-note": "kept", "invalidate": INVALIDATED}
    assert reply["payload"] == 5


async def test_envelope_without_effects_is_unchanged(app: FastAPI) -> None:
    async with socket(app) as ws:
        plain = await ws.call({"uuid": 4, "route": "plain", "payload": {"value": 1}})
        refused = await ws.call({"uuid": 5, "route": "refuse", "payload": {"owner_id": 1}})
    assert plain == {"uuid": 4, "status": 200, "headers": {}, "payload": 1}
    assert refused["status"] == 409
    assert "invalidate" not in refused.get("headers", {})


# -- JSON-RPC --------------------------------------------------------------------------------


async def test_jsonrpc_without_opt_in_is_pure(app: FastAPI) -> None:
    async with socket(app) as ws:
        answer = await ws.call(rpc("add_todo", {"owner_id": 5, "title": "x"}))
    assert answer == {"jsonrpc": "2.0", "id": 1, "result": "x"}


async def test_jsonrpc_with_effects_query_gets_the_member(app: FastAPI) -> None:
    async with socket(app, b"effects=1") as ws:
        invalidated = await ws.call(rpc("add_todo", {"owner_id": 5, "title": "x"}))
        merged = await ws.call(rpc("rename", ["bob"], id=2))
        plain = await ws.call(rpc("plain", [3], id=3))
        batch = await ws.call(
            [rpc("add_todo", {"owner_id": 5, "title": "y"}, id=4), rpc("plain", [1], id=5)]
        )
    assert invalidated["effects"] == {"invalidate": INVALIDATED, "merge": []}
    assert merged["effects"] == {"invalidate": [], "merge": MERGED}
    assert plain == {"jsonrpc": "2.0", "id": 3, "result": 3}
    by_id = {item["id"]: item for item in batch}
    assert by_id[4]["effects"] == {"invalidate": INVALIDATED, "merge": []}
    assert by_id[5] == {"jsonrpc": "2.0", "id": 5, "result": 1}


async def test_rpc_hello_opts_in_and_out(app: FastAPI) -> None:
    async with socket(app) as ws:
        hello = await ws.call(rpc("rpc.hello", {"effects": True}, id="h"))
        opted = await ws.call(rpc("add_todo", {"owner_id": 5, "title": "x"}, id=2))
        bye = await ws.call(rpc("rpc.hello", {"effects": False}, id="h2"))
        pure = await ws.call(rpc("add_todo", {"owner_id": 5, "title": "x"}, id=3))
        asked = await ws.call({"jsonrpc": "2.0", "id": 4, "method": "rpc.hello"})
    assert hello == {"jsonrpc": "2.0", "id": "h", "result": {"effects": True}}
    assert opted["effects"] == {"invalidate": INVALIDATED, "merge": []}
    assert bye == {"jsonrpc": "2.0", "id": "h2", "result": {"effects": False}}
    assert pure == {"jsonrpc": "2.0", "id": 3, "result": "x"}
    assert asked == {"jsonrpc": "2.0", "id": 4, "result": {"effects": False}}


async def test_rpc_hello_as_a_notification_opts_in_silently(app: FastAPI) -> None:
    async with socket(app) as ws:
        await ws.send_json(rpc("rpc.hello", {"effects": True}, id=None))
        answer = await ws.call(rpc("rename", {"name": "bob"}, id=1))
    assert answer["id"] == 1
    assert answer["effects"] == {"invalidate": [], "merge": MERGED}


@pytest.mark.parametrize("params", [{"effects": "yes"}, [True]], ids=["not-bool", "positional"])
async def test_rpc_hello_with_bad_params_is_invalid_params(app: FastAPI, params: Any) -> None:
    async with socket(app) as ws:
        answer = await ws.call(rpc("rpc.hello", params, id=9))
        after = await ws.call(rpc("add_todo", {"owner_id": 5, "title": "x"}, id=10))
    assert answer["id"] == 9
    assert answer["error"]["code"] == -32602
    assert after == {"jsonrpc": "2.0", "id": 10, "result": "x"}
