import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, Header, HTTPException
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
from tether._compile import compile_operation
from tether.context import in_process_scope
from tether.invoke import Invoker
from tether.operation import get_spec

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
        assert (await client.post("/api/call/as_model", json={})).json() == {
            "result": {"id": 1, "title": "a"}
        }
        assert (await client.post("/api/call/as_dict", json={})).json() == {
            "result": {"id": 2, "title": "b"}
        }
        assert (await client.post("/api/call/as_list", json={})).json() == {
            "result": [{"id": 3, "title": "c"}]
        }
        assert (await client.post("/api/call/nothing", json={})).json() == {"result": None}


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


# -- streams and shared dependencies (the invoker's other entry points) -------------------------


async def drain(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


async def drain_stream(api: Tether, name: str) -> list[Any]:
    seen: list[Any] = []
    async with api.invoker.stream(ctx(), api.get(name), {}) as items:
        async for item in items:
            seen.append(item)
    return seen


class TestStreams:
    async def test_async_stream_yields_encoded_items_with_dependencies_open(self) -> None:
        events: list[str] = []

        async def resource() -> AsyncIterator[str]:
            events.append("open")
            yield "r"
            events.append("close")

        api = Tether()

        @api.stream
        async def ticks(n: int, r: str = Depends(resource)) -> AsyncIterator[Todo]:
            for i in range(n):
                events.append(f"item {i}")
                yield Todo(id=i, title=r)

        op = api.get("ticks")
        assert op.kind == "stream"
        assert op.output_type is Todo
        call_ctx = ctx()
        async with api.invoker.stream(call_ctx, op, {"n": 2}, encode=True) as items:
            assert events == ["open"]
            got = [item async for item in items]
        assert got == [b'{"id":0,"title":"r"}', b'{"id":1,"title":"r"}']
        assert events == ["open", "item 0", "item 1", "close"]

    async def test_sync_stream_runs_in_worker_threads(self) -> None:
        threads: set[threading.Thread] = set()
        api = Tether()

        @api.stream
        def count(n: int) -> Iterator[int]:
            for i in range(n):
                threads.add(threading.current_thread())
                yield i

        async with api.invoker.stream(ctx(), api.get("count"), {"n": 3}) as items:
            assert [item async for item in items] == [0, 1, 2]
        assert threading.current_thread() not in threads
        assert [i async for i in api.stream_call("count", {"n": 2})] == [0, 1]

    async def test_stream_errors_are_mapped_and_dependencies_see_them(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        events: list[str] = []

        async def resource() -> AsyncIterator[None]:
            try:
                yield
            except Exception as exc:
                events.append(f"saw {type(exc).__name__}")
                raise

        api = Tether()

        @api.stream
        async def broken(r: None = Depends(resource)) -> AsyncIterator[int]:
            yield 1
            raise ValueError("secret")

        with caplog.at_level("ERROR", logger="tether"):
            with pytest.raises(InternalError):
                await drain_stream(api, "broken")
        assert events == ["saw ValueError"]
        assert len(caplog.records) == 1

    async def test_stream_validation_fails_before_any_item(self) -> None:
        api = Tether()

        @api.stream
        async def ticks(n: int) -> AsyncIterator[int]:
            yield n

        with pytest.raises(ValidationFailed):
            async with api.invoker.stream(ctx(), api.get("ticks"), {"n": "x"}):
                raise AssertionError("not entered")
        with pytest.raises(ValidationFailed):
            await drain(api.stream_call("ticks", {}))

    async def test_stream_and_call_refuse_the_other_kind(self) -> None:
        api = Tether()

        @api.stream
        async def ticks() -> AsyncIterator[int]:
            yield 1

        @api.query
        async def one() -> int:
            return 1

        with pytest.raises(BadRequest, match="is a stream"):
            await api.call("ticks")
        with pytest.raises(BadRequest, match="not a stream"):
            await drain(api.stream_call("one"))

    async def test_stream_call_runs_background_tasks_after_the_items(self) -> None:
        order: list[str] = []
        api = Tether()

        @api.stream
        async def ticks(tasks: BackgroundTasks) -> AsyncIterator[int]:
            tasks.add_task(order.append, "task")
            order.append("item")
            yield 1

        assert [i async for i in api.stream_call("ticks")] == [1]
        assert order == ["item", "task"]


async def test_solve_shared_once_for_many_calls() -> None:
    runs: list[str] = []

    async def shared() -> AsyncIterator[str]:
        runs.append("open")
        yield "s"
        runs.append("close")

    api = Tether()

    @api.query
    async def use(s: str = Depends(shared)) -> str:
        return s

    op = api.get("use")
    call_ctx = ctx()
    async with AsyncExitStack() as stack:
        cache = await api.invoker.solve_shared(call_ctx, [Depends(shared)], stack)
        assert await api.invoker.call(call_ctx, op, {}, dependency_cache=cache) == "s"
        assert await api.invoker.call(call_ctx, op, {}, dependency_cache=cache) == "s"
        assert runs == ["open"]
    assert runs == ["open", "close"]
    assert await api.invoker.solve_shared(call_ctx, [], AsyncExitStack()) == {}


async def test_solve_shared_maps_failures() -> None:
    def broken() -> None:
        raise HTTPException(403, "no")

    invoker = Invoker()
    async with AsyncExitStack() as stack:
        with pytest.raises(TetherError) as info:
            await invoker.solve_shared(ctx(), [Depends(broken)], stack)
    assert info.value.status == 403
