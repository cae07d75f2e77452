import threading
from typing import Annotated, Any

import pytest
from fastapi import Depends, Header, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from tests._core_helpers import TRANSPORTS, asgi_client, call_over, mounted
from tether import (
    BadRequest,
    CallContext,
    Conflict,
    InternalError,
    NotFound,
    Tether,
    TetherError,
    Unauthorized,
    ValidationFailed,
)
from tether.context import in_process_scope
from tether.invoke import Invoker
from tether.operation import compile_operation, get_spec

per_transport = pytest.mark.parametrize("transport", TRANSPORTS)


class Todo(BaseModel):
    id: int
    title: str


def compile_(func: Any, **kwargs: Any) -> Any:
    spec = get_spec(func)
    assert spec is not None
    return compile_operation(func, spec, **kwargs)


def ctx() -> CallContext:
    return CallContext("test", in_process_scope(None, "/api/call/x"))


async def test_fast_path_returns_result_or_bytes() -> None:
    from tether import query

    @query
    async def add(a: int, b: int = 1) -> int:
        return a + b

    op = compile_(add)
    assert op.plan is None
    invoker = Invoker()
    assert await invoker.call(ctx(), op, {"a": 2}) == 3
    assert await invoker.call(ctx(), op, {"a": 2, "b": "5"}, encode=True) == b"7"
    assert await invoker.call(ctx(), op, op.input_model(a=1, b=1)) == 2


async def test_dependency_path_returns_result_or_bytes() -> None:
    from tether import query

    def token(x_token: Annotated[str, Header()] = "none") -> str:
        return x_token

    @query
    async def get(id: int, t: str = Depends(token)) -> Todo:
        return Todo(id=id, title=t)

    op = compile_(get)
    assert op.plan is not None
    invoker = Invoker()
    assert await invoker.call(ctx(), op, {"id": 1}) == Todo(id=1, title="none")
    call_ctx = CallContext("test", in_process_scope(None, "/x", {"X-Token": "abc"}))
    assert await invoker.call(call_ctx, op, {"id": 2}, encode=True) == b'{"id":2,"title":"abc"}'


async def test_dependency_cache_seeds_solved_values() -> None:
    from tether import query

    runs: list[int] = []

    def expensive() -> int:
        runs.append(1)
        return 41

    @query
    async def get(n: int = Depends(expensive)) -> int:
        return n + 1

    op = compile_(get)
    invoker = Invoker()
    assert await invoker.call(ctx(), op, {}) == 42
    assert runs == [1]
    seeded = {(expensive, (), ""): 99}
    assert await invoker.call(ctx(), op, {}, dependency_cache=seeded) == 100
    assert runs == [1]


@per_transport
async def test_sync_operations_run_in_a_worker_thread(transport: str) -> None:
    threads: list[threading.Thread] = []
    api = Tether()

    @api.query
    def plain() -> int:
        threads.append(threading.current_thread())
        return 1

    @api.query
    def with_dep(x: Annotated[str | None, Header()] = None) -> int:
        threads.append(threading.current_thread())
        return 2

    mounted(api)
    here = threading.current_thread()
    assert await call_over(transport, api, "plain") == (200, {"result": 1})
    assert await call_over(transport, api, "with_dep") == (200, {"result": 2})
    assert len(threads) == 2
    assert here not in threads
    assert threading.main_thread() not in threads


@per_transport
async def test_async_operations_run_on_the_event_loop(transport: str) -> None:
    threads: list[threading.Thread] = []
    api = Tether()

    @api.query
    async def plain() -> int:
        threads.append(threading.current_thread())
        return 1

    mounted(api)
    assert await call_over(transport, api, "plain") == (200, {"result": 1})
    assert threads == [threading.current_thread()]


@per_transport
@pytest.mark.parametrize("with_dependency", [False, True], ids=["fast", "solved"])
async def test_unexpected_exception_is_internal_error_logged_once(
    transport: str, with_dependency: bool, caplog: pytest.LogCaptureFixture
) -> None:
    api = Tether()

    def dep() -> int:
        return 1

    if with_dependency:

        @api.command(name="explode")
        def explode_dep(n: int, d: int = Depends(dep)) -> int:
            raise ZeroDivisionError("secret internal detail 1234")

    else:

        @api.command(name="explode")
        def explode(n: int) -> int:
            raise ZeroDivisionError("secret internal detail 1234")

    mounted(api)
    with caplog.at_level("DEBUG"):
        status, body = await call_over(transport, api, "explode", {"n": 1})
    assert status == 500
    assert body == {
        "error": {"code": "INTERNAL_ERROR", "message": "Internal server error", "details": None}
    }
    assert "secret" not in str(body)
    records = [r for r in caplog.records if r.exc_info is not None]
    assert len(records) == 1
    record = records[0]
    assert record.name == "tether"
    assert record.levelname == "ERROR"
    assert "'explode'" in record.getMessage()
    assert isinstance(record.exc_info[1], ZeroDivisionError)  # type: ignore[index]


@per_transport
async def test_tether_errors_pass_through_unlogged(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    api = Tether()

    @api.command
    async def conflict(key: str) -> None:
        raise Conflict("taken", details={"key": key})

    mounted(api)
    with caplog.at_level("DEBUG", logger="tether"):
        assert await call_over(transport, api, "conflict", {"key": "k"}) == (
            409,
            {"error": {"code": "CONFLICT", "message": "taken", "details": {"key": "k"}}},
        )
    assert caplog.records == []


@per_transport
async def test_bad_return_value_is_an_internal_error(
    transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    api = Tether()

    @api.query
    async def wrong() -> int:
        return "not a number"  # type: ignore[return-value]

    mounted(api)
    with caplog.at_level("ERROR", logger="tether"):
        status, body = await call_over(transport, api, "wrong")
    if transport == "http":
        # Encoding validates the value, as a FastAPI response_model does.
        assert status == 500
        assert body["error"]["code"] == "INTERNAL_ERROR"
        assert len(caplog.records) == 1
    else:
        # In-process results are not encoded; the value comes back as returned.
        assert (status, body) == (200, {"result": "not a number"})


@per_transport
async def test_output_serialized_like_a_response_model(transport: str) -> None:
    class Secret(Todo):
        password: str

    api = Tether()

    @api.query
    async def as_model() -> Todo:
        return Secret(id=1, title="a", password="p")

    @api.query
    async def as_dict() -> Todo:
        return {"id": "2", "title": "b", "password": "p"}  # type: ignore[return-value]

    @api.query
    async def as_list() -> list[Todo]:
        return [Todo(id=3, title="c")]

    @api.command
    async def nothing() -> None:
        return None

    app = mounted(api)
    async with asgi_client(app) as client:
        assert (await client.post("/api/call/as_model")).json() == {
            "result": {"id": 1, "title": "a"}
        }
        assert (await client.post("/api/call/as_dict")).json() == {
            "result": {"id": 2, "title": "b"}
        }
        assert (await client.post("/api/call/as_list")).json() == {
            "result": [{"id": 3, "title": "c"}]
        }
        assert (await client.post("/api/call/nothing")).json() == {"result": None}


@per_transport
async def test_validation_is_identical_in_process_and_over_http(transport: str) -> None:
    api = Tether()

    @api.command
    async def create(todo: Todo, count: int, tags: list[str] | None = None) -> int:
        return count

    mounted(api)
    params = {"todo": {"id": "x"}, "tags": "a", "unknown": 1}
    status, body = await call_over(transport, api, "create", params)
    assert status == 422
    assert body == {
        "error": {
            "code": "VALIDATION_FAILED",
            "message": "Invalid parameters",
            "details": [
                {
                    "loc": ["todo", "id"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "type": "int_parsing",
                },
                {"loc": ["todo", "title"], "msg": "Field required", "type": "missing"},
                {"loc": ["count"], "msg": "Field required", "type": "missing"},
                {"loc": ["tags"], "msg": "Input should be a valid list", "type": "list_type"},
                {
                    "loc": ["unknown"],
                    "msg": "Extra inputs are not permitted",
                    "type": "extra_forbidden",
                },
            ],
        }
    }


@pytest.mark.parametrize(
    ("exc", "expected", "message"),
    [
        (HTTPException(401, "who are you"), Unauthorized, "who are you"),
        (StarletteHTTPException(404), NotFound, "Not Found"),
        (HTTPException(400, {"why": "x"}), BadRequest, "Bad request"),
        (HTTPException(422, "bad"), ValidationFailed, "bad"),
    ],
)
def test_map_exception_http_exceptions(
    exc: Exception, expected: type[TetherError], message: str
) -> None:
    mapped = Invoker.map_exception(exc, "op")
    assert type(mapped) is expected
    assert mapped.detail_message == message


def test_map_exception_http_exception_details() -> None:
    mapped = Invoker.map_exception(HTTPException(400, {"why": "x"}), "op")
    assert mapped.details == {"why": "x"}


def test_map_exception_5xx_http_exception_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("ERROR", logger="tether"):
        mapped = Invoker.map_exception(HTTPException(503, "db down: password=x"), "op")
    assert type(mapped) is InternalError
    assert mapped.detail_message == "Internal server error"
    assert len(caplog.records) == 1


def test_map_exception_request_validation_error() -> None:
    exc = RequestValidationError(
        [{"loc": ("header", "x-token"), "msg": "Field required", "type": "missing"}]
    )
    mapped = Invoker.map_exception(exc, "op")
    assert isinstance(mapped, ValidationFailed)
    assert mapped.to_dict()["details"] == [
        {"loc": ["header", "x-token"], "msg": "Field required", "type": "missing"}
    ]


def test_map_exception_keeps_tether_errors() -> None:
    error = NotFound("x")
    assert Invoker.map_exception(error, "op") is error


@per_transport
async def test_request_validation_error_raised_by_a_dependency(transport: str) -> None:
    def strict() -> None:
        raise RequestValidationError(
            [{"loc": ("query", "q"), "msg": "bad q", "type": "value_error"}]
        )

    api = Tether()

    @api.query
    def op(x: None = Depends(strict)) -> None:
        pass

    mounted(api)
    assert await call_over(transport, api, "op") == (
        422,
        {
            "error": {
                "code": "VALIDATION_FAILED",
                "message": "Invalid parameters",
                "details": [{"loc": ["query", "q"], "msg": "bad q", "type": "value_error"}],
            }
        },
    )


def test_invoker_overrides_provider() -> None:
    invoker = Invoker()
    assert invoker.overrides_provider is None
    provider = object()
    assert Invoker(provider).overrides_provider is provider
