"""A gate is per operation, never per wire (issue 9 §2).

- Transport-level protection knobs are refused, pointing to the Tether-level options.
- The app's own dependencies (`FastAPI(dependencies=...)`) guard every operation on every
  transport, solved first and once per request, and show in OpenAPI.
- A dependency parameter tether cannot supply on every transport is refused at registration.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Body, Depends, FastAPI, File, Form, Header, Path, Query, Request
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBearer, OAuth2PasswordBearer
from pydantic import BaseModel

from tether import ConfigurationError, Tether, Unauthorized
from tether.transports import HttpTransport, JsonRpcTransport

from ._docs_examples import load
from .transports.test_websocket import Closed, MemorySocket

KEY = {"x-api-key": "k"}


class Log:
    """What the dependencies did, in order."""

    def __init__(self) -> None:
        self.entries: list[str] = []

    def key_check(self) -> Any:
        async def require_key(x_api_key: Annotated[str | None, Header()] = None) -> str:
            self.entries.append("key")
            if x_api_key != "k":
                raise Unauthorized("An API key is required")
            return x_api_key

        return require_key


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


def rpc(method: str, params: Any, id_: int | None = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if id_ is not None:
        message["id"] = id_
    return message


# -- transport knobs --------------------------------------------------------------------


@pytest.mark.parametrize("value", [[], [Depends(lambda: None)]])
def test_jsonrpc_batch_dependencies_are_refused_for_tether_level_ones(value: list[Any]) -> None:
    with pytest.raises(ConfigurationError, match="batch_dependencies") as refused:
        JsonRpcTransport(batch_dependencies=value)
    message = str(refused.value)
    for option in ("dependencies", "batch_dependencies", "connection_dependencies"):
        assert f"Tether({option}=[...])" in message


# -- app-wide dependencies ----------------------------------------------------------------


def guarded_app(log: Log, **tether: Any) -> tuple[Tether, FastAPI]:
    """`early` registered before mount, `late` after, on an app with an API-key dependency."""
    api = Tether(**tether)

    @api.query
    async def early(a: int) -> int:
        log.entries.append(f"early {a}")
        return a

    app = FastAPI(dependencies=[Depends(log.key_check())])
    api.mount(app)

    @api.command
    async def late(a: int) -> int:
        log.entries.append(f"late {a}")
        return a

    return api, app


@pytest.mark.parametrize("name", ["early", "late"])
async def test_app_dependencies_guard_http_before_and_after_mount(name: str) -> None:
    log = Log()
    _, app = guarded_app(log)
    async with client(app) as http:
        refused = await http.post(f"/api/call/{name}", json={"a": 1})
        allowed = await http.post(f"/api/call/{name}", json={"a": 2}, headers=KEY)
        refused_get = await http.get("/api/call/early?a=3")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "UNAUTHORIZED"
    assert allowed.json() == {"result": 2}
    assert refused_get.status_code == 401
    assert log.entries == ["key", "key", f"{name} 2", "key"]


async def test_app_dependencies_are_solved_once_per_jsonrpc_batch() -> None:
    log = Log()
    _, app = guarded_app(log)
    batch = [rpc("early", [1], 1), rpc("late", [2], 2), rpc("early", [3], None)]
    async with client(app) as http:
        refused = (await http.post("/api/jsonrpc", json=batch)).json()
        refused_entries = list(log.entries)
        log.entries.clear()
        allowed = (await http.post("/api/jsonrpc", json=batch, headers=KEY)).json()
    assert [item["error"]["data"]["code"] for item in refused] == ["UNAUTHORIZED"] * 2
    assert refused_entries == ["key"]
    assert [item["result"] for item in allowed] == [1, 2]
    assert log.entries[0] == "key"
    assert log.entries.count("key") == 1
    assert sorted(log.entries[1:]) == ["early 1", "early 3", "late 2"]


async def test_app_dependencies_are_solved_once_per_socket_at_the_handshake() -> None:
    log = Log()
    _, app = guarded_app(log)
    async with MemorySocket(app) as refused:
        with pytest.raises(Closed) as closed:
            await refused.receive()
    assert (closed.value.code, closed.value.reason) == (1008, "An API key is required")
    assert log.entries == ["key"]
    log.entries.clear()
    async with MemorySocket(app, headers=list(KEY.items())) as ws:
        envelope = await ws.call({"uuid": 1, "route": "early", "payload": {"a": 1}})
        single = await ws.call(rpc("late", [2], 2))
        batch = await ws.call([rpc("early", [3], 3), rpc("late", [4], 4)])
    assert envelope["payload"] == 1
    assert single["result"] == 2
    assert [item["result"] for item in batch] == [3, 4]
    # Once, at the handshake: the messages (a JSON-RPC batch too) reuse it.
    assert log.entries.count("key") == 1
    assert log.entries[0] == "key"


async def test_app_dependencies_apply_in_process() -> None:
    log = Log()
    api, _ = guarded_app(log)
    with pytest.raises(Unauthorized):
        await api.call("early", {"a": 1})
    assert await api.call("late", {"a": 2}, headers=KEY) == 2
    assert log.entries == ["key", "key", "late 2"]


async def test_app_dependencies_run_before_tether_dependencies_and_the_user_resolver() -> None:
    log = Log()

    def tether_level() -> None:
        log.entries.append("tether")

    def user() -> str:
        log.entries.append("user")
        return "ada"

    api = Tether(dependencies=[Depends(tether_level)], user=Depends(user))

    @api.query(auth=True)
    async def me() -> str:
        return "me"

    app = FastAPI(dependencies=[Depends(log.key_check())])
    api.mount(app)
    async with client(app) as http:
        refused = await http.post("/api/call/me", json={})
        refused_entries = list(log.entries)
        log.entries.clear()
        allowed = await http.post("/api/call/me", json={}, headers=KEY)
    assert refused.status_code == 401
    assert refused_entries == ["key"]
    assert allowed.json() == {"result": "me"}
    assert log.entries == ["key", "tether", "user"]


async def test_dependency_overrides_replace_app_dependencies() -> None:
    log = Log()
    check = log.key_check()
    api = Tether()

    @api.query
    async def ping() -> str:
        return "pong"

    app = FastAPI(dependencies=[Depends(check)])
    api.mount(app)
    app.dependency_overrides[check] = lambda: "overridden"
    async with client(app) as http:
        response = await http.post("/api/call/ping", json={})
    assert response.json() == {"result": "pong"}
    assert log.entries == []


def test_mount_compiles_app_dependencies_into_operations_once() -> None:
    log = Log()
    check = log.key_check()
    api = Tether()

    @api.query
    async def before() -> int:
        return 1

    assert api.get("before").plan is None
    app = FastAPI(dependencies=[Depends(check)])
    api.mount(app)

    @api.query
    async def after() -> int:
        return 2

    for name in ("before", "after"):
        op = api.get(name)
        assert op.plan is not None
        assert [d.dependency for d in op.plan.app_dependencies] == [check]
        # The compiled operation is what every call uses: nothing is rebuilt per call.
        assert api.get(name) is op
    assert [d.dependency for d in api.app_dependencies] == [check]


async def test_app_dependencies_show_in_openapi_on_every_operation() -> None:
    log = Log()
    _, app = guarded_app(log)
    bearer = HTTPBearer()
    secured = FastAPI(dependencies=[Depends(bearer)])
    api = Tether()

    @api.query
    async def ping() -> str:
        return "pong"

    api.mount(secured)
    document = app.openapi()
    for path, method in (
        ("/api/call/early", "post"),
        ("/api/call/early", "get"),
        ("/api/call/late", "post"),
    ):
        parameters = document["paths"][path][method].get("parameters", [])
        assert {"name": "x-api-key", "in": "header"}.items() <= next(
            p for p in parameters if p["name"] == "x-api-key"
        ).items(), (path, method)
    secured_document = secured.openapi()
    assert secured_document["paths"]["/api/call/ping"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "HTTPBearer" in secured_document["components"]["securitySchemes"]


async def test_a_yield_app_dependency_closes_after_the_call() -> None:
    log: list[str] = []

    async def session() -> AsyncIterator[None]:
        log.append("open")
        yield
        log.append("close")

    api = Tether()

    @api.query
    async def ping() -> str:
        log.append("ping")
        return "pong"

    app = FastAPI(dependencies=[Depends(session)])
    api.mount(app, transports=[HttpTransport(), JsonRpcTransport()])
    async with client(app) as http:
        await http.post("/api/call/ping", json={})
        await http.post("/api/jsonrpc", json=[rpc("ping", [], 1), rpc("ping", [], 2)])
    assert log == ["open", "ping", "close", "open", "ping", "ping", "close"]


# -- dependency parameters tether cannot supply ----------------------------------------


class Model(BaseModel):
    a: int


def reads_plain(x: int) -> int:
    return x


def reads_query(x: Annotated[int, Query()]) -> int:
    return x


def reads_query_model(x: Annotated[Model, Query()]) -> int:
    return x.a


def reads_path(x: Annotated[int, Path()]) -> int:
    return x


def reads_body(x: Annotated[int, Body()]) -> int:
    return x


def reads_model(x: Model) -> int:
    return x.a


def reads_form(x: Annotated[str, Form()]) -> str:
    return x


def reads_file(x: Annotated[bytes, File()]) -> bytes:
    return x


def nested(value: Annotated[int, Depends(reads_plain)]) -> int:
    return value


REFUSED = [
    pytest.param(reads_plain, "reads_plain", "query parameter", id="plain"),
    pytest.param(reads_query, "reads_query", "query parameter", id="Query"),
    pytest.param(reads_query_model, "reads_query_model", "query parameter", id="Query-model"),
    pytest.param(reads_path, "reads_path", "Path()", id="Path"),
    pytest.param(reads_body, "reads_body", "Body()", id="Body"),
    pytest.param(reads_model, "reads_model", "Body()", id="model"),
    pytest.param(reads_form, "reads_form", "Form()", id="Form"),
    pytest.param(reads_file, "reads_file", "File()", id="File"),
    pytest.param(nested, "reads_plain", "query parameter", id="sub-dependency"),
]


def assert_refusal(error: ConfigurationError, name: str, kind: str) -> None:
    message = str(error)
    assert f"dependency tests.test_gates.{name} declares 'x' as" in message
    assert kind in message
    assert "make it an input of the operation" in message
    assert "Header(), a Cookie() or the Request" in message


@pytest.mark.parametrize(("dependency", "name", "kind"), REFUSED)
def test_an_operation_dependency_reading_a_wire_parameter_is_refused(
    dependency: Any, name: str, kind: str
) -> None:
    api = Tether()

    async def op(value: Annotated[Any, Depends(dependency)]) -> int:
        return 1

    with pytest.raises(ConfigurationError) as refused:
        api.query(op)
    assert_refusal(refused.value, name, kind)
    assert "op" not in api


@pytest.mark.parametrize(("dependency", "name", "kind"), REFUSED)
def test_a_tether_level_or_user_dependency_reading_a_wire_parameter_is_refused(
    dependency: Any, name: str, kind: str
) -> None:
    async def op() -> int:
        return 1

    with pytest.raises(ConfigurationError) as refused:
        Tether(dependencies=[Depends(dependency)]).query(op)
    assert_refusal(refused.value, name, kind)
    with pytest.raises(ConfigurationError) as refused:
        Tether(user=Depends(dependency)).query(auth=True)(op)
    assert_refusal(refused.value, name, kind)


@pytest.mark.parametrize(("dependency", "name", "kind"), REFUSED)
def test_an_app_dependency_reading_a_wire_parameter_is_refused_at_mount(
    dependency: Any, name: str, kind: str
) -> None:
    api = Tether()

    @api.query
    async def op() -> int:
        return 1

    app = FastAPI(dependencies=[Depends(dependency)])
    with pytest.raises(ConfigurationError) as refused:
        api.mount(app)
    assert_refusal(refused.value, name, kind)
    assert "the app's dependencies (FastAPI(dependencies=[...]))" in str(refused.value)
    # Nothing was half-done: the operation is unchanged and tether is not mounted.
    assert api.app is None
    assert api.get("op").plan is None


def test_a_dependency_query_param_sharing_an_input_name_is_refused() -> None:
    # FastAPI would give both the same value; tether refuses instead of differing.
    api = Tether()

    def page_size(limit: int = 10) -> int:
        return limit

    async def items(limit: int, size: Annotated[int, Depends(page_size)]) -> int:
        return limit + size

    with pytest.raises(ConfigurationError, match="page_size declares 'limit'"):
        api.query(items)


@pytest.mark.parametrize(
    "security",
    [HTTPBearer(), OAuth2PasswordBearer("token"), APIKeyHeader(name="k"), APIKeyQuery(name="k")],
    ids=["HTTPBearer", "OAuth2PasswordBearer", "APIKeyHeader", "APIKeyQuery"],
)
def test_security_classes_still_register(security: Any) -> None:
    api = Tether(dependencies=[Depends(security)])

    @api.query
    async def op(credentials: Annotated[Any, Depends(security)]) -> int:
        return 1

    app = FastAPI(dependencies=[Depends(security)])
    api.mount(app)
    assert api.get("op").plan is not None


def test_supported_dependency_parameters_still_register() -> None:
    def reads_what_every_transport_has(
        request: Request,
        x_token: Annotated[str | None, Header()] = None,
        sub: Annotated[int, Depends(lambda: 1)] = 0,
    ) -> int:
        return sub

    api = Tether(dependencies=[Depends(reads_what_every_transport_has)])

    @api.query
    async def op() -> int:
        return 1

    assert "op" in api


# -- the docs' example ---------------------------------------------------------------------


async def test_dependencies_5_the_app_key_guards_every_transport() -> None:
    module = load("dependencies_5")
    secret = {"x-api-key": "secret"}
    refusal = ("UNAUTHORIZED", "Missing or wrong API key")
    async with client(module.app) as http:
        health = await http.get("/health")
        call = await http.post("/api/call/greet", json={"name": "Ada"})
        batch = await http.post("/api/jsonrpc", json=[rpc("greet", ["Ada"], 1)] * 3)
        assert module.CHECKS == [None, None, None]  # once for the whole batch
        allowed = await http.post("/api/call/greet", json={"name": "Ada"}, headers=secret)
        document = (await http.get("/openapi.json", headers=secret)).json()
    assert health.status_code == call.status_code == 401
    error = call.json()["error"]
    assert (error["code"], error["message"]) == refusal
    assert [(i["error"]["data"]["code"], i["error"]["message"]) for i in batch.json()] == [
        refusal
    ] * 3
    assert allowed.json() == {"result": "Hello, Ada!"}
    parameters = document["paths"]["/api/call/greet"]["post"]["parameters"]
    assert [(p["name"], p["in"]) for p in parameters] == [("x-api-key", "header")]
    async with MemorySocket(module.app) as ws:
        with pytest.raises(Closed) as closed:
            await ws.receive()
    assert (closed.value.code, closed.value.reason) == (1008, "Missing or wrong API key")
    with pytest.raises(Unauthorized, match="Missing or wrong API key"):
        await module.api.call("greet", {"name": "Ada"})
    assert await module.api.call("greet", {"name": "Ada"}, headers=secret) == "Hello, Ada!"


def test_a_class_dependency_reading_a_form_field_is_refused() -> None:
    class Login:
        def __init__(self, password: Annotated[str, Form()]) -> None:
            self.password = password

    async def login(form: Annotated[Login, Depends()]) -> int:
        return 1

    with pytest.raises(ConfigurationError, match=r"Login declares 'password' as a Form\(\)"):
        Tether().command(login)
