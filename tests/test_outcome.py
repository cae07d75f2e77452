"""The outcome of a call: what it carries, and the after-call work done once from it."""

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, Header, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from starlette.background import BackgroundTasks as StarletteBackgroundTasks
from starlette.types import Message, Receive, Scope, Send

from tests._core_helpers import asgi_client, mounted
from tether import NotFound, Tether, Unauthorized
from tether.context import CallContext, in_process_scope
from tether.outcome import Outcome, header_object, response_headers

pytestmark = pytest.mark.anyio


# -- the value ----------------------------------------------------------------------------------


def test_response_headers_drop_the_body_headers_and_keep_repeats() -> None:
    response = Response()
    response.headers["x-one"] = "1"
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    headers = response_headers(response)
    names = [name for name, _ in headers]
    assert b"content-length" not in names
    assert b"content-type" not in names
    assert names.count(b"set-cookie") == 2
    assert response_headers(None) == []


def test_a_failed_outcome_carries_only_the_errors_own_headers() -> None:
    error = Unauthorized(
        "who?", headers={"WWW-Authenticate": "Bearer", "Content-Type": "text/plain"}
    )
    outcome = Outcome.failed("op", error)
    assert outcome.error is error
    assert not outcome.ok
    assert outcome.headers == [(b"www-authenticate", b"Bearer")]
    assert outcome.background is None
    assert not outcome.pending
    assert (outcome.events, outcome.effects, outcome.push) == ((), None, None)


def test_header_object_lists_a_repeated_header() -> None:
    headers = [(b"x-one", b"1"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    assert header_object(headers) == {"x-one": "1", "set-cookie": ["a=1", "b=2"]}
    assert header_object([(b"set-cookie", b"a"), (b"set-cookie", b"b"), (b"set-cookie", b"c")]) == {
        "set-cookie": ["a", "b", "c"]
    }


# -- finish(): background tasks, then teardown --------------------------------------------------


def _operation(log: list[str], *, task_fails: bool = False, teardown_fails: bool = False) -> Tether:
    api = Tether()

    async def resource() -> AsyncIterator[str]:
        try:
            yield "r"
        except Exception as exc:
            log.append(f"teardown saw {type(exc).__name__}")
            raise
        log.append("teardown")
        if teardown_fails:
            raise RuntimeError("teardown failed")

    def task() -> None:
        log.append("task")
        if task_fails:
            raise ValueError("task failed")

    @api.command
    async def work(tasks: BackgroundTasks, r: Annotated[str, Depends(resource)]) -> str:
        tasks.add_task(task)
        return r

    @api.command
    async def fail(
        tasks: BackgroundTasks, response: Response, r: Annotated[str, Depends(resource)]
    ) -> str:
        response.set_cookie("leak", "1")
        tasks.add_task(task)
        raise NotFound("no row")

    mounted(api)
    return api


def _context(api: Tether) -> CallContext:
    return CallContext("inprocess", in_process_scope(api.app, "/api/call/x"))


async def test_success_leaves_teardown_and_background_to_finish_in_that_order() -> None:
    log: list[str] = []
    api = _operation(log)
    outcome = await api.invoker.run(_context(api), api.get("work"), {}, encode=True)
    assert outcome.ok
    assert outcome.result == b'"r"'
    assert log == []  # nothing after the call has happened: the answer is not sent yet
    assert outcome.pending
    await outcome.finish()
    assert log == ["task", "teardown"]
    assert (outcome.background, outcome.pending) == (None, False)
    await outcome.finish()  # once only
    assert log == ["task", "teardown"]


async def test_failure_closes_first_with_the_exception_and_releases_nothing() -> None:
    log: list[str] = []
    api = _operation(log)
    outcome = await api.invoker.run(_context(api), api.get("fail"), {}, encode=True)
    assert isinstance(outcome.error, NotFound)
    assert log == ["teardown saw NotFound"]
    assert outcome.headers == []  # no Set-Cookie from the Response dependency
    assert not outcome.pending
    await outcome.finish()
    assert log == ["teardown saw NotFound"]  # and no background task


async def test_a_failing_background_task_is_logged_once_and_seen_by_teardown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    api = _operation(log, task_fails=True)
    outcome = await api.invoker.run(_context(api), api.get("work"), {}, encode=True)
    with caplog.at_level(logging.ERROR, logger="tether"):
        await outcome.finish()
    assert log == ["task", "teardown saw ValueError"]
    assert [r.getMessage() for r in caplog.records] == [
        "a background task of operation 'work' failed"
    ]


async def test_a_teardown_error_after_success_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    api = _operation(log, teardown_fails=True)
    outcome = await api.invoker.run(_context(api), api.get("work"), {}, encode=True)
    with caplog.at_level(logging.ERROR, logger="tether"):
        await outcome.finish()
    assert log == ["task", "teardown"]
    assert [r.getMessage() for r in caplog.records] == [
        "a yield dependency of operation 'work' failed while closing; the answer stands"
    ]


async def test_close_dependencies_leaves_the_background_tasks_to_finish() -> None:
    log: list[str] = []
    api = _operation(log)
    outcome = await api.invoker.run(_context(api), api.get("work"), {}, encode=True)
    await outcome.close_dependencies()
    assert log == ["teardown"]
    await outcome.finish()
    assert log == ["teardown", "task"]


async def test_finish_runs_no_background_task_of_a_failed_outcome() -> None:
    log: list[str] = []
    tasks = StarletteBackgroundTasks()
    tasks.add_task(log.append, "task")
    outcome = Outcome("op", error=NotFound(), background=tasks)
    await outcome.finish()
    assert log == []


async def test_in_process_call_finishes_before_returning() -> None:
    log: list[str] = []
    api = _operation(log)
    assert await api.call("work") == "r"
    assert log == ["task", "teardown"]
    with pytest.raises(NotFound):
        await api.call("fail")
    assert log[2:] == ["teardown saw NotFound"]


# -- FastAPI's own exceptions reach yield dependencies -------------------------------------------


async def test_yield_dependencies_see_request_validation_error() -> None:
    seen: list[str] = []

    async def session() -> AsyncIterator[None]:
        try:
            yield
        except RequestValidationError:
            seen.append("RequestValidationError")
            raise

    def limit(x_limit: Annotated[int, Header()]) -> int:
        return x_limit

    api = Tether()

    @api.query
    async def page(s: Annotated[None, Depends(session)], n: Annotated[int, Depends(limit)]) -> int:
        return n

    app = mounted(api)
    async with asgi_client(app) as client:
        response = await client.post("/api/call/page", json={}, headers={"x-limit": "many"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_FAILED"
    assert seen == ["RequestValidationError"]


# -- HTTP: send, then background tasks, then teardown --------------------------------------------


def _recording(app: Any, order: list[str]) -> Any:
    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                order.append("sent")
            await send(message)

        await app(scope, receive, recording_send)

    return recording


async def test_http_sends_then_runs_background_then_closes() -> None:
    log: list[str] = []
    api = _operation(log, teardown_fails=True)
    async with asgi_client(_recording(api.app, log)) as client:
        response = await client.post("/api/call/work", json={})
    # A teardown error after the answer cannot turn the 200 into an error.
    assert response.status_code == 200
    assert log == ["sent", "task", "teardown"]


async def test_jsonrpc_failure_sends_no_cookie_and_runs_no_task() -> None:
    log: list[str] = []
    api = _operation(log)
    async with asgi_client(api.app) as client:
        response = await client.post(
            "/api/jsonrpc", json={"jsonrpc": "2.0", "id": 1, "method": "fail"}
        )
    assert response.json()["error"]["data"]["code"] == "NOT_FOUND"
    assert "set-cookie" not in response.headers
    assert log == ["teardown saw NotFound"]


async def test_jsonrpc_carries_an_errors_own_headers() -> None:
    def guard() -> None:
        raise HTTPException(401, "who?", headers={"WWW-Authenticate": "Bearer"})

    api = Tether()

    @api.query
    async def secret(gate: Annotated[None, Depends(guard)]) -> int:
        return 1

    async with asgi_client(mounted(api)) as client:
        response = await client.post(
            "/api/jsonrpc", json={"jsonrpc": "2.0", "id": 1, "method": "secret"}
        )
    assert response.json()["error"]["data"]["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == "Bearer"


# -- streams: end, then background tasks, then teardown -----------------------------------------


def _stream_api(log: list[str]) -> Tether:
    api = Tether()

    async def resource() -> AsyncIterator[None]:
        try:
            yield
        except Exception as exc:
            log.append(f"teardown saw {type(exc).__name__}")
            raise
        log.append("teardown")

    @api.stream
    async def numbers(
        fail: bool, tasks: BackgroundTasks, r: Annotated[None, Depends(resource)]
    ) -> AsyncIterator[int]:
        tasks.add_task(log.append, "task")
        yield 1
        if fail:
            raise NotFound("gone")

    mounted(api)
    return api


async def test_a_stream_that_ends_runs_its_tasks_then_closes() -> None:
    log: list[str] = []
    api = _stream_api(log)
    async for item in api.stream_call("numbers", {"fail": False}):
        log.append(f"item {item}")
    assert log == ["item 1", "task", "teardown"]


async def test_a_stream_that_fails_runs_no_task() -> None:
    log: list[str] = []
    api = _stream_api(log)

    async def read() -> None:
        async for item in api.stream_call("numbers", {"fail": True}):
            log.append(f"item {item}")

    with pytest.raises(NotFound):
        await read()
    assert log == ["item 1", "teardown saw NotFound"]


async def test_sse_sends_its_end_before_the_tasks_and_the_teardown() -> None:
    log: list[str] = []
    api = _stream_api(log)

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.body" and b"event: end" in message["body"]:
                log.append("end sent")
            await send(message)

        await api.app(scope, receive, recording_send)  # type: ignore[misc]

    async with asgi_client(recording) as client:
        response = await client.get("/api/stream/numbers", params={"fail": "false"})
    assert response.status_code == 200
    assert log == ["end sent", "task", "teardown"]
