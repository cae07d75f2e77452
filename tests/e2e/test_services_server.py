"""Class-based services over a real uvicorn server: the issue's example, and inheritance.

Sync tests with a blocking httpx client: the server runs in its own thread, so each test
runs once (not once per anyio backend) and stays fast.
"""

import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from fastapi.params import Depends as DependsMarker
from starlette.requests import Request
from websockets.sync.client import connect

from tests.conftest import LiveServer, serve
from tests.services.issue_example import Session, build_issue_example, headers
from tether import Forbidden, PerBatch, PerConnection, Service, Tether, command, query, stream
from tether.transports.http import HttpTransport
from tether.transports.sse import SseTransport
from tether.transports.websocket import WebSocketTransport

pytestmark = pytest.mark.e2e

Serve = Callable[..., LiveServer]


# Building an SSL context is most of what creating an httpx client costs (about 0.25 s on
# a loaded machine); these plain-HTTP loopback clients share one.
_SSL_CONTEXT = ssl.create_default_context()


def http_client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(verify=_SSL_CONTEXT, **kwargs)


class SwappableApp:
    """An ASGI app that forwards to the app of the current test (one server per module)."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].removeprefix("lifespan.")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        assert self.app is not None, "no app is being served"
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[tuple[LiveServer, SwappableApp]]:
    swappable = SwappableApp()
    with serve(swappable) as server:
        yield server, swappable


@pytest.fixture
def live_server(shared_server: tuple[LiveServer, SwappableApp]) -> Iterator[Serve]:
    """`live_server(app)` serves `app` on this module's real uvicorn server, for one test.

    Starting and stopping uvicorn costs about 0.3 s; the tests here share one server and
    swap the app each test serves (each test still builds its own app).
    """
    server, swappable = shared_server

    def start(app: Any) -> LiveServer:
        swappable.app = app
        return server

    yield start
    swappable.app = None


def post(server: LiveServer, name: str, params: dict[str, Any], **kwargs: Any) -> httpx.Response:
    with http_client(base_url=server.url) as client:
        return client.post(f"/api/call/{name}", json=params, **kwargs)


# -- the issue's example ------------------------------------------------------------------


def test_users_get_solves_class_dependencies_and_closes_the_yield_dependency(
    live_server: Serve,
) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    response = post(server, "users.get", {"id": 1}, headers=headers("bob", "acme"))
    assert response.status_code == 200
    assert response.json() == {"result": {"id": 1, "name": "ada", "tenant": "acme"}}
    # The yield dependency opened and closed within the call, committed (no exception).
    assert sorted(example.log) == sorted(["db open", "audit", "db commit", "db close"])
    assert example.log[-1] == "db close"


def test_yield_dependency_is_closed_per_call(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    with http_client(base_url=server.url, headers=headers()) as client:
        for id in (1, 2, 1):
            assert client.post("/api/call/users.get", json={"id": id}).status_code == 200
    assert example.log.count("db open") == 3
    assert example.log.count("db close") == 3
    opens = [i for i, entry in enumerate(example.log) if entry == "db open"]
    closes = [i for i, entry in enumerate(example.log) if entry == "db close"]
    # Each call's session closes before the next call's opens.
    assert all(c < o for c, o in zip(closes, opens[1:], strict=False))


def test_yield_dependency_sees_the_exception_the_method_raises(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    response = post(server, "users.get", {"id": 99}, headers=headers())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"
    assert "db rollback NotFound" in example.log
    assert "db commit" not in example.log
    assert example.log[-1] == "db close"


def test_sync_method_runs_in_a_worker_thread(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    response = post(server, "users.search", {"q": "a"}, headers=headers())
    assert response.status_code == 200
    assert response.json() == {
        "result": [
            {"id": 1, "name": "ada", "tenant": "acme"},
            {"id": 2, "name": "grace", "tenant": "acme"},
        ]
    }
    # get_db (async) ran on the event loop's thread; search (sync) ran elsewhere.
    assert example.threads["search"] != example.threads["db"]
    assert example.threads["db"] == server.thread.ident
    limited = post(server, "users.search", {"q": "a", "limit": 1}, headers=headers())
    assert [u["name"] for u in limited.json()["result"]] == ["ada"]


def test_mixin_operation_reads_the_mixin_dependency(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    staff = headers("alice")
    assert post(server, "users.rename", {"id": 2, "name": "g"}, headers=staff).status_code == 200
    response = post(server, "users.history", {"id": 2}, headers=headers())
    assert response.status_code == 200
    assert response.json() == {"result": [{"id": 2, "action": "rename"}]}


def test_rename_needs_staff_and_calls_get_on_the_same_instance(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    denied = post(server, "users.rename", {"id": 1, "name": "ada l."}, headers=headers("bob"))
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "FORBIDDEN"
    assert example.store[1] == "ada"

    example.log.clear()
    response = post(server, "users.rename", {"id": 1, "name": "ada l."}, headers=headers("alice"))
    assert response.status_code == 200
    assert response.json() == {"result": {"id": 1, "name": "ada l.", "tenant": "acme"}}
    assert example.store[1] == "ada l."
    # self.get(id) is a plain method call: no second dependency solving, same instance.
    assert example.log.count("db open") == 1
    assert len(example.instances) == 1


def test_auth_true_is_inherited_by_every_operation(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    calls: dict[str, dict[str, Any]] = {
        "users.get": {"id": 1},
        "users.history": {"id": 1},
        "users.search": {"q": "a"},
    }
    for name, params in calls.items():
        response = post(server, name, params, headers=headers(user=None))
        assert response.status_code == 401, name
        assert response.json()["error"]["code"] == "UNAUTHORIZED"


def test_header_class_dependency_is_required_and_validated(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    response = post(server, "users.get", {"id": 1}, headers=headers(tenant=None))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_FAILED"
    assert [d["loc"] for d in error["details"]] == [["header", "X-Tenant"]]


def test_a_class_attribute_is_never_an_input(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    response = post(server, "users.get", {"id": 1, "tenant": "evil", "db": {}}, headers=headers())
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert sorted(tuple(d["loc"]) for d in details) == [("db",), ("tenant",)]
    assert {d["type"] for d in details} == {"extra_forbidden"}


def test_fresh_instance_per_call(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    for _ in range(2):
        assert post(server, "users.get", {"id": 1}, headers=headers()).status_code == 200
    first, second = example.instances
    assert first is not second
    assert isinstance(first, example.Users)
    assert type(first) is example.Users


def test_subclass_inherits_operations_and_dependencies_and_appends_a_guard(
    live_server: Serve,
) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    denied = post(server, "admin_users.get", {"id": 1}, headers=headers("bob"))
    assert denied.status_code == 403
    assert denied.json()["error"]["message"] == "admins only"
    # The parent's users.get is not guarded by the subclass's guard.
    example.log.clear()
    assert post(server, "users.get", {"id": 1}, headers=headers("bob")).status_code == 200
    assert "guard" not in example.log

    example.log.clear()
    response = post(server, "admin_users.get", {"id": 1}, headers=headers("alice", "beta"))
    assert response.status_code == 200
    assert response.json() == {"result": {"id": 1, "name": "ada", "tenant": "beta"}}
    assert example.log[0] == "guard"
    assert type(example.instances[-1]) is example.AdminUsers

    purged = post(server, "admin_users.purge", {"id": 2}, headers=headers("alice"))
    assert purged.status_code == 200
    assert purged.json() == {"result": None}
    assert 2 not in example.store
    assert post(server, "users.get", {"id": 2}, headers=headers()).status_code == 404


def test_dependency_overrides_replace_a_class_dependency(live_server: Serve) -> None:
    example = build_issue_example()
    fake = Session({1: "fake ada"})

    def fake_db() -> Session:
        return fake

    example.app.dependency_overrides[example.get_db] = fake_db
    server = live_server(example.app)
    response = post(server, "users.get", {"id": 1}, headers=headers())
    assert response.status_code == 200
    assert response.json()["result"]["name"] == "fake ada"
    assert "db open" not in example.log
    # Inherited operations of the subclass see the override too.
    response = post(server, "admin_users.get", {"id": 1}, headers=headers("alice"))
    assert response.json()["result"]["name"] == "fake ada"
    example.app.dependency_overrides.clear()
    response = post(server, "users.get", {"id": 1}, headers=headers())
    assert response.json()["result"]["name"] == "ada"


# -- inheritance over the wire ------------------------------------------------------------


def test_subclass_added_dependency_is_injected_as_its_value(live_server: Serve) -> None:
    def get_region() -> str:
        return "eu"

    def get_zone(x_zone: Annotated[str, Header()] = "z1") -> str:
        return x_zone

    class Base(Service, abstract=True):
        region: Annotated[str, Depends(get_region)]

        @query
        async def where(self) -> str:
            return self.region

    class Child(Base, name="child"):
        zone: str = Depends(get_zone)  # the default-value form, which @cbv got wrong

        @query
        async def describe(self) -> dict[str, str]:
            assert not isinstance(self.zone, DependsMarker)
            return {"region": self.region, "zone": self.zone}

    api = Tether()
    api.include(Child)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    assert post(server, "child.where", {}).json() == {"result": "eu"}
    response = post(server, "child.describe", {}, headers={"x-zone": "z9"})
    assert response.status_code == 200
    assert response.json() == {"result": {"region": "eu", "zone": "z9"}}


def test_guards_run_parent_first_then_child_and_can_be_replaced(live_server: Serve) -> None:
    order: list[str] = []

    def parent_guard() -> None:
        order.append("parent")

    def child_guard() -> None:
        order.append("child")

    def api_guard() -> None:
        order.append("api")

    class Base(Service, abstract=True, guards=[parent_guard]):
        @query
        async def ping(self) -> str:
            order.append("ping")
            return "pong"

    class Appended(Base, name="appended", guards=[Depends(child_guard)]):
        pass

    class Replaced(Base, name="replaced", guards=[child_guard], replace_guards=True):
        pass

    api = Tether(dependencies=[Depends(api_guard)])
    api.include(Appended, Replaced)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    assert post(server, "appended.ping", {}).json() == {"result": "pong"}
    assert order == ["api", "parent", "child", "ping"]
    order.clear()
    assert post(server, "replaced.ping", {}).json() == {"result": "pong"}
    assert order == ["api", "child", "ping"]


def test_a_failing_guard_stops_the_call_before_class_dependencies(live_server: Serve) -> None:
    log: list[str] = []

    def deny() -> None:
        raise Forbidden("nope")

    async def get_db() -> AsyncIterator[str]:
        log.append("db")
        yield "db"

    class Guarded(Service, name="guarded", guards=[deny]):
        db: Annotated[str, Depends(get_db)]

        @query
        async def read(self) -> str:
            log.append("read")
            return self.db

    api = Tether()
    api.include(Guarded)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    response = post(server, "guarded.read", {})
    assert response.status_code == 403
    assert log == []


def test_two_sibling_subclasses_side_by_side(live_server: Serve) -> None:
    def get_greeting() -> str:
        return "hello"

    class Greeter(Service, abstract=True):
        greeting: Annotated[str, Depends(get_greeting)]
        punctuation: str = "."

        @query
        async def greet(self, name: str) -> str:
            return f"{self.greeting} {name}{self.punctuation}"

    class Polite(Greeter, name="polite"):
        punctuation = "!"

    class Shouting(Greeter, name="shouting"):
        @query
        async def greet(self, name: str) -> str:
            return (await super().greet(name)).upper()

    api = Tether()
    api.include(Polite, Shouting)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    assert post(server, "polite.greet", {"name": "ada"}).json() == {"result": "hello ada!"}
    assert post(server, "shouting.greet", {"name": "ada"}).json() == {"result": "HELLO ADA."}
    # A plain class attribute with a value is configuration, not input.
    rejected = post(server, "polite.greet", {"name": "ada", "punctuation": "?"})
    assert rejected.status_code == 422


def test_auth_inherited_and_overridden_per_operation(live_server: Serve) -> None:
    def current_user(authorization: Annotated[str | None, Header()] = None) -> str | None:
        return authorization

    class Notes(Service, name="notes", auth=True):
        @query
        async def private(self) -> str:
            return "secret"

        @query(auth=False)
        async def public(self) -> str:
            return "hello"

    class MoreNotes(Notes, name="more_notes"):
        @query
        async def extra(self) -> str:
            return "extra"

    class OpenNotes(Notes, name="open_notes", auth=False):
        pass

    api = Tether(user=Depends(current_user))
    api.include(Notes, MoreNotes, OpenNotes)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    statuses = {
        name: post(server, name, {}).status_code
        for name in (
            "notes.private",
            "notes.public",
            "more_notes.private",
            "more_notes.public",
            "more_notes.extra",
            "open_notes.private",
        )
    }
    assert statuses == {
        "notes.private": 401,
        "notes.public": 200,
        "more_notes.private": 401,
        "more_notes.public": 200,
        "more_notes.extra": 401,
        "open_notes.private": 200,
    }
    assert post(server, "notes.private", {}, headers={"authorization": "x"}).json() == {
        "result": "secret"
    }


def test_undecorated_override_and_exclude(live_server: Serve) -> None:
    class Items(Service, name="items"):
        @query
        async def get(self, id: int) -> str:
            return f"item {id}"

        @command
        async def delete(self, id: int) -> None:
            return None

    class ReadOnlyItems(Items, name="ro_items", exclude=["delete"]):
        async def get(self, id: int) -> str:  # no decorator: still the operation
            return f"read-only item {id}"

    api = Tether()
    api.include(Items, ReadOnlyItems)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    assert post(server, "items.get", {"id": 1}).json() == {"result": "item 1"}
    assert post(server, "ro_items.get", {"id": 1}).json() == {"result": "read-only item 1"}
    assert post(server, "items.delete", {"id": 1}).status_code == 200
    missing = post(server, "ro_items.delete", {"id": 1})
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"


def test_class_and_operation_share_one_dependency_solve(live_server: Serve) -> None:
    calls: list[str] = []

    async def get_session() -> AsyncIterator[dict[str, int]]:
        calls.append("open")
        yield {"n": len(calls)}
        calls.append("close")

    def audited(session: Annotated[dict[str, int], Depends(get_session)]) -> None:
        calls.append(f"guard saw {session['n']}")

    class Store(Service, name="store", guards=[audited]):
        session: Annotated[dict[str, int], Depends(get_session)]

        @query
        async def same(self, own: Annotated[dict[str, int], Depends(get_session)]) -> bool:
            return own is self.session

    api = Tether()
    api.include(Store)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    assert post(server, "store.same", {}).json() == {"result": True}
    assert calls == ["open", "guard saw 1", "close"]
    assert post(server, "store.same", {}).json() == {"result": True}
    assert calls.count("open") == 2


def test_request_typed_class_attribute(live_server: Serve) -> None:
    class Echo(Service, name="echo"):
        request: Request

        @query
        async def agent(self) -> str:
            return self.request.headers["user-agent"]

        @query
        async def thread(self) -> bool:
            return threading.get_ident() != threading.main_thread().ident

    api = Tether()
    api.include(Echo)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    response = post(server, "echo.agent", {}, headers={"user-agent": "probe/1"})
    assert response.json() == {"result": "probe/1"}


# -- JSON-RPC ---------------------------------------------------------------------------------


def rpc(server: LiveServer, message: Any, **kwargs: Any) -> httpx.Response:
    with http_client(base_url=server.url) as client:
        return client.post("/api/jsonrpc", json=message, **kwargs)


def test_jsonrpc_single_call_of_a_service_method(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    response = rpc(
        server,
        {"jsonrpc": "2.0", "id": 1, "method": "users.get", "params": {"id": 2}},
        headers=headers("bob", "acme"),
    )
    assert response.status_code == 200
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"id": 2, "name": "grace", "tenant": "acme"},
    }
    positional = rpc(
        server,
        {"jsonrpc": "2.0", "id": 2, "method": "users.search", "params": ["gra", 1]},
        headers=headers(),
    )
    assert positional.json()["result"] == [{"id": 2, "name": "grace", "tenant": "acme"}]
    assert example.log.count("db open") == example.log.count("db close") == 2


def test_openrpc_lists_service_methods_with_their_own_params_only(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    response = rpc(server, {"jsonrpc": "2.0", "id": 1, "method": "rpc.discover"})
    methods = {m["name"]: m for m in response.json()["result"]["methods"]}
    assert {"users.get", "admin_users.purge", "users.history"} <= set(methods)
    assert [p["name"] for p in methods["users.get"]["params"]] == ["id"]
    assert [p["name"] for p in methods["users.search"]["params"]] == ["q", "limit"]
    assert methods["users.get"]["result"]["schema"] == {"$ref": "#/components/schemas/User"}
    assert '"self"' not in response.text


def test_jsonrpc_batch_runs_one_instance_per_item_and_closes_each_yield_dependency(
    live_server: Serve,
) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "users.get", "params": {"id": 1}},
        {"jsonrpc": "2.0", "id": 2, "method": "users.get", "params": {"id": 2}},
        {"jsonrpc": "2.0", "id": 3, "method": "users.get", "params": {"id": 99}},
        {"jsonrpc": "2.0", "id": 4, "method": "admin_users.get", "params": {"id": 1}},
        {"jsonrpc": "2.0", "id": 5, "method": "users.get", "params": {"id": 1, "db": "x"}},
    ]
    response = rpc(server, batch, headers=headers("bob", "acme"))
    assert response.status_code == 200
    replies = {reply["id"]: reply for reply in response.json()}
    assert replies[1]["result"] == {"id": 1, "name": "ada", "tenant": "acme"}
    assert replies[2]["result"] == {"id": 2, "name": "grace", "tenant": "acme"}
    assert replies[3]["error"]["data"]["code"] == "NOT_FOUND"
    assert replies[4]["error"]["data"]["code"] == "FORBIDDEN"  # the subclass's guard
    assert replies[5]["error"]["code"] == -32602  # a class attribute is not a param
    # Items 1-3 ran the method: three instances, three sessions opened and closed.
    assert len(example.instances) == 3
    assert len({id(i) for i in example.instances}) == 3
    assert example.log.count("db open") == example.log.count("db close")
    assert example.log.count("db commit") == 2
    assert example.log.count("db rollback NotFound") == 1


def test_jsonrpc_batches_and_notifications_keep_the_connection_alive(live_server: Serve) -> None:
    # Each item's yield dependency exits in the task that entered it; otherwise AnyIO
    # raises "cancel scope in a different task" and uvicorn drops the keep-alive connection.
    example = build_issue_example()
    server = live_server(example.app)
    batch = [{"jsonrpc": "2.0", "id": n, "method": "users.get", "params": [1]} for n in range(3)]
    notification = {"jsonrpc": "2.0", "method": "users.get", "params": [1]}
    addresses = set()
    with http_client(base_url=server.url, headers=headers()) as client:
        for message in (batch, notification, batch, notification):
            response = client.post("/api/jsonrpc", json=message)
            assert response.status_code in (200, 204)
            addresses.add(response.extensions["network_stream"].get_extra_info("client_addr"))
    assert len(addresses) == 1
    assert example.log.count("db open") == example.log.count("db close") == 8


def test_jsonrpc_notification_closes_its_yield_dependency(live_server: Serve) -> None:
    example = build_issue_example()
    server = live_server(example.app)
    response = rpc(
        server,
        {"jsonrpc": "2.0", "method": "users.rename", "params": {"id": 1, "name": "n"}},
        headers=headers("alice"),
    )
    assert response.status_code == 204
    assert example.store[1] == "n"
    assert example.log.count("db open") == 1
    assert example.log[-1] == "db close"


def test_jsonrpc_per_batch_class_dependency_is_shared_but_instances_are_not(
    live_server: Serve,
) -> None:
    log: list[str] = []
    instances: list[object] = []

    async def get_connection() -> AsyncIterator[object]:
        connection = object()
        log.append("open")
        yield connection
        log.append("close")

    class Pooled(Service, name="pooled"):
        connection: Annotated[object, PerBatch(get_connection)]

        @query
        async def which(self, n: int) -> int:
            instances.append(self)
            return id(self.connection)

    api = Tether()
    api.include(Pooled)
    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    batch = [{"jsonrpc": "2.0", "id": n, "method": "pooled.which", "params": [n]} for n in range(3)]
    response = rpc(server, batch)
    results = {reply["result"] for reply in response.json()}
    assert len(results) == 1  # one connection for the whole batch
    assert log == ["open", "close"]
    assert len({id(i) for i in instances}) == 3
    # Over plain HTTP the same dependency is per call.
    log.clear()
    for n in range(2):
        assert post(server, "pooled.which", {"n": n}).status_code == 200
    assert log == ["open", "close", "open", "close"]


# -- WebSocket and SSE --------------------------------------------------------------------------


class Feed:
    """A service with per-call, per-connection and stream operations, and what they recorded."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.instances: list[object] = []
        log = self.log
        instances = self.instances

        class Session:
            def __init__(self, number: int) -> None:
                self.number = number
                self.closed = False

        sessions: list[Session] = []

        async def get_db() -> AsyncIterator[Session]:
            session = Session(len(sessions) + 1)
            sessions.append(session)
            log.append(f"open {session.number}")
            yield session
            session.closed = True
            log.append(f"close {session.number}")

        connections: list[object] = []

        async def get_connection() -> AsyncIterator[int]:
            connections.append(object())
            log.append("connect")
            yield len(connections)
            log.append("disconnect")

        class Feeds(Service, name="feed"):
            connection: Annotated[int, PerConnection(get_connection)]
            db: Annotated[Session, Depends(get_db)]

            @query
            async def read(self, n: int) -> dict[str, int]:
                instances.append(self)
                return {"n": n, "connection": self.connection, "session": self.db.number}

            @stream
            async def ticks(self, count: int) -> AsyncIterator[dict[str, Any]]:
                instances.append(self)
                for i in range(count):
                    log.append(f"tick {i}")
                    yield {"i": i, "session": self.db.number, "open": not self.db.closed}

        self.api = Tether()
        self.api.include(Feeds)
        self.app = FastAPI()
        self.api.mount(self.app, transports=[HttpTransport(), SseTransport(), WebSocketTransport()])


def test_websocket_one_instance_per_message_and_a_shared_connection_dependency(
    live_server: Serve,
) -> None:
    feed = Feed()
    server = live_server(feed.app)
    with connect(f"{server.ws_url}/api/ws", proxy=None) as socket:
        for n in range(3):
            socket.send(json.dumps({"uuid": str(n), "route": "feed.read", "payload": {"n": n}}))
        replies = sorted(
            (json.loads(socket.recv(timeout=5)) for _ in range(3)), key=lambda r: r["uuid"]
        )
        assert [r["status"] for r in replies] == [200, 200, 200]
        payloads = [r["payload"] for r in replies]
        assert [p["n"] for p in payloads] == [0, 1, 2]
        assert {p["connection"] for p in payloads} == {1}  # solved once for the connection
        assert len({p["session"] for p in payloads}) == 3  # the yield dependency: per message
        assert len({id(i) for i in feed.instances}) == 3
        assert feed.log.count("connect") == 1
        assert sorted(e for e in feed.log if e.startswith("close")) == [
            "close 1",
            "close 2",
            "close 3",
        ]
        assert "disconnect" not in feed.log
    # The connection's dependency closes once the server has seen the socket close.
    deadline = time.monotonic() + 5
    while "disconnect" not in feed.log and time.monotonic() < deadline:
        time.sleep(0.01)
    assert feed.log.count("disconnect") == 1
    assert feed.log[-1] == "disconnect"


def test_websocket_subscription_keeps_its_instance_and_session_until_the_stream_ends(
    live_server: Serve,
) -> None:
    feed = Feed()
    server = live_server(feed.app)
    with connect(f"{server.ws_url}/api/ws", proxy=None) as socket:
        socket.send(json.dumps({"uuid": "s", "route": "feed.ticks", "payload": {"count": 3}}))
        messages = [json.loads(socket.recv(timeout=5)) for _ in range(4)]
    items = [m["payload"] for m in messages[:3]]
    assert [m["headers"] for m in messages[:3]] == [{"stream": "item"}] * 3
    assert items == [{"i": i, "session": 1, "open": True} for i in range(3)]
    assert messages[3]["headers"] == {"stream": "end", "items": 3}
    assert feed.log.index("close 1") > feed.log.index("tick 2")
    assert len(feed.instances) == 1


def test_sse_stream_method_keeps_its_yield_dependency_until_the_end(live_server: Serve) -> None:
    feed = Feed()
    server = live_server(feed.app)
    with http_client(base_url=server.url) as client:
        response = client.get("/api/stream/feed.ticks", params={"count": 2})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block.strip()]
    data = [
        line.removeprefix("data: ")
        for block in events
        for line in block.splitlines()
        if line.startswith("data: ")
    ]
    assert data == [
        '{"i":0,"session":1,"open":true}',
        '{"i":1,"session":1,"open":true}',
        "null",
    ]
    assert "event: end" in events[-1]
    # The per-connection dependency is per call outside a WebSocket.
    assert feed.log == ["connect", "open 1", "tick 0", "tick 1", "close 1", "disconnect"]
