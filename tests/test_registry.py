import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Request

import tether.transport
from tests import _future_annotations_ops, _plain_annotations_ops
from tests._core_helpers import asgi_client, mounted
from tether import (
    ConfigurationError,
    NotFound,
    Operation,
    Service,
    Tether,
    Unauthorized,
    ValidationFailed,
    command,
    query,
)
from tether.operation import OperationSpec
from tether.transport import TransportHandle
from tether.transports import HttpTransport


def test_decorators_register_and_return_the_function() -> None:
    api = Tether()

    @api.query
    def a() -> int:
        return 1

    @api.command(name="things.b", tags=["t"], summary="B", description="about b", deprecated=True)
    def b(x: int) -> int:
        return x

    @api.operation(kind="command", name="c")
    async def c() -> None:
        pass

    @api.operation(kind="query")
    async def d() -> None:
        pass

    assert a() == 1
    assert b(2) == 2
    assert [op.name for op in api] == ["a", "things.b", "c", "d"]
    assert [op.kind for op in api] == ["query", "command", "command", "query"]
    op = api.get("things.b")
    assert isinstance(op, Operation)
    assert (op.tags, op.summary, op.description, op.deprecated) == (("t",), "B", "about b", True)
    assert len(api) == 4
    assert "a" in api
    assert "b" not in api
    assert 3 not in api
    assert set(api.operations) == {"a", "things.b", "c", "d"}


def test_duplicate_names_raise() -> None:
    api = Tether()

    @api.query
    def a() -> int:
        return 1

    with pytest.raises(ConfigurationError, match="'a' is already registered"):

        @api.command(name="a")
        def other() -> int:
            return 2

    assert api.get("a").kind == "query"
    assert len(api) == 1


def test_bad_name_at_registration() -> None:
    api = Tether()
    with pytest.raises(ConfigurationError, match="dotted identifiers"):
        api.query(name="no spaces")(lambda: None)
    assert len(api) == 0


def test_include_standalone_marked_functions() -> None:
    @query
    def q() -> int:
        return 1

    @command(name="c2")
    def c() -> int:
        return 2

    api = Tether()
    api.include(q, c)
    assert [(op.name, op.kind) for op in api] == [("q", "query"), ("c2", "command")]
    # The same marked function can join another Tether.
    other = Tether()
    other.include(q)
    assert "q" in other


def test_add_needs_a_marked_function_or_a_spec() -> None:
    def f() -> int:
        return 1

    api = Tether()
    with pytest.raises(ConfigurationError, match="not marked"):
        api.add(f)
    op = api.add(f, OperationSpec(kind="command", name="custom"))
    assert (op.name, op.kind) == ("custom", "command")


@pytest.mark.parametrize("module", [_future_annotations_ops, _plain_annotations_ops])
async def test_register_functions_from_user_modules(module: Any) -> None:
    api = Tether()
    api.include(module.describe, module.touch)
    app = mounted(api)
    assert await api.call("describe", {"item": {"name": "pen"}, "count": 2}) == "item:penx2"
    assert (
        await api.call("describe", {"item": {"name": "pen"}}, headers={"x-prefix": "P"})
        == "P:penx1"
    )
    assert await api.call("future.touch", {"names": ["a", "b"]}) == module.Item(
        name="a,b@/api/call/future.touch", price=0.0
    )
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/call/future.touch", json={"names": ["x"]}, headers={"user-agent": "t"}
        )
        assert response.json() == {"result": {"name": "x@/api/call/future.touch", "price": 1.0}}
        assert response.headers["x-touched"] == "1"
        response = await client.get("/api/call/describe", params={"count": 1})
        assert response.status_code == 405
        schema = (await client.get("/openapi.json")).json()
    assert "x-prefix" in str(schema["paths"]["/api/call/describe"]["post"]["parameters"])
    assert schema["components"]["schemas"]["DescribeParams"]["properties"]["count"] == {
        "type": "integer",
        "maximum": 3,
        "minimum": 1,
        "default": 1,
        "title": "Count",
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"prefix": "api"}, "prefix"),
        ({"prefix": "/api/"}, "prefix"),
        ({"user": lambda: None}, "user="),
        ({"dependencies": [lambda: None]}, "dependencies="),
        ({"max_body_size": 0}, "max_body_size"),
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Tether(**kwargs)


def test_constructor_defaults() -> None:
    api = Tether()
    assert api.prefix == "/api"
    assert api.user is None
    assert api.dependencies == ()
    assert api.tags == ()
    assert api.max_body_size == 1024 * 1024
    assert api.app is None


async def test_call_unknown_operation() -> None:
    api = Tether()
    with pytest.raises(NotFound) as info:
        await api.call("nope")
    assert info.value.to_dict() == {
        "code": "NOT_FOUND",
        "message": "Unknown operation 'nope'",
        "details": {"operation": "nope"},
    }


async def test_call_before_mount_solves_dependencies() -> None:
    def token(x_token: Annotated[str | None, Header()] = None) -> str | None:
        return x_token

    api = Tether()

    @api.query
    async def echo_token(t: str | None = Depends(token)) -> str | None:
        return t

    @api.query
    async def add(a: int, b: int) -> int:
        return a + b

    assert await api.call("echo_token") is None
    assert await api.call("echo_token", headers={"X-Token": "abc"}) == "abc"
    assert await api.call("echo_token", headers=[("x-token", "list")]) == "list"
    assert await api.call("add", {"a": 1, "b": 2}) == 3
    with pytest.raises(ValidationFailed):
        await api.call("add", {"a": 1})


async def test_call_with_headers_for_auth() -> None:
    def current_user(authorization: Annotated[str | None, Header()] = None) -> str | None:
        return authorization.removeprefix("Bearer ") if authorization else None

    api = Tether(user=Depends(current_user))

    @api.query(auth=True)
    async def me() -> str:
        return "ok"

    with pytest.raises(Unauthorized):
        await api.call("me")
    assert await api.call("me", headers={"Authorization": "Bearer ada"}) == "ok"


def test_mount_twice_is_refused() -> None:
    api = Tether()
    app = FastAPI()
    api.mount(app)
    assert api.app is app
    assert api.invoker.overrides_provider is app
    with pytest.raises(ConfigurationError, match="already mounted"):
        api.mount(FastAPI())


async def test_mount_with_explicit_transports_and_late_operations() -> None:
    api = Tether(prefix="", tags=["all"])

    @api.query
    def early() -> int:
        return 1

    app = FastAPI()
    api.mount(app, transports=[HttpTransport()])
    schema_before = app.openapi()

    @api.query(tags=["late"])
    def late() -> int:
        return 2

    async with asgi_client(app) as client:
        assert (await client.post("/call/early", json={})).json() == {"result": 1}
        assert (await client.post("/call/late", json={})).json() == {"result": 2}
        schema = (await client.get("/openapi.json")).json()
    assert "/call/late" not in schema_before["paths"]
    assert schema["paths"]["/call/late"]["post"]["tags"] == ["all", "late"]
    assert schema["paths"]["/call/early"]["post"]["tags"] == ["all"]


async def test_mount_with_no_transports_serves_nothing() -> None:
    api = Tether()

    @api.query
    def a() -> int:
        return 1

    app = FastAPI()
    api.mount(app, transports=[])
    async with asgi_client(app) as client:
        assert (await client.post("/api/call/a", json={})).status_code == 404
    assert await api.call("a") == 1


def test_iteration_is_a_snapshot() -> None:
    api = Tether()

    @api.query
    def a() -> int:
        return 1

    for op in api:
        api.add(lambda: 2, OperationSpec(kind="query", name=f"{op.name}_copy"))
    assert list(api.operations) == ["a", "a_copy"]


async def test_include_a_service_class() -> None:
    def get_db() -> str:
        return "db"

    class Todos(Service, name="todos", tags=["todos"]):
        db: Annotated[str, Depends(get_db)]

        @query
        async def get(self, id: int) -> str:
            """Fetch one."""
            return f"{self.db}:{id}"

    class Base(Service, abstract=True):
        pass

    api = Tether()
    api.include(Todos)
    op = api.get("todos.get")
    assert (op.kind, op.tags, op.description, op.input_names) == (
        "query",
        ("todos",),
        "Fetch one.",
        ("id",),
    )
    app = mounted(api)
    assert await api.call("todos.get", {"id": 1}) == "db:1"
    async with asgi_client(app) as client:
        assert (await client.get("/api/call/todos.get?id=2")).json() == {"result": "db:2"}
    with pytest.raises(ConfigurationError, match="abstract"):
        api.include(Base)


def test_uses_is_for_service_methods_only() -> None:
    @query(uses=["db"])
    def f() -> None:
        pass

    with pytest.raises(ConfigurationError, match="service methods only"):
        Tether().add(f)


async def test_register_a_bound_method() -> None:
    # FastAPI accepts bound methods as endpoints; so does tether, without `self` as input.
    class Repo:
        def __init__(self, offset: int) -> None:
            self.offset = offset

        async def shifted(self, id: int) -> int:
            return id + self.offset

    api = Tether()
    api.query(Repo(5).shifted)
    api.add(Repo(7).shifted, OperationSpec(kind="query", name="shifted7"))
    assert api.get("shifted").input_names == ("id",)
    assert await api.call("shifted", {"id": 1}) == 6
    assert await api.call("shifted7", {"id": 1}) == 8
    app = mounted(api)
    async with asgi_client(app) as client:
        assert (await client.get("/api/call/shifted?id=2")).json() == {"result": 7}
        doc = (await client.get("/openapi.json")).json()
    assert "self" not in doc["components"]["schemas"]["ShiftedParams"]["properties"]


async def test_a_failing_background_task_does_not_fail_an_in_process_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Over HTTP the client already has its 200 when a background task fails; an
    # in-process call reports the same outcome (its docstring: it raises only TetherError).
    def broken_task() -> None:
        raise ValueError("task failed")

    api = Tether()

    @api.command
    def schedule(tasks: BackgroundTasks) -> int:
        tasks.add_task(broken_task)
        return 1

    with caplog.at_level("ERROR", logger="tether"):
        assert await api.call("schedule") == 1
    assert len(caplog.records) == 1


@pytest.mark.parametrize("via_http", [False, True])
async def test_an_operation_calls_another_in_process(via_http: bool) -> None:
    events: list[str] = []

    async def resource() -> Any:
        events.append("open")
        yield "r"
        events.append("close")

    api = Tether()

    @api.query
    async def inner(n: int, r: str = Depends(resource)) -> str:
        return f"{r}{n}"

    @api.query
    async def outer(n: int, r: str = Depends(resource)) -> list[str]:
        return [r, await api.call("inner", {"n": n + 1})]

    app = mounted(api)
    if via_http:
        async with asgi_client(app) as client:
            assert (await client.get("/api/call/outer?n=1")).json() == {"result": ["r", "r2"]}
    else:
        assert await api.call("outer", {"n": 1}) == ["r", "r2"]
    # Each call solves and closes its own dependencies.
    assert events == ["open", "open", "close", "close"]


async def test_transports_and_shutdown_reach_every_mounted_transport() -> None:
    from fastapi import FastAPI

    from tether.transports import HttpTransport

    class Recording(HttpTransport):
        stopped = 0

        async def shutdown(self) -> None:
            Recording.stopped += 1

    api = Tether()
    assert api.transports == ()
    await api.shutdown()  # nothing mounted: nothing to do
    recording = Recording()
    api.mount(FastAPI(), transports=[recording])
    assert api.transports == (recording,)
    await api.shutdown()
    assert Recording.stopped == 1


class TestDefaultTransports:
    """The core mounts default transports it never imports: `tether` installs their factory."""

    def test_mount_without_transports_mounts_the_builtin_ones(self) -> None:
        api = Tether()
        api.mount(FastAPI())
        assert [type(t).__name__ for t in api.transports] == [
            "HttpTransport",
            "JsonRpcTransport",
            "SseTransport",
            "WebSocketTransport",
        ]

    def test_mount_without_transports_asks_the_installed_factory(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: list[Any] = []

        class Recording:
            def attach(self, handle: TransportHandle, app: FastAPI) -> None:
                seen.append(("attach", handle, app))

            def operation_added(self, op: Operation) -> None:
                seen.append(("added", op.name))

        made: list[Recording] = []

        def factory() -> list[Recording]:
            made.append(Recording())
            return made[-1:]

        monkeypatch.setattr(tether.transport, "_default_factory", factory)
        first, second = Tether(), Tether()
        app = FastAPI()
        first.mount(app)
        second.mount(FastAPI())
        assert len(made) == 2  # fresh transports for every mount
        assert first.transports == (made[0],)
        # The transport gets the Tether's narrow handle, not the Tether (issue 10).
        assert seen[0][0] == "attach"
        assert seen[0][2] is app
        assert isinstance(seen[0][1], TransportHandle)
        assert seen[0][1].prefix == first.prefix

        @first.query
        def late() -> int:
            return 1

        assert ("added", "late") in seen

    def test_without_a_factory_mount_needs_transports(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(tether.transport, "_default_factory", None)
        api = Tether()
        with pytest.raises(ConfigurationError, match=r"transports=\[\.\.\.\]"):
            api.mount(FastAPI())
        assert api.app is None  # nothing half-mounted: the same Tether mounts afterwards
        api.mount(FastAPI(), transports=[HttpTransport()])
        assert len(api.transports) == 1

    def test_import_tether_imports_no_transport_until_a_mount(self) -> None:
        program = (
            "import sys\n"
            "import tether\n"
            "from fastapi import FastAPI\n"
            "assert not any(m.startswith('tether.transports') for m in sys.modules), 'early'\n"
            "tether.Tether().mount(FastAPI())\n"
            "assert 'tether.transports.http' in sys.modules, 'never'\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=50, check=False
        )
        assert done.returncode == 0, done.stderr


def test_operations_carry_no_transport_url() -> None:
    api = Tether(dependencies=[Depends(lambda: None)])

    @api.query
    def ping(x_id: Annotated[str, Header()] = "") -> str:
        return x_id

    class Pings(Service):
        @query
        def ping(self, x_id: Annotated[str, Header()] = "") -> str:
            return x_id

    api.include(Pings)
    app = FastAPI(dependencies=[Depends(lambda: None)])
    api.mount(app)  # recompiles every plan with the app's dependencies
    for op in api:
        assert op.plan is not None
        assert op.plan.path == ""


async def test_in_process_requests_show_the_path_of_the_transport_that_serves_the_operation() -> (
    None
):
    api = Tether(prefix="/x")

    @api.query
    async def where(request: Request) -> str:
        return request.url.path

    @api.stream
    async def paths(request: Request) -> AsyncIterator[str]:
        yield request.url.path

    # Not mounted: no transport owns a URL, the path is {prefix}/{name}.
    assert await api.call("where") == "/x/where"
    assert [p async for p in api.stream_call("paths")] == ["/x/paths"]
    mounted(api)
    assert await api.call("where") == "/x/call/where"
    assert [p async for p in api.stream_call("paths")] == ["/x/stream/paths"]
