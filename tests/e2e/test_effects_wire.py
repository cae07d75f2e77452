"""Cache effects on the wire, against a real uvicorn server on loopback.

An HTTP call's body and headers; a context bundle; JSON-RPC built and parsed by
`jsonrpcclient` (pure without the opt-in header, the `effects` member with it); a
WebSocket envelope reply's headers and a JSON-RPC socket opted in with `?effects=1`,
driven by the `websockets` client.

No `from __future__ import annotations`: operations defined inside tests annotate with
local names, which FastAPI resolves at registration.
"""

import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from jsonrpcclient import Ok, parse, request_json
from pydantic import BaseModel
from websockets.sync.client import connect

from tests.conftest import LiveServer, serve
from tether import Tether

pytestmark = pytest.mark.e2e


class Todo(BaseModel):
    id: int
    owner_id: int
    title: str


class Profile(BaseModel):
    id: int
    name: str


def create_app() -> FastAPI:
    api = Tether()
    store: dict[int, list[Todo]] = {}

    @api.query(context="todos", rev=4)
    async def todos(owner_id: int) -> list[Todo]:
        return store.get(owner_id, [])

    @api.query(context="todos")
    async def todo_count(owner_id: int) -> int:
        return len(store.get(owner_id, []))

    @api.query(context="user")
    async def current_user() -> Profile:
        return Profile(id=1, name="ada")

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> Todo:
        todo = Todo(id=len(store.get(owner_id, [])) + 1, owner_id=owner_id, title=title)
        store.setdefault(owner_id, []).append(todo)
        return todo

    @api.command(merge=["user"])
    async def rename(name: str) -> Profile:
        return Profile(id=1, name=name)

    app = FastAPI()
    api.mount(app)
    return app


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with serve(create_app()) as live:
        yield live


INVALIDATED = [{"context": "todos", "params": {"owner_id": 5}}]


def test_http_call_body_and_headers(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        added = client.post("/api/call/add_todo", json={"owner_id": 5, "title": "milk"})
        renamed = client.post("/api/call/rename", json={"name": "bob"})
        bundle = client.get("/api/context/todos", params={"owner_id": 5})
    assert added.status_code == 200
    assert added.json() == {
        "result": {"id": 1, "owner_id": 5, "title": "milk"},
        "invalidate": INVALIDATED,
    }
    assert json.loads(added.headers["x-tether-invalidate"]) == INVALIDATED
    assert added.headers["cache-control"] == "no-store"
    assert renamed.json()["merge"] == [
        {"context": "user", "slot": "current_user", "value": {"id": 1, "name": "bob"}}
    ]
    assert renamed.headers["cache-control"] == "no-store"
    assert bundle.status_code == 200
    assert bundle.headers["cache-control"] == "no-cache"
    assert bundle.headers["x-tether-rev"] == "todos:4"
    assert bundle.json()["result"]["todo_count"] >= 1


def test_jsonrpcclient_stays_pure_without_the_header(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        pure = client.post(
            "/api/jsonrpc",
            content=request_json("add_todo", params={"owner_id": 5, "title": "a"}),
            headers={"content-type": "application/json"},
        )
        opted = client.post(
            "/api/jsonrpc",
            content=request_json("add_todo", params={"owner_id": 5, "title": "b"}),
            headers={"content-type": "application/json", "X-Tether-Effects": "1"},
        )
    pure_body = pure.json()
    assert set(pure_body) == {"jsonrpc", "id", "result"}
    parsed = parse(pure_body)
    assert isinstance(parsed, Ok)
    assert parsed.result["title"] == "a"
    assert pure.headers["cache-control"] == "no-store"
    assert json.loads(pure.headers["x-tether-invalidate"]) == INVALIDATED
    opted_body = opted.json()
    assert opted_body["effects"] == {"invalidate": INVALIDATED, "merge": []}
    # The extension member does not trouble a client that knows nothing of it.
    opted_parsed = parse(opted_body)
    assert isinstance(opted_parsed, Ok)
    assert opted_parsed.result["title"] == "b"


def test_websocket_envelope_headers_and_jsonrpc_opt_in(server: LiveServer) -> None:
    with connect(f"{server.ws_url}/api/ws") as ws:
        ws.send(
            json.dumps(
                {"uuid": "u1", "route": "add_todo", "payload": {"owner_id": 5, "title": "c"}}
            )
        )
        reply = json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "rename", "params": ["x"]}))
        pure = json.loads(ws.recv(timeout=10))
    assert reply["uuid"] == "u1"
    assert reply["status"] == 200
    assert reply["headers"] == {"invalidate": INVALIDATED}
    assert reply["payload"]["title"] == "c"
    assert pure == {"jsonrpc": "2.0", "id": 1, "result": {"id": 1, "name": "x"}}
    with connect(f"{server.ws_url}/api/ws?effects=1") as ws:
        ws.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "rename", "params": ["y"]}))
        opted = json.loads(ws.recv(timeout=10))
    assert opted["effects"] == {
        "invalidate": [],
        "merge": [{"context": "user", "slot": "current_user", "value": {"id": 1, "name": "y"}}],
    }
