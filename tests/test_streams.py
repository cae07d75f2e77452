"""Stream operations in-process: `api.stream_call`, dependency lifetimes, errors, services."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Header
from pydantic import BaseModel

from tests.examples.test_docs_examples import load
from tether import (
    BadRequest,
    ConfigurationError,
    Forbidden,
    NotFound,
    Service,
    Tether,
    Unauthorized,
    ValidationFailed,
    stream,
)
from tether.context import CallContext, in_process_scope


class Tick(BaseModel):
    n: int


class World:
    """What one test app's streams and dependencies record."""

    def __init__(self) -> None:
        self.log: list[str] = []


async def current_user(x_user: str | None = Header(None)) -> dict[str, Any] | None:
    return None if x_user is None else {"name": x_user, "is_staff": x_user == "admin"}


def create_api(world: World) -> Tether:
    api = Tether(prefix="/api", user=Depends(current_user))

    async def resource() -> AsyncIterator[str]:
        world.log.append("open")
        try:
            yield "R"
        except BaseException as exc:
            world.log.append(f"dependency saw {type(exc).__name__}")
            raise
        finally:
            world.log.append("close")

    @api.stream
    async def ticks(n: int, ms: int = 0, r: str = Depends(resource)) -> AsyncIterator[int]:
        world.log.append("generator started")
        try:
            for i in range(1, n + 1):
                if ms:
                    await anyio.sleep(ms / 1000)
                world.log.append(f"yield {i} while {r} is open")
                yield i
        except BaseException as exc:
            world.log.append(f"generator saw {type(exc).__name__}")
            raise

    @api.stream
    def counting(n: int, r: str = Depends(resource)) -> Iterator[str]:
        world.log.append("sync generator started")
        for i in range(n):
            time.sleep(0.001)
            yield f"{r}{i}"

    @api.stream
    async def models(n: int) -> AsyncIterator[Tick]:
        for i in range(n):
            yield Tick(n=i)

    @api.stream
    async def failing(r: str = Depends(resource)) -> AsyncIterator[int]:
        yield 1
        raise NotFound("gone", details={"after": 1})

    @api.stream
    async def crashing() -> AsyncIterator[int]:
        yield 1
        raise KeyError("secret")

    @api.stream(auth="staff")
    async def staff_only(r: str = Depends(resource)) -> AsyncIterator[str]:
        world.log.append("staff generator started")
        yield "secret"

    @api.stream
    async def greeting(x_name: str = Header()) -> AsyncIterator[str]:
        yield f"hello {x_name}"

    @api.stream
    async def later(tasks: BackgroundTasks) -> AsyncIterator[int]:
        tasks.add_task(world.log.append, "background ran")
        yield 1

    @api.query
    async def plain() -> int:
        return 1

    class Feed(Service, name="feed"):
        source: str = Depends(resource)

        @stream
        async def items(self, n: int) -> AsyncIterator[str]:
            for i in range(n):
                yield f"{self.source}{i}"

        @stream(name="countdown")
        def count_down(self, start: int) -> Iterator[int]:
            yield from range(start, 0, -1)

    api.include(Feed)
    return api


async def collect(
    api: Tether, name: str, params: dict[str, Any] | None = None, **kw: Any
) -> list[Any]:
    return [item async for item in api.stream_call(name, params, **kw)]


def generator(items: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    """`stream_call` is an async generator, though typed as an AsyncIterator."""
    assert isinstance(items, AsyncGenerator)
    return items


class TestStreamCall:
    async def test_async_generator_with_dependency_open_while_running(self) -> None:
        world = World()
        assert await collect(create_api(world), "ticks", {"n": 2}) == [1, 2]
        assert world.log == [
            "open",
            "generator started",
            "yield 1 while R is open",
            "yield 2 while R is open",
            "close",
        ]

    async def test_sync_generator_runs_in_threads(self) -> None:
        world = World()
        assert await collect(create_api(world), "counting", {"n": 3}) == ["R0", "R1", "R2"]
        assert world.log == ["open", "sync generator started", "close"]

    async def test_items_are_the_yielded_objects(self) -> None:
        items = await collect(create_api(World()), "models", {"n": 2})
        assert items == [Tick(n=0), Tick(n=1)]

    async def test_headers_reach_header_dependencies(self) -> None:
        api = create_api(World())
        assert await collect(api, "greeting", headers={"X-Name": "Ada"}) == ["hello Ada"]
        with pytest.raises(ValidationFailed):
            await collect(api, "greeting")

    async def test_background_tasks_run_when_the_stream_ends(self) -> None:
        world = World()
        assert await collect(create_api(world), "later") == [1]
        assert world.log == ["background ran"]

    async def test_query_string_like_params_are_validated(self) -> None:
        assert await collect(create_api(World()), "ticks", {"n": "2"}) == [1, 2]


class TestErrorsBeforeTheFirstItem:
    async def test_unknown_operation(self) -> None:
        with pytest.raises(NotFound):
            await collect(create_api(World()), "nope")

    async def test_validation(self) -> None:
        world = World()
        api = create_api(world)
        iterator = api.stream_call("ticks", {"n": "x"})
        with pytest.raises(ValidationFailed) as caught:
            await anext(iterator)
        assert caught.value.to_dict()["details"][0]["loc"] == ["n"]
        # The generator never started, and no dependency stays open.
        assert "generator started" not in world.log
        assert world.log.count("open") == world.log.count("close")

    async def test_unauthenticated_and_forbidden(self) -> None:
        world = World()
        api = create_api(world)
        with pytest.raises(Unauthorized):
            await collect(api, "staff_only")
        with pytest.raises(Forbidden):
            await collect(api, "staff_only", headers={"X-User": "bob"})
        assert "staff generator started" not in world.log
        assert world.log.count("open") == world.log.count("close")
        assert await collect(api, "staff_only", headers={"X-User": "admin"}) == ["secret"]

    async def test_a_query_is_not_a_stream(self) -> None:
        api = create_api(World())
        with pytest.raises(BadRequest, match="not a stream"):
            await collect(api, "plain")
        ctx = CallContext("inprocess", in_process_scope(None, "/"))
        with pytest.raises(BadRequest, match="not a stream"):
            async with api.invoker.stream(ctx, api.get("plain"), {}):
                pass  # pragma: no cover - never entered

    async def test_a_stream_cannot_be_called(self) -> None:
        with pytest.raises(BadRequest, match="is a stream") as caught:
            await create_api(World()).call("ticks", {"n": 1})
        assert caught.value.details == {"operation": "ticks", "kind": "stream"}


class TestErrorsWhileStreaming:
    async def test_error_after_items_closes_dependencies(self) -> None:
        world = World()
        received: list[int] = []

        async def consume() -> None:
            async for item in create_api(world).stream_call("failing"):
                received.append(item)

        with pytest.raises(NotFound) as caught:
            await consume()
        assert received == [1]
        assert caught.value.details == {"after": 1}
        assert world.log == ["open", "dependency saw NotFound", "close"]

    async def test_unexpected_exception_is_internal_error(self) -> None:
        from tether import InternalError

        with pytest.raises(InternalError):
            await collect(create_api(World()), "crashing")


class TestCancellation:
    async def test_cancelled_consumer_cancels_generator_and_closes_dependencies(self) -> None:
        world = World()
        api = create_api(world)
        received: list[int] = []
        with anyio.move_on_after(0.1):
            async with aclosing(
                generator(api.stream_call("ticks", {"n": 1000, "ms": 20}))
            ) as items:
                async for item in items:
                    received.append(item)
        assert 1 <= len(received) < 1000
        cancelled = anyio.get_cancelled_exc_class().__name__
        assert world.log[-3:] == [
            f"generator saw {cancelled}",
            f"dependency saw {cancelled}",
            "close",
        ]

    async def test_cancelled_consumer_closes_a_sync_generator_at_once(self) -> None:
        """Fails today: OperationStream.__aexit__ awaits `to_thread.run_sync(generator.close)`
        in the cancelled scope, so the close is cancelled before it runs, and the sync
        generator is only closed when it is garbage-collected."""
        closed: list[str] = []
        api = Tether()

        @api.stream
        def counting() -> Iterator[int]:
            try:
                i = 0
                while True:
                    i += 1
                    time.sleep(0.005)
                    yield i
            finally:
                closed.append("closed")

        items = generator(api.stream_call("counting"))
        with anyio.move_on_after(0.05):
            async with aclosing(items):
                async for _ in items:
                    pass
        assert closed == ["closed"]
        del items

    async def test_break_inside_aclosing_closes_at_once(self) -> None:
        world = World()
        api = create_api(world)
        async with aclosing(generator(api.stream_call("ticks", {"n": 1000}))) as items:
            async for item in items:
                if item == 2:
                    break
        assert world.log[-1] == "close"
        assert "yield 3 while R is open" not in world.log


class TestServices:
    async def test_service_stream_with_class_dependency(self) -> None:
        world = World()
        api = create_api(world)
        assert await collect(api, "feed.items", {"n": 2}) == ["R0", "R1"]
        assert world.log == ["open", "close"]
        assert await collect(api, "feed.countdown", {"start": 3}) == [3, 2, 1]
        assert api.get("feed.items").kind == "stream"

    async def test_service_stream_over_sse(self) -> None:
        app = FastAPI()
        create_api(World()).mount(app)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://test"
        ) as client:
            response = await client.get("/api/stream/feed.items", params={"n": 2})
        assert response.text == (
            'id: 1\nevent: data\ndata: "R0"\n\nid: 2\nevent: data\ndata: "R1"\n\n'
            "event: end\ndata: null\n\n"
        )


class TestRegistration:
    def test_stream_must_be_a_generator(self) -> None:
        api = Tether()
        with pytest.raises(ConfigurationError, match="generator"):

            @api.stream
            async def not_a_generator() -> int:  # pragma: no cover - never called
                return 1

    def test_generator_must_be_a_stream(self) -> None:
        api = Tether()
        with pytest.raises(ConfigurationError, match="generators are stream operations"):

            @api.query
            async def generator() -> AsyncIterator[int]:  # pragma: no cover - never called
                yield 1

    def test_item_type_is_the_output_type(self) -> None:
        api = create_api(World())
        assert api.get("ticks").output_type is int
        assert api.get("models").output_type is Tick
        assert api.get("models").encoder.to_json(Tick(n=3)) == b'{"n":3}'
        assert api.get("counting").is_async is False


class TestDocsExamples:
    async def test_streams_1(self) -> None:
        module = load("streams_1")
        api: Tether = module.api
        assert await collect(api, "ticks", {"n": 3}) == [1, 2, 3]
        assert await collect(api, "lines", {"text": "a\nb"}) == ["a", "b"]
        assert await collect(api, "export", {"total": 2}) == [
            module.Progress(done=1, total=2),
            module.Progress(done=2, total=2),
        ]
        assert module.LOG == ["cursor opened", "cursor closed"]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(module.app), base_url="http://test"
        ) as client:
            response = await client.get("/api/stream/export", params={"total": 1})
        assert response.text == (
            'id: 1\nevent: data\ndata: {"done":1,"total":1}\n\nevent: end\ndata: null\n\n'
        )

    async def test_streams_2(self) -> None:
        module = load("streams_2")
        assert await module.all_ticks() == [1, 2, 3]
        assert await module.first_ticks(2) == [1, 2]
        received = await module.ticks_for(0.1)
        assert 1 <= len(received) < 50
        assert received == list(range(1, len(received) + 1))
