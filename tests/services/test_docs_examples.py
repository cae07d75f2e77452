"""The service examples shown in docs/services.md (examples/docs/services_*.py), exercised.

Each test loads a fresh copy of its example module (so module-level state starts clean)
and, where a transport is involved, serves its app on a real uvicorn server.
"""

import inspect
import ssl
from collections.abc import Callable
from typing import Any

import httpx

from tests._docs_examples import load
from tests.conftest import LiveServer

Serve = Callable[..., LiveServer]


# Building an SSL context is most of what creating an httpx client costs (about 0.25 s on
# a loaded machine); these plain-HTTP loopback clients share one.
_SSL_CONTEXT = ssl.create_default_context()


def http_client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(verify=_SSL_CONTEXT, **kwargs)


def client(server: LiveServer, **headers: str) -> httpx.Client:
    return http_client(base_url=f"{server.url}/api/call", headers=headers)


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["result"]


def error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(response.json()["error"]["code"])


def test_services_example(live_server: Serve) -> None:
    example = load("services_example")
    assert sorted(example.api.operations) == [
        "admin_users.get",
        "admin_users.history",
        "admin_users.purge",
        "admin_users.rename",
        "admin_users.search",
        "users.get",
        "users.history",
        "users.rename",
        "users.search",
    ]
    server = live_server(example.app)
    bob = {"X-Tenant": "acme", "Authorization": "Bearer bob-token"}
    alice = {"X-Tenant": "acme", "Authorization": "Bearer alice-token"}
    with client(server, **bob) as http:
        assert ok(http.post("/users.get", json={"id": 1})) == {
            "id": 1,
            "name": "ada",
            "tenant": "acme",
        }
        assert all(session.closed for session in example.SESSIONS)
        assert len(example.SESSIONS) == 1
        assert [u["id"] for u in ok(http.get("/users.search", params={"q": "a"}))] == [1, 2]
        assert error(http.post("/users.get", json={"id": 9}), 404) == "NOT_FOUND"
        assert error(http.post("/users.rename", json={"id": 1, "name": "x"}), 403) == "FORBIDDEN"
        assert error(http.post("/admin_users.get", json={"id": 1}), 403) == "FORBIDDEN"
        anonymous = {"Authorization": ""}
        assert error(http.post("/users.get", json={"id": 1}, headers=anonymous), 401)
    with client(server, **alice) as http:
        renamed = ok(http.post("/users.rename", json={"id": 1, "name": "ada l."}))
        assert renamed == {"id": 1, "name": "ada l.", "tenant": "acme"}
        assert ok(http.post("/admin_users.purge", json={"id": 2})) is None
        assert ok(http.post("/admin_users.history", json={"id": 2})) == [
            {"user_id": 2, "action": "purge"}
        ]
        assert ok(http.post("/users.history", json={"id": 1})) == [
            {"user_id": 1, "action": "rename"}
        ]
    assert example.USERS == {1: "ada l."}
    assert all(session.closed for session in example.SESSIONS)


def test_services_uses(live_server: Serve) -> None:
    example = load("services_uses")
    server = live_server(example.app)
    with client(server) as http:
        assert ok(http.post("/reports.price", json={"sku": "apple"})) == 0.5
        assert example.CONNECTIONS == []
        assert ok(http.post("/reports.stock_value", json={"sku": "apple"})) == 21.0
        assert example.CONNECTIONS == ["warehouse"]


def test_services_inheritance(live_server: Serve) -> None:
    example = load("services_inheritance")
    assert sorted(example.api.operations) == [
        "admin_notes.delete",
        "admin_notes.get",
        "internal_notes.delete",
        "internal_notes.get",
        "notes.get",
    ]
    server = live_server(example.app)
    with client(server, **{"X-Api-Key": "secret"}) as http:
        assert ok(http.post("/notes.get", json={"id": 1})) == "first note"
        assert example.GUARDS == ["api key"]
        assert error(http.post("/notes.delete", json={"id": 1}), 404) == "NOT_FOUND"
        example.GUARDS.clear()
        assert error(http.post("/admin_notes.get", json={"id": 1}), 403) == "FORBIDDEN"
        assert example.GUARDS == ["api key", "admin"]
        example.GUARDS.clear()
        admin = {"X-Role": "admin"}
        assert ok(http.post("/admin_notes.get", json={"id": 1}, headers=admin)) == "FIRST NOTE"
        assert example.GUARDS == ["api key", "admin"]
    with client(server) as http:
        assert error(http.post("/notes.get", json={"id": 1}), 403) == "FORBIDDEN"
        example.GUARDS.clear()
        assert ok(http.post("/internal_notes.get", json={"id": 1})) == "first note"
        assert example.GUARDS == []
        assert ok(http.post("/internal_notes.delete", json={"id": 1})) is None
    assert example.NOTES == {}
    paths = example.app.openapi()["paths"]
    assert paths["/api/call/admin_notes.get"]["post"]["tags"] == ["notes", "admin"]
    assert paths["/api/call/notes.get"]["post"]["tags"] == ["notes"]


async def test_services_testing() -> None:
    load("services_example")
    example = load("services_testing")
    tests = [(name, func) for name, func in vars(example).items() if name.startswith("test_")]
    assert [name for name, _ in tests] == [
        "test_rename_calls_get_and_records_an_entry",
        "test_search_is_a_plain_method",
        "test_through_the_api_with_a_fake_database",
    ]
    for _, func in tests:
        result = func()
        if inspect.isawaitable(result):
            await result
    assert example.app.dependency_overrides == {}


def test_services_port_cbv(live_server: Serve) -> None:
    example = load("services_port_cbv")
    server = live_server(example.app)
    with client(server, **{"X-User": "ada"}) as http:
        created = ok(http.post("/items.create", json={"name": "pen"}))
        assert created == {"id": 1, "name": "pen", "owner": "ada"}
        assert ok(http.get("/items.get", params={"item_id": 1})) == created
    with client(server, **{"X-User": "bob"}) as http:
        assert error(http.post("/items.get", json={"item_id": 1}), 404) == "NOT_FOUND"
    with client(server) as http:
        assert error(http.post("/items.get", json={"item_id": 1}), 422) == "VALIDATION_FAILED"
    doc = example.app.openapi()["paths"]["/api/call/items.create"]["post"]
    assert doc["tags"] == ["items"]
    assert [p["name"] for p in doc["parameters"]] == ["x-user"]


def test_services_port_litestar(live_server: Serve) -> None:
    example = load("services_port_litestar")
    server = live_server(example.app)
    with client(server, **{"X-Role": "staff"}) as http:
        order = ok(http.post("/orders.create", json={"data": {"sku": "pen", "quantity": 2}}))
        assert order == {"id": 1, "sku": "pen", "quantity": 2}
        assert ok(http.post("/orders.get", json={"order_id": 1})) == order
        assert error(http.post("/orders.get", json={"order_id": 5}), 404) == "NOT_FOUND"
    with client(server, **{"X-Role": "guest"}) as http:
        assert error(http.post("/orders.get", json={"order_id": 1}), 403) == "FORBIDDEN"
    with http_client(base_url=server.url) as http:
        response = http.post(
            "/api/jsonrpc",
            json={"jsonrpc": "2.0", "id": 1, "method": "orders.get", "params": [1]},
            headers={"X-Role": "staff"},
        )
    assert response.json() == {"jsonrpc": "2.0", "id": 1, "result": order}


async def test_services_streams() -> None:
    example = load("services_streams")
    seen: list[bool] = []
    async for row in example.api.stream_call("exports.rows", {"limit": 2}):
        seen.append(example.CURSORS[-1].open)
        assert row.startswith("row ")
    assert seen == [True, True]
    assert example.CURSORS[-1].open is False
    assert await example.main() == ["row 0", "row 1", "row 2"]
    assert len(example.CURSORS) == 2
    assert not any(cursor.open for cursor in example.CURSORS)
