"""The todo demo end to end, over a real uvicorn server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from websockets.sync.client import connect

import tether.demo.app as todo
from tests.conftest import LiveServer, free_port
from tether import Forbidden, NotFound, Unauthorized

ADA = {"Authorization": "Bearer ada"}
BOB = {"Authorization": "Bearer bob"}
ADMIN = {"Authorization": "Bearer admin"}


def call(
    client: httpx.Client, name: str, params: dict[str, Any] | None = None, headers: Any = None
) -> httpx.Response:
    return client.post(f"/api/call/{name}", json=params or {}, headers=headers)


def result(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["result"]


def error_code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["code"])


@pytest.fixture
def client(live_server: Callable[..., LiveServer], tmp_path: Path) -> httpx.Client:
    server = live_server(todo.create_app(tmp_path / "todo.db"))
    return httpx.Client(base_url=server.url)


def test_add_list_toggle_delete(client: httpx.Client) -> None:
    with client:
        assert result(call(client, "list_todos")) == []
        first = result(call(client, "add_todo", {"title": "write docs"}, ADA))
        assert first == {"id": 1, "title": "write docs", "done": False, "owner": "ada"}
        second = result(call(client, "add_todo", {"title": "ship it"}, BOB))
        assert [t["title"] for t in result(call(client, "list_todos"))] == [
            "write docs",
            "ship it",
        ]

        toggled = result(call(client, "toggle_todo", {"id": first["id"]}, ADA))
        assert toggled["done"] is True
        assert result(call(client, "get_todo", {"id": first["id"]}))["done"] is True
        # Queries also answer GET, with the input in the query string.
        done = client.get("/api/call/list_todos", params={"done": "true"})
        assert [t["id"] for t in result(done)] == [first["id"]]
        still_open = client.get("/api/call/list_todos", params={"done": "false"})
        assert [t["id"] for t in result(still_open)] == [second["id"]]

        assert result(call(client, "delete_todo", {"id": first["id"]}, ADA)) is None
        assert [t["id"] for t in result(call(client, "list_todos"))] == [second["id"]]


def test_not_found(client: httpx.Client) -> None:
    with client:
        response = call(client, "get_todo", {"id": 99})
        assert error_code(response, 404) == "NOT_FOUND"
        assert response.json()["error"]["details"] == {"id": 99}
        assert error_code(call(client, "toggle_todo", {"id": 99}, ADA), 404) == "NOT_FOUND"
        assert error_code(call(client, "delete_todo", {"id": 99}, ADA), 404) == "NOT_FOUND"


def test_auth(client: httpx.Client) -> None:
    with client:
        assert error_code(call(client, "add_todo", {"title": "x"}), 401) == "UNAUTHORIZED"
        bad_scheme = {"Authorization": "Basic ada"}
        assert error_code(call(client, "add_todo", {"title": "x"}, bad_scheme), 401) == (
            "UNAUTHORIZED"
        )
        todo_id = result(call(client, "add_todo", {"title": "mine"}, ADA))["id"]
        assert error_code(call(client, "toggle_todo", {"id": todo_id}), 401) == "UNAUTHORIZED"
        # Only the owner or staff may delete.
        assert error_code(call(client, "delete_todo", {"id": todo_id}, BOB), 403) == "FORBIDDEN"
        assert result(call(client, "delete_todo", {"id": todo_id}, ADMIN)) is None
        # Stats are for staff only.
        assert error_code(call(client, "stats"), 401) == "UNAUTHORIZED"
        assert error_code(call(client, "stats", headers=ADA), 403) == "FORBIDDEN"
        result(call(client, "add_todo", {"title": "one"}, ADA))
        two = result(call(client, "add_todo", {"title": "two"}, ADA))
        result(call(client, "toggle_todo", {"id": two["id"]}, ADA))
        assert result(call(client, "stats", headers=ADMIN)) == {"total": 2, "done": 1, "open": 1}


@pytest.mark.parametrize("operation", ["toggle_todo", "delete_todo"])
def test_only_the_owner_or_staff_may_change_a_todo(client: httpx.Client, operation: str) -> None:
    """Toggle and delete share one rule: the owner may, staff may, any other user gets 403."""
    with client:
        mine = result(call(client, "add_todo", {"title": "ada's"}, ADA))
        theirs = result(call(client, "add_todo", {"title": "bob's"}, BOB))
        refused = call(client, operation, {"id": mine["id"]}, BOB)
        assert error_code(refused, 403) == "FORBIDDEN"
        assert refused.json()["error"]["details"] == {"id": mine["id"]}
        # The refused call changed nothing.
        assert result(call(client, "get_todo", {"id": mine["id"]})) == mine
        assert error_code(call(client, operation, {"id": mine["id"]}), 401) == "UNAUTHORIZED"

        owned = result(call(client, operation, {"id": mine["id"]}, ADA))
        staff = result(call(client, operation, {"id": theirs["id"]}, ADMIN))
        if operation == "toggle_todo":
            assert owned == {**mine, "done": True}
            assert staff == {**theirs, "done": True}
            assert result(call(client, "list_todos")) == [owned, staff]
        else:
            assert owned is None
            assert staff is None
            assert result(call(client, "list_todos")) == []


async def test_only_the_owner_or_staff_may_change_a_todo_in_process(tmp_path: Path) -> None:
    api = todo.create_app(tmp_path / "todo.db").state.api
    mine = await api.call("add_todo", {"title": "ada's"}, headers=ADA)
    for operation in ("toggle_todo", "delete_todo"):
        with pytest.raises(Forbidden) as caught:
            await api.call(operation, {"id": mine.id}, headers=BOB)
        assert caught.value.details == {"id": mine.id}
    assert await api.call("get_todo", {"id": mine.id}) == mine
    toggled = await api.call("toggle_todo", {"id": mine.id}, headers=ADMIN)
    assert toggled.done is True
    assert await api.call("delete_todo", {"id": mine.id}, headers=ADA) is None


@pytest.mark.parametrize("operation", ["get_todo", "toggle_todo", "delete_todo"])
def test_ids_beyond_sqlite_range_are_refused_not_a_500(
    client: httpx.Client, operation: str
) -> None:
    """SQLite integers are 64-bit: the schema bounds ids, so an id past them is a 422, not a 500."""
    with client:
        for id in (2**53, 2**63, -(2**63) - 1, 0, 10**30):
            response = call(client, operation, {"id": id}, ADA)
            assert error_code(response, 422) == "VALIDATION_FAILED"
            assert [d["loc"] for d in response.json()["error"]["details"]] == [["id"]]
        largest = call(client, operation, {"id": 2**53 - 1}, ADA)
        assert error_code(largest, 404) == "NOT_FOUND"
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        id_schema = next(
            s["properties"]["id"]
            for name, s in schema.items()
            if name.endswith("Params") and "id" in s.get("properties", {})
        )
        # 2**53 - 1 is exact as a double: the document cannot round the bound.
        assert (id_schema["minimum"], id_schema["maximum"]) == (1, 2**53 - 1)


def test_validation_and_conflict(client: httpx.Client) -> None:
    with client:
        response = call(client, "add_todo", {"title": ""}, ADA)
        assert error_code(response, 422) == "VALIDATION_FAILED"
        assert [d["loc"] for d in response.json()["error"]["details"]] == [["title"]]
        assert error_code(call(client, "add_todo", {}, ADA), 422) == "VALIDATION_FAILED"
        first = result(call(client, "add_todo", {"title": "once"}, ADA))
        response = call(client, "add_todo", {"title": "once"}, ADA)
        assert error_code(response, 409) == "CONFLICT"
        assert response.json()["error"]["details"] == {"id": first["id"]}
        # The refused call added nothing.
        assert len(result(call(client, "list_todos"))) == 1
        # Another user may have the same title.
        result(call(client, "add_todo", {"title": "once"}, BOB))


def test_index_page(client: httpx.Client) -> None:
    with client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/app.js">' in page.text


def test_data_persists_in_the_file(live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    path = tmp_path / "todo.db"
    first = live_server(todo.create_app(path))
    with httpx.Client(base_url=first.url) as client:
        result(call(client, "add_todo", {"title": "remember me"}, ADA))
    second = live_server(todo.create_app(path))
    with httpx.Client(base_url=second.url) as client:
        assert [t["title"] for t in result(call(client, "list_todos"))] == ["remember me"]


async def test_in_process_call(tmp_path: Path) -> None:
    app = todo.create_app(tmp_path / "todo.db")
    api = app.state.api
    added = await api.call("add_todo", {"title": "in process"}, headers=ADA)
    assert added == todo.Todo(id=1, title="in process", done=False, owner="ada")
    assert await api.call("list_todos") == [added]
    with pytest.raises(NotFound) as caught:
        await api.call("get_todo", {"id": 2})
    assert caught.value.details == {"id": 2}
    with pytest.raises(Unauthorized):
        await api.call("add_todo", {"title": "anonymous"})


def test_todo_db_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TODO_DB", str(tmp_path / "chosen.db"))
    assert todo.default_db_path() == tmp_path / "chosen.db"
    monkeypatch.delenv("TODO_DB")
    assert todo.default_db_path() == Path(tempfile.gettempdir()) / "tether-todo.db"
    assert isinstance(todo.app, FastAPI)


def test_make_demo_command_serves_the_app(tmp_path: Path) -> None:
    """Run the exact command `make demo` runs, as its own process, with TODO_DB set.

    From a directory outside the checkout: the demo ships inside the package.
    """
    port = free_port()
    env = {**os.environ, "TODO_DB": str(tmp_path / "demo.db"), "PYTHONPATH": ""}
    command = ["-m", "uvicorn", "tether.demo.app:app", "--host", "127.0.0.1", "--port"]
    process = subprocess.Popen(
        [sys.executable, *command, str(port), "--log-level", "warning"], cwd=tmp_path, env=env
    )
    try:
        deadline = time.monotonic() + 15
        response: httpx.Response | None = None
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while response is None:
                try:
                    response = call(client, "add_todo", {"title": "from make demo"}, ADA)
                except httpx.ConnectError:
                    assert process.poll() is None, "uvicorn exited"
                    assert time.monotonic() < deadline, "uvicorn did not start"
                    time.sleep(0.1)
            assert result(response)["title"] == "from make demo"
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert (tmp_path / "demo.db").exists()


def test_the_demo_over_jsonrpc(client: httpx.Client) -> None:
    with client:
        batch = [
            {"jsonrpc": "2.0", "id": 1, "method": "add_todo", "params": {"title": "one"}},
            {"jsonrpc": "2.0", "id": 2, "method": "add_todo", "params": ["two"]},
            {"jsonrpc": "2.0", "id": 3, "method": "get_todo", "params": {"id": 99}},
        ]
        replies = client.post("/api/jsonrpc", json=batch, headers=ADA).json()
        assert [reply["id"] for reply in replies] == [1, 2, 3]
        assert {replies[0]["result"]["title"], replies[1]["result"]["title"]} == {"one", "two"}
        assert replies[2]["error"]["code"] == -32004
        assert replies[2]["error"]["data"] == {"code": "NOT_FOUND", "details": {"id": 99}}
        anonymous = {"jsonrpc": "2.0", "id": 4, "method": "add_todo", "params": {"title": "x"}}
        assert client.post("/api/jsonrpc", json=anonymous).json()["error"]["code"] == -32001
        listed = {"jsonrpc": "2.0", "id": 5, "method": "list_todos"}
        titles = [t["title"] for t in client.post("/api/jsonrpc", json=listed).json()["result"]]
        assert sorted(titles) == ["one", "two"]


def test_the_demo_over_websocket(live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = live_server(todo.create_app(tmp_path / "todo.db"))
    with connect(f"{server.ws_url}/api/ws") as socket:

        def send(message: dict[str, Any]) -> Any:
            socket.send(json.dumps(message))
            return json.loads(socket.recv(timeout=5))

        added = send(
            {
                "uuid": "a",
                "route": "add_todo",
                "headers": {"Authorization": "Bearer ada"},
                "payload": {"title": "over a socket"},
            }
        )
        assert added["uuid"] == "a"
        assert added["status"] == 200
        assert added["payload"]["owner"] == "ada"
        refused = send({"uuid": "b", "route": "add_todo", "payload": {"title": "x"}})
        assert refused["status"] == 401
        assert refused["payload"]["error"]["code"] == "UNAUTHORIZED"
        missing = send({"uuid": "c", "route": "get_todo", "payload": {"id": 99}})
        assert missing["status"] == 404
        listed = send({"jsonrpc": "2.0", "id": 1, "method": "list_todos"})
        assert [t["title"] for t in listed["result"]] == ["over a socket"]


def test_the_demo_coordinates_client_caches(client: httpx.Client) -> None:
    # The todo list is the context "todos"; the caller's profile is the per-user context "user".
    with client:
        added = call(client, "add_todo", {"title": "cache me"}, ADA)
        changed = [{"context": "todos"}, {"query": "stats"}]  # no argument scopes them
        assert added.json()["invalidate"] == changed
        assert added.headers["cache-control"] == "no-store"
        assert json.loads(added.headers["x-tether-invalidate"]) == changed
        todo_id = result(added)["id"]
        assert call(client, "toggle_todo", {"id": todo_id}, ADA).json()["invalidate"] == changed
        bundle = client.get("/api/context/todos")  # `done` is optional, as list_todos has it
        assert result(bundle) == {"list_todos": [{**result(added), "done": True}]}
        assert result(client.get("/api/context/todos", params={"done": "false"})) == {
            "list_todos": []
        }
        assert call(client, "delete_todo", {"id": todo_id}, ADA).json()["invalidate"] == changed
        assert error_code(client.get("/api/context/user"), 401) == "UNAUTHORIZED"
        profile = {"name": "ada", "display_name": "ada", "is_staff": False}
        assert result(client.get("/api/context/user", headers=ADA)) == {"current_user": profile}
        renamed = call(client, "rename_user", {"display_name": "Ada L."}, ADA)
        new = {**profile, "display_name": "Ada L."}
        assert renamed.json() == {
            "result": new,
            "merge": [{"context": "user", "slot": "current_user", "value": new}],
        }
        assert result(client.get("/api/context/user", headers=ADA)) == {"current_user": new}
        # Bob's profile is his own.
        assert result(call(client, "current_user", headers=BOB))["display_name"] == "bob"
        assert error_code(call(client, "rename_user", {"display_name": ""}, ADA), 422) == (
            "VALIDATION_FAILED"
        )


def test_the_demo_pushes_changes_to_live_subscribers(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server(todo.create_app(tmp_path / "todo.db"))
    with connect(f"{server.ws_url}/api/ws") as ada, connect(f"{server.ws_url}/api/ws") as bob:
        for socket, who in ((ada, "ada"), (bob, "bob")):
            socket.send(
                json.dumps(
                    {
                        "uuid": "live",
                        "route": "LIVE",
                        "headers": {"Authorization": f"Bearer {who}"},
                        "payload": {"contexts": ["todos", "user"]},
                    }
                )
            )
            ready = json.loads(socket.recv(timeout=5))
            assert (ready["status"], ready["headers"]) == (200, {"stream": "ready"})
        with httpx.Client(base_url=server.url) as client:
            result(call(client, "rename_user", {"display_name": "Bobby"}, BOB))
            result(call(client, "add_todo", {"title": "seen by all"}, BOB))
        # Bob's own rename reaches Bob only; the new todo reaches everyone.
        bob_items = [json.loads(bob.recv(timeout=5))["payload"] for _ in range(2)]
        assert bob_items[0]["merge"][0]["value"]["display_name"] == "Bobby"
        assert bob_items[1]["invalidate"] == [{"context": "todos"}]
        ada_item = json.loads(ada.recv(timeout=5))["payload"]
        assert (ada_item["invalidate"], ada_item["merge"]) == ([{"context": "todos"}], [])
