import inspect
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

import pytest
from fastapi import (
    BackgroundTasks,
    Cookie,
    Depends,
    FastAPI,
    Header,
    HTTPException,
    Request,
    Response,
    Security,
)
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from pydantic import Field
from starlette.requests import HTTPConnection
from starlette.types import Message, Receive, Scope, Send

from tests._core_helpers import TRANSPORTS, asgi_client, call_over, mounted
from tether import NotFound, Tether
from tether.dependencies import (
    BatchScoped,
    ConnectionScoped,
    DependencyPlan,
    PerBatch,
    PerConnection,
    is_dependency_parameter,
    scope_with_stacks,
)

per_transport = pytest.mark.parametrize("transport", TRANSPORTS)


@per_transport
async def test_depends_and_sub_dependencies(transport: str) -> None:
    def get_settings() -> dict[str, str]:
        return {"greeting": "hello"}

    async def get_greeter(settings: dict[str, str] = Depends(get_settings)) -> str:
        return settings["greeting"]

    api = Tether()

    @api.query
    async def greet(name: str, greeter: Annotated[str, Depends(get_greeter)]) -> str:
        return f"{greeter} {name}"

    mounted(api)
    assert await call_over(transport, api, "greet", {"name": "ada"}) == (
        200,
        {"result": "hello ada"},
    )


@per_transport
async def test_security_scopes(transport: str) -> None:
    seen: list[list[str]] = []

    def scoped(security_scopes: SecurityScopes) -> str:
        seen.append(security_scopes.scopes)
        return security_scopes.scope_str

    api = Tether()

    @api.query
    def read(
        scopes: Annotated[str, Security(scoped, scopes=["items:read"])],
        more: str = Security(scoped, scopes=["items:write"]),
    ) -> list[str]:
        return [scopes, more]

    mounted(api)
    assert await call_over(transport, api, "read") == (
        200,
        {"result": ["items:read", "items:write"]},
    )
    assert seen == [["items:read"], ["items:write"]]


@per_transport
async def test_header_and_cookie(transport: str) -> None:
    api = Tether()

    @api.query
    def who(
        x_token: Annotated[str, Header()],
        session: Annotated[str | None, Cookie()] = None,
        agent: Annotated[str, Header(alias="x-agent")] = "none",
    ) -> list[Any]:
        return [x_token, session, agent]

    mounted(api)
    headers = {"x-token": "t1", "cookie": "session=s1", "x-agent": "a"}
    assert await call_over(transport, api, "who", headers=headers) == (
        200,
        {"result": ["t1", "s1", "a"]},
    )
    status, body = await call_over(transport, api, "who")
    assert status == 422
    assert body["error"]["code"] == "VALIDATION_FAILED"
    assert body["error"]["details"] == [
        {"loc": ["header", "x-token"], "msg": "Field required", "type": "missing"}
    ]


@per_transport
async def test_request_dependency(transport: str) -> None:
    api = Tether(prefix="/rpc")

    @api.command
    async def where(a: int, request: Request) -> list[Any]:
        return [request.url.path, request.method, request.headers.get("x-h"), a]

    mounted(api)
    status, body = await call_over(transport, api, "where", {"a": 1}, headers={"x-h": "v"})
    assert status == 200
    assert body == {"result": ["/rpc/call/where", "POST", "v", 1]}


@per_transport
async def test_http_connection_dependency(transport: str) -> None:
    api = Tether()

    @api.query
    def conn(connection: HTTPConnection) -> str:
        return connection.scope["type"]

    mounted(api)
    assert await call_over(transport, api, "conn") == (200, {"result": "http"})


@per_transport
async def test_background_tasks_run(transport: str) -> None:
    done: list[str] = []
    api = Tether()

    @api.command
    def schedule(item: str, tasks: BackgroundTasks) -> str:
        tasks.add_task(done.append, item)
        assert done == []
        return "scheduled"

    mounted(api)
    assert await call_over(transport, api, "schedule", {"item": "x"}) == (
        200,
        {"result": "scheduled"},
    )
    assert done == ["x"]


@per_transport
async def test_yield_dependency_closes_after_the_call(transport: str) -> None:
    events: list[str] = []

    async def resource() -> AsyncIterator[str]:
        events.append("open")
        yield "r"
        events.append("close")

    def sync_resource() -> Iterator[str]:
        events.append("sync open")
        yield "s"
        events.append("sync close")

    api = Tether()

    @api.command
    async def use(r: str = Depends(resource), s: str = Depends(sync_resource)) -> str:
        events.append("run")
        return r + s

    mounted(api)
    assert await call_over(transport, api, "use") == (200, {"result": "rs"})
    assert events[:3] == ["open", "sync open", "run"]
    assert sorted(events[3:]) == ["close", "sync close"]


@per_transport
async def test_yield_dependency_sees_the_exception(transport: str) -> None:
    events: list[str] = []

    async def resource() -> AsyncIterator[str]:
        events.append("open")
        try:
            yield "r"
        except Exception as exc:
            events.append(f"saw {type(exc).__name__}: {exc}")
            raise
        finally:
            events.append("close")

    api = Tether()

    @api.command
    async def fail(r: str = Depends(resource)) -> None:
        raise NotFound("missing row")

    mounted(api)
    status, body = await call_over(transport, api, "fail")
    assert status == 404
    assert body["error"]["code"] == "NOT_FOUND"
    assert events == ["open", "saw NotFound: missing row", "close"]


@per_transport
async def test_yield_dependency_that_swallows_is_an_internal_error(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def swallow() -> AsyncIterator[None]:
        try:
            yield
        except Exception:
            pass  # a bug: the exception must be re-raised

    api = Tether()

    @api.command
    async def fail(r: None = Depends(swallow)) -> int:
        raise ValueError("boom")

    mounted(api)
    with caplog.at_level("ERROR", logger="tether"):
        status, body = await call_over(transport, api, "fail")
    assert status == 500
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert [r.getMessage() for r in caplog.records] == [
        "operation 'fail' failed with an unexpected exception"
    ]
    assert "swallowed" in str(caplog.records[0].exc_info[1])  # type: ignore[index]


@per_transport
async def test_dependency_overrides(transport: str) -> None:
    def get_db() -> str:
        return "real"

    api = Tether()

    @api.query
    def which(db: str = Depends(get_db)) -> str:
        return db

    app = mounted(api)
    assert await call_over(transport, api, "which") == (200, {"result": "real"})
    app.dependency_overrides[get_db] = lambda: "fake"
    assert await call_over(transport, api, "which") == (200, {"result": "fake"})
    app.dependency_overrides.clear()
    assert await call_over(transport, api, "which") == (200, {"result": "real"})


@per_transport
async def test_dependency_used_twice_runs_once(transport: str) -> None:
    runs: list[int] = []

    async def counter() -> int:
        runs.append(1)
        return len(runs)

    def doubled(n: int = Depends(counter)) -> int:
        return n * 2

    api = Tether(dependencies=[Depends(counter)])

    @api.query
    def twice(
        a: int = Depends(counter),
        b: Annotated[int, Depends(counter)] = 0,
        c: int = Depends(doubled),
    ) -> list[int]:
        return [a, b, c]

    mounted(api)
    assert await call_over(transport, api, "twice") == (200, {"result": [1, 1, 2]})
    assert len(runs) == 1
    # Once per call, not once forever.
    assert await call_over(transport, api, "twice") == (200, {"result": [2, 2, 4]})


@per_transport
async def test_use_cache_false_runs_again(transport: str) -> None:
    runs: list[int] = []

    def counter() -> int:
        runs.append(1)
        return len(runs)

    api = Tether()

    @api.query
    def twice(a: int = Depends(counter), b: int = Depends(counter, use_cache=False)) -> list[int]:
        return [a, b]

    mounted(api)
    assert await call_over(transport, api, "twice") == (200, {"result": [1, 2]})


@per_transport
async def test_tether_level_dependencies_apply_to_every_operation(transport: str) -> None:
    seen: list[str] = []

    def require_key(x_key: Annotated[str | None, Header()] = None) -> None:
        seen.append(str(x_key))
        if x_key != "secret":
            raise HTTPException(403, "bad key")

    api = Tether(dependencies=[Depends(require_key)])

    @api.query
    def plain() -> int:
        return 1

    @api.command
    def with_input(a: int) -> int:
        return a

    mounted(api)
    for name, params in (("plain", {}), ("with_input", {"a": 2})):
        status, body = await call_over(transport, api, name, params)
        assert status == 403
        assert body == {"error": {"code": "FORBIDDEN", "message": "bad key", "details": None}}
        status, body = await call_over(transport, api, name, params, headers={"x-key": "secret"})
        assert (status, body) == (200, {"result": params.get("a", 1)})
    assert seen == ["None", "secret", "None", "secret"]


@per_transport
async def test_http_exception_in_dependency_maps_to_error(transport: str) -> None:
    def gone() -> None:
        raise HTTPException(404, detail={"table": "todos"})

    def teapot() -> None:
        raise HTTPException(418, "short and stout")

    api = Tether()

    @api.query
    def a(x: None = Depends(gone)) -> None:
        pass

    @api.query
    def b(x: None = Depends(teapot)) -> None:
        pass

    mounted(api)
    assert await call_over(transport, api, "a") == (
        404,
        {"error": {"code": "NOT_FOUND", "message": "Not found", "details": {"table": "todos"}}},
    )
    assert await call_over(transport, api, "b") == (
        418,
        {"error": {"code": "HTTP_418", "message": "short and stout", "details": None}},
    )


@per_transport
async def test_oauth2_password_bearer_maps_to_unauthorized(transport: str) -> None:
    oauth2 = OAuth2PasswordBearer(tokenUrl="token")

    def current_user(token: str = Depends(oauth2)) -> dict[str, str]:
        return {"name": token}

    api = Tether(user=Depends(current_user))

    @api.query(auth=True)
    def me(user: dict[str, str] = Depends(current_user)) -> str:
        return user["name"]

    mounted(api)
    status, body = await call_over(transport, api, "me")
    assert status == 401
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert body["error"]["message"] == "Not authenticated"
    assert await call_over(transport, api, "me", headers={"authorization": "Bearer ada"}) == (
        200,
        {"result": "ada"},
    )


@per_transport
async def test_unexpected_exception_in_dependency(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise KeyError("secret-key-name")

    api = Tether()

    @api.query
    def op(x: None = Depends(broken)) -> None:
        pass

    mounted(api)
    with caplog.at_level("ERROR", logger="tether"):
        status, body = await call_over(transport, api, "op")
    assert (status, body) == (
        500,
        {"error": {"code": "INTERNAL_ERROR", "message": "Internal server error", "details": None}},
    )
    assert len(caplog.records) == 1
    assert "'op'" in caplog.records[0].getMessage()


@per_transport
async def test_dependency_with_field_constraint_on_header(transport: str) -> None:
    def limit(x_limit: Annotated[int, Header(), Field(le=10)] = 1) -> int:
        return x_limit

    api = Tether()

    @api.query
    def op(n: int = Depends(limit)) -> int:
        return n

    mounted(api)
    assert await call_over(transport, api, "op", headers={"x-limit": "5"}) == (200, {"result": 5})
    status, body = await call_over(transport, api, "op", headers={"x-limit": "50"})
    assert status == 422
    assert body["error"]["details"][0]["loc"] == ["header", "x-limit"]


@per_transport
async def test_per_batch_and_per_connection_act_as_depends_for_single_calls(
    transport: str,
) -> None:
    runs: list[str] = []

    def a() -> str:
        runs.append("a")
        return "a"

    def b() -> str:
        runs.append("b")
        return "b"

    api = Tether()

    @api.query
    def op(x: str = PerBatch(a), y: str = PerConnection(b)) -> str:
        return x + y

    mounted(api)
    assert await call_over(transport, api, "op") == (200, {"result": "ab"})
    assert runs == ["a", "b"]
    plan = api.get("op").plan
    assert plan is not None
    assert [type(d) for d in plan.batch_scoped] == [BatchScoped]
    assert [type(d) for d in plan.connection_scoped] == [ConnectionScoped]


# -- unit tests of the module, not per transport -------------------------------------------------


def test_is_dependency_parameter() -> None:
    where = "op"

    def dep() -> int:
        return 1

    cases: list[tuple[Any, Any, bool]] = [
        (int, inspect.Parameter.empty, False),
        (Annotated[int, Field(ge=1)], inspect.Parameter.empty, False),
        (int, Depends(dep), True),
        (Annotated[int, Depends(dep)], inspect.Parameter.empty, True),
        (str, Header(), True),
        (Annotated[str, Cookie()], None, True),
        (Request, inspect.Parameter.empty, True),
        (Response, inspect.Parameter.empty, True),
        (BackgroundTasks, inspect.Parameter.empty, True),
        (SecurityScopes, inspect.Parameter.empty, True),
        (HTTPConnection, inspect.Parameter.empty, True),
        (list[Request], inspect.Parameter.empty, False),
    ]
    for annotation, default, expected in cases:
        assert is_dependency_parameter("p", annotation, default, where=where) is expected, (
            annotation
        )


def test_scope_with_stacks() -> None:
    scope: dict[str, Any] = {"type": "http", "path": "/x"}
    inner, function = AsyncExitStack(), AsyncExitStack()
    child = scope_with_stacks(scope, inner, function)
    assert child is not scope
    assert scope == {"type": "http", "path": "/x"}
    assert child["fastapi_inner_astack"] is inner
    assert child["fastapi_function_astack"] is function
    assert child["fastapi_astack"] is inner
    assert child["path"] == "/x"


def test_plan_keeps_parameters_and_user() -> None:

    def user() -> None:
        return None

    param = inspect.Parameter(
        "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
    )
    plan = DependencyPlan([param], path="/x", user=Depends(user))
    assert plan.names == ("request",)
    assert plan.parameters == (param,)
    assert plan.has_user is True
    assert plan.batch_scoped == ()
    plan = DependencyPlan([], path="/x")
    assert plan.has_user is False


async def test_background_tasks_run_after_the_response_is_sent() -> None:
    order: list[str] = []
    api = Tether()

    @api.command
    async def schedule(tasks: BackgroundTasks) -> int:
        tasks.add_task(order.append, "task")
        return 1

    app = mounted(api)

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                order.append("body sent")
            await send(message)

        await app(scope, receive, recording_send)

    async with asgi_client(recording) as client:
        response = await client.post("/api/call/schedule", json={})
    assert response.json() == {"result": 1}
    assert order == ["body sent", "task"]


async def test_response_dependency_sets_headers_cookies_and_status() -> None:
    api = Tether()

    @api.command
    def create(name: str, response: Response) -> str:
        response.headers["x-created"] = name
        response.set_cookie("last", name)
        response.status_code = 201
        return name

    @api.command
    def fail(response: Response) -> None:
        response.status_code = 202
        raise NotFound()

    app = mounted(api)
    async with asgi_client(app) as client:
        response = await client.post("/api/call/create", json={"name": "n1"})
        assert response.status_code == 201
        assert response.json() == {"result": "n1"}
        assert response.headers["x-created"] == "n1"
        assert response.headers["content-type"] == "application/json"
        assert response.cookies["last"] == "n1"
        # An error keeps the error's status.
        response = await client.post("/api/call/fail", json={})
        assert response.status_code == 404
    # In-process the Response is solved too, and simply not sent anywhere.
    assert await api.call("create", {"name": "n2"}) == "n2"


async def test_request_body_is_visible_to_dependencies() -> None:

    async def raw(request: Request) -> bytes:
        return await request.body()

    api = Tether()

    @api.command
    async def op(a: int, body: bytes = Depends(raw)) -> str:
        return body.decode()

    app = mounted(api)
    async with asgi_client(app) as client:
        response = await client.post(
            "/api/call/op", content=b'{"a": 1}', headers={"content-type": "application/json"}
        )
    assert response.json() == {"result": '{"a": 1}'}


async def test_overrides_on_an_app_with_a_fastapi_route() -> None:

    def get_db() -> str:
        return "real"

    api = Tether()

    @api.query
    def which(db: str = Depends(get_db)) -> str:
        return db

    app = FastAPI()

    @app.get("/plain")
    def plain(db: str = Depends(get_db)) -> str:
        return db

    api.mount(app)
    app.dependency_overrides[get_db] = lambda: "fake"
    async with asgi_client(app) as client:
        assert (await client.get("/plain")).json() == "fake"
        assert (await client.get("/api/call/which")).json() == {"result": "fake"}


@per_transport
async def test_overrides_apply_to_tether_level_dependencies(transport: str) -> None:
    def require_key(x_key: Annotated[str | None, Header()] = None) -> None:
        if x_key != "secret":
            raise HTTPException(403, "bad key")

    api = Tether(dependencies=[Depends(require_key)])

    @api.query
    def ping() -> str:
        return "pong"

    app = mounted(api)
    assert (await call_over(transport, api, "ping"))[0] == 403
    app.dependency_overrides[require_key] = lambda: None
    assert await call_over(transport, api, "ping") == (200, {"result": "pong"})
