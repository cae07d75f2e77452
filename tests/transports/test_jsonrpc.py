"""The JSON-RPC 2.0 transport, in memory: envelope checks, codes, batches, dependencies, HTTP.

Real-server scenarios (bad input, dependency scopes, third-party clients) live in
tests/e2e/test_jsonrpc_*.py; the specification's examples in test_jsonrpc_spec.py.
"""

# No `from __future__ import annotations`: operations here annotate with local dependencies.
import gc
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Annotated, Any

import anyio
import httpx
import pytest
from examples.conformance.app import create_app
from fastapi import BackgroundTasks, Depends, FastAPI, Header, HTTPException, Response
from starlette.types import Message

from tether import (
    CallContext,
    ConfigurationError,
    NotFound,
    PerBatch,
    Tether,
    TetherError,
    Unauthorized,
)
from tether.context import in_process_scope
from tether.errors import BUILTIN_ERRORS
from tether.transport import TransportHandle
from tether.transports import HttpTransport, JsonRpcTransport, default_transports
from tether.transports.jsonrpc import JsonRpcDispatcher

ALICE = {"Authorization": "Bearer alice"}


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test")


async def post(
    client: httpx.AsyncClient,
    payload: object,
    *,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await client.post(
        "/api/jsonrpc",
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
    )


def answer(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def request(method: str, params: object = None, id: object = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: object = None) -> dict[str, Any]:
    message = request(method, params)
    del message["id"]
    return message


def invalid(id: object = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": "Invalid Request"}}


@pytest.fixture
async def conformance() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app()) as client:
        yield client


def mounted(api: Tether, *transports: Any) -> FastAPI:
    app = FastAPI()
    api.mount(app, transports=[HttpTransport(), *transports] if transports else None)
    return app


# -- registration -----------------------------------------------------------------------------


def test_default_transports_put_http_first_then_jsonrpc() -> None:
    transports = default_transports()
    assert [type(t) for t in transports][:2] == [HttpTransport, JsonRpcTransport]


@pytest.mark.parametrize(
    "options",
    [{"max_batch_size": 0}, {"max_concurrency": 0}, {"batch_dependencies": []}],
)
def test_bad_configuration_is_refused_when_mounting(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        mounted(Tether(), JsonRpcTransport(**options))


def test_rpc_names_are_reserved() -> None:
    api = Tether()

    async def discover() -> None: ...

    with pytest.raises(ConfigurationError, match="reserved"):
        api.query(name="rpc.discover")(discover)


# -- the envelope -----------------------------------------------------------------------------


class TestEnvelope:
    @pytest.mark.parametrize(
        "bad_id",
        [{"a": 1}, [1], True, False, 1.5, 1.0, -0.5],
        ids=["object", "array", "true", "false", "fraction", "float", "negative-fraction"],
    )
    async def test_an_invalid_id_is_rejected_with_id_null(
        self, conformance: httpx.AsyncClient, bad_id: object
    ) -> None:
        assert answer(await post(conformance, request("add", [1, 2], bad_id))) == invalid()

    @pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**40])
    async def test_an_integer_id_beyond_64_bits_is_echoed_digit_for_digit(
        self, conformance: httpx.AsyncClient, big: int
    ) -> None:
        single = await post(conformance, request("add", [1, 2], big))
        batch = await post(conformance, [request("add", [1, 2], big), request("add", [2, 2], 2)])
        assert single.content == b'{"jsonrpc":"2.0","id":%d,"result":3}' % big
        assert json.loads(batch.content) == [
            {"jsonrpc": "2.0", "id": big, "result": 3},
            {"jsonrpc": "2.0", "id": 2, "result": 4},
        ]

    @pytest.mark.parametrize("good_id", ["abc", "", 0, -7, 2**63 - 1, None])
    async def test_string_integer_and_null_ids_are_echoed(
        self, conformance: httpx.AsyncClient, good_id: object
    ) -> None:
        body = answer(await post(conformance, request("add", [1, 2], good_id)))
        assert body == {"jsonrpc": "2.0", "id": good_id, "result": 3}

    @pytest.mark.parametrize("version", ["1.0", 2.0, 2, None, "2.0 "])
    async def test_jsonrpc_must_be_the_string_2_0(
        self, conformance: httpx.AsyncClient, version: object
    ) -> None:
        message = request("add", [1, 2], 7)
        message["jsonrpc"] = version
        assert answer(await post(conformance, message)) == invalid(7)

    async def test_jsonrpc_member_is_required(self, conformance: httpx.AsyncClient) -> None:
        message = request("add", [1, 2], "x")
        del message["jsonrpc"]
        assert answer(await post(conformance, message)) == invalid("x")

    @pytest.mark.parametrize("method", [1, None, ["add"], {"name": "add"}, True])
    async def test_method_must_be_a_string(
        self, conformance: httpx.AsyncClient, method: object
    ) -> None:
        message = {"jsonrpc": "2.0", "method": method, "params": [1, 2], "id": 3}
        assert answer(await post(conformance, message)) == invalid(3)

    async def test_method_is_required(self, conformance: httpx.AsyncClient) -> None:
        assert answer(await post(conformance, {"jsonrpc": "2.0", "id": 3})) == invalid(3)

    @pytest.mark.parametrize("params", ["bar", 1, None, True, 2.5])
    async def test_params_must_be_an_array_or_an_object(
        self, conformance: httpx.AsyncClient, params: object
    ) -> None:
        message = {"jsonrpc": "2.0", "method": "add", "params": params, "id": 4}
        assert answer(await post(conformance, message)) == invalid(4)

    async def test_an_invalid_request_without_id_is_still_answered(
        self, conformance: httpx.AsyncClient
    ) -> None:
        message = {"jsonrpc": "2.0", "method": "add", "params": "bar"}
        assert answer(await post(conformance, message)) == invalid()

    @pytest.mark.parametrize("document", [1, "add", None, True, 2.5])
    async def test_a_message_that_is_neither_object_nor_array_is_invalid(
        self, conformance: httpx.AsyncClient, document: object
    ) -> None:
        assert answer(await post(conformance, document)) == invalid()

    async def test_responses_carry_only_jsonrpc_id_and_result_or_error(
        self, conformance: httpx.AsyncClient
    ) -> None:
        message = {**request("add", [1, 2], 1), "extra": "ignored"}
        ok = answer(await post(conformance, message))
        assert list(ok) == ["jsonrpc", "id", "result"]
        failed = answer(await post(conformance, request("add", {"a": "x"}, 2)))
        assert list(failed) == ["jsonrpc", "id", "error"]
        assert set(failed["error"]) == {"code", "message", "data"}

    async def test_a_request_with_null_id_is_answered_not_a_notification(
        self, conformance: httpx.AsyncClient
    ) -> None:
        body = answer(await post(conformance, request("subtract", [5, 3], None)))
        assert body == {"jsonrpc": "2.0", "id": None, "result": 2}


# -- methods and params -----------------------------------------------------------------------


class TestParams:
    async def test_positional_params_bind_in_signature_order(
        self, conformance: httpx.AsyncClient
    ) -> None:
        assert answer(await post(conformance, request("subtract", [10, 4])))["result"] == 6
        assert answer(await post(conformance, request("sum", [1, 2])))["result"] == 3
        assert answer(await post(conformance, request("sum", [1, 2, 3])))["result"] == 6

    async def test_named_params_and_absent_params(self, conformance: httpx.AsyncClient) -> None:
        named = request("echo", {"text": "hi"})
        assert answer(await post(conformance, named))["result"] == {"text": "hi"}
        assert answer(await post(conformance, request("get_data")))["result"] == ["hello", 5]
        empty = request("get_data", [])
        assert answer(await post(conformance, empty))["result"] == ["hello", 5]

    async def test_wrong_missing_and_extra_named_params_name_each_field(
        self, conformance: httpx.AsyncClient
    ) -> None:
        body = answer(await post(conformance, request("add", {"a": "x", "z": 1}, 9)))
        assert body["id"] == 9
        error = body["error"]
        assert error["code"] == -32602
        assert error["data"]["code"] == "VALIDATION_FAILED"
        fields = {tuple(d["loc"]): d["type"] for d in error["data"]["details"]}
        assert fields == {("a",): "int_parsing", ("b",): "missing", ("z",): "extra_forbidden"}

    async def test_too_many_positional_params_name_each_extra_index(
        self, conformance: httpx.AsyncClient
    ) -> None:
        error = answer(await post(conformance, request("add", [1, 2, 3, 4])))["error"]
        assert error["code"] == -32602
        assert [d["loc"] for d in error["data"]["details"]] == [[2], [3]]

    async def test_missing_positional_params_name_the_parameter(
        self, conformance: httpx.AsyncClient
    ) -> None:
        error = answer(await post(conformance, request("subtract", [1])))["error"]
        assert error["code"] == -32602
        assert [d["loc"] for d in error["data"]["details"]] == [["subtrahend"]]

    async def test_an_unknown_method_is_32601_and_rpc_names_are_not_methods(
        self, conformance: httpx.AsyncClient
    ) -> None:
        for method in ("nope", "rpc.other", "call/add"):
            body = answer(await post(conformance, request(method, [], "q")))
            assert body == {
                "jsonrpc": "2.0",
                "id": "q",
                "error": {"code": -32601, "message": "Method not found"},
            }


# -- errors -----------------------------------------------------------------------------------


class TestErrors:
    async def test_an_error_of_an_operation_without_dependencies_keeps_its_headers(
        self,
    ) -> None:
        api = Tether()

        @api.query
        async def guarded(token: str) -> str:
            if token != "t":
                raise Unauthorized("Send a token", headers={"WWW-Authenticate": "Bearer"})
            return "in"

        async with client_for(mounted(api)) as client:
            for payload in (
                request("guarded", {"token": "x"}),
                [request("guarded", {"token": "x"}, 1), request("guarded", {"token": "t"}, 2)],
            ):
                response = await post(client, payload)
                assert response.headers["www-authenticate"] == "Bearer"
                body = response.json()
                first = body if isinstance(body, dict) else body[0]
                assert first["error"]["data"]["code"] == "UNAUTHORIZED"
            both = answer(await post(client, [request("guarded", {"token": "t"}, 3)] * 2))
            assert [item["result"] for item in both] == ["in", "in"]
            ok = await post(client, request("guarded", {"token": "t"}))
            assert answer(ok)["result"] == "in"
            assert "www-authenticate" not in ok.headers

    @pytest.mark.parametrize("error", BUILTIN_ERRORS, ids=lambda e: e.code)
    async def test_each_builtin_error_maps_to_its_code_with_data(
        self, conformance: httpx.AsyncClient, error: type[TetherError]
    ) -> None:
        body = answer(await post(conformance, request("fail", {"code": error.code}, "e")))
        assert body["id"] == "e"
        assert body["error"] == {
            "code": error.jsonrpc_code,
            "message": f"fail('{error.code}')",
            "data": {"code": error.code, "details": None},
        }

    async def test_not_found_from_an_operation_is_not_method_not_found(
        self, conformance: httpx.AsyncClient
    ) -> None:
        error = answer(await post(conformance, request("fail", ["NOT_FOUND"])))["error"]
        assert error["code"] == NotFound.jsonrpc_code == -32004

    async def test_user_errors_keep_their_code_and_details(self) -> None:
        class Teapot(TetherError):
            code = "TEAPOT"
            status = 418
            jsonrpc_code = 418
            message = "I am a teapot"

        api = Tether()

        @api.query
        async def brew(kind: str) -> str:
            raise Teapot(details={"kind": kind})

        async with client_for(mounted(api)) as client:
            body = answer(await post(client, request("brew", ["earl grey"])))
        assert body["error"] == {
            "code": 418,
            "message": "I am a teapot",
            "data": {"code": "TEAPOT", "details": {"kind": "earl grey"}},
        }

    async def test_an_unexpected_exception_is_32603_without_its_text(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        api = Tether()

        @api.query
        def explode() -> int:
            raise ValueError("secret database password")

        with caplog.at_level(logging.ERROR, logger="tether"):
            async with client_for(mounted(api)) as client:
                response = await post(client, request("explode"))
        assert "secret" not in response.text
        assert answer(response)["error"] == {
            "code": -32603,
            "message": "Internal server error",
            "data": {"code": "INTERNAL_ERROR", "details": None},
        }
        assert [r.message for r in caplog.records].count(
            "operation 'explode' failed with an unexpected exception"
        ) == 1

    async def test_http_exceptions_of_dependencies_map_like_over_http(self) -> None:
        def guard(x_key: Annotated[str | None, Header()] = None) -> None:
            if x_key != "k":
                raise HTTPException(403, "bad key")

        api = Tether(dependencies=[Depends(guard)])

        @api.query
        async def ping() -> str:
            return "pong"

        async with client_for(mounted(api)) as client:
            denied = answer(await post(client, request("ping")))
            allowed = answer(await post(client, request("ping"), headers={"x-key": "k"}))
        assert denied["error"]["code"] == -32003
        assert denied["error"]["data"]["code"] == "FORBIDDEN"
        assert allowed["result"] == "pong"

    async def test_auth_errors(self, conformance: httpx.AsyncClient) -> None:
        anonymous = answer(await post(conformance, request("whoami")))["error"]
        assert (anonymous["code"], anonymous["data"]["code"]) == (-32001, "UNAUTHORIZED")
        bob = answer(
            await post(conformance, request("admin_stats"), headers={"authorization": "Bearer bob"})
        )["error"]
        assert (bob["code"], bob["data"]["code"]) == (-32003, "FORBIDDEN")
        alice = answer(await post(conformance, request("whoami"), headers=ALICE))
        assert alice["result"] == {"name": "alice", "is_staff": True}


# -- notifications ----------------------------------------------------------------------------


class TestNotifications:
    async def test_a_notification_runs_fully_and_answers_nothing(self) -> None:
        log: list[str] = []

        async def resource() -> AsyncIterator[str]:
            log.append("open")
            yield "r"
            log.append("close")

        api = Tether()

        @api.command
        async def record(n: int, tasks: BackgroundTasks, r: str = Depends(resource)) -> None:
            log.append(f"run {n} with {r}")
            tasks.add_task(log.append, "background")

        async with client_for(mounted(api)) as client:
            response = await post(client, notification("record", [1]))
        assert response.status_code == 204
        assert response.content == b""
        assert "content-type" not in response.headers
        # FastAPI's order: the background task, then the teardown (issue 10).
        assert log == ["open", "run 1 with r", "background", "close"]

    async def test_a_failing_notification_answers_nothing(self) -> None:
        calls: list[int] = []
        api = Tether()

        @api.command
        async def broken(n: int) -> None:
            calls.append(n)
            raise RuntimeError("boom")

        async with client_for(mounted(api)) as client:
            failing = await post(client, notification("broken", [1]))
            invalid_params = await post(client, notification("broken", {"n": "x"}))
            unknown = await post(client, notification("missing"))
        assert [r.status_code for r in (failing, invalid_params, unknown)] == [204, 204, 204]
        assert calls == [1]

    async def test_background_tasks_of_batch_items_run_after_the_response(self) -> None:
        log: list[str] = []
        api = Tether()

        @api.command
        async def later(n: int, tasks: BackgroundTasks) -> int:
            tasks.add_task(log.append, f"task {n}")
            return n

        async with client_for(mounted(api)) as client:
            body = answer(
                await post(client, [request("later", [1], 1), notification("later", [2])])
            )
        assert body == [{"jsonrpc": "2.0", "id": 1, "result": 1}]
        assert sorted(log) == ["task 1", "task 2"]

    async def test_a_failing_background_task_is_logged_and_others_still_run(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        log: list[str] = []
        api = Tether()

        def crash() -> None:
            raise RuntimeError("task failed")

        @api.command
        async def schedule(fail: bool, tasks: BackgroundTasks) -> None:
            tasks.add_task(crash if fail else log.append, *(() if fail else ("done",)))

        with caplog.at_level(logging.ERROR, logger="tether"):
            async with client_for(mounted(api, JsonRpcTransport(max_concurrency=1))) as client:
                body = answer(
                    await post(
                        client, [request("schedule", [True], 1), request("schedule", [False], 2)]
                    )
                )
        assert [item["result"] for item in body] == [None, None]
        assert log == ["done"]
        assert "a background task of operation 'schedule' failed" in caplog.text


# -- batches ----------------------------------------------------------------------------------


def concurrency_api() -> tuple[Tether, dict[str, int]]:
    state = {"running": 0, "peak": 0, "started": 0}
    api = Tether()

    @api.query
    async def work(ms: int, tag: int) -> int:
        state["started"] += 1
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        try:
            await anyio.sleep(ms / 1000)
        finally:
            state["running"] -= 1
        return tag

    return api, state


class TestBatches:
    async def test_items_run_concurrently_up_to_the_default_bound_of_16(self) -> None:
        api, state = concurrency_api()
        batch = [request("work", {"ms": 20, "tag": i}, i) for i in range(40)]
        async with client_for(mounted(api)) as client:
            body = answer(await post(client, batch))
        assert [item["result"] for item in body] == list(range(40))
        assert state["peak"] == 16

    async def test_the_concurrency_bound_is_configurable(self) -> None:
        api, state = concurrency_api()
        batch = [request("work", {"ms": 10, "tag": i}, i) for i in range(9)]
        async with client_for(mounted(api, JsonRpcTransport(max_concurrency=3))) as client:
            body = answer(await post(client, batch))
        assert [item["id"] for item in body] == list(range(9))
        assert state["peak"] == 3

    async def test_responses_come_back_in_request_order(self) -> None:
        api, _ = concurrency_api()
        # The first item finishes last.
        batch = [request("work", {"ms": ms, "tag": ms}, f"id{ms}") for ms in (60, 30, 0)]
        async with client_for(mounted(api)) as client:
            body = answer(await post(client, batch))
        assert [(item["id"], item["result"]) for item in body] == [
            ("id60", 60),
            ("id30", 30),
            ("id0", 0),
        ]

    async def test_one_failing_item_never_affects_another(
        self, conformance: httpx.AsyncClient
    ) -> None:
        batch = [
            request("add", [1, 2], 1),
            request("fail", ["CONFLICT"], 2),
            request("add", ["x"], 3),
            request("slow", {"ms": 5}, 4),
            request("fail", ["INTERNAL_ERROR"], 5),
            request("echo", ["ok"], 6),
        ]
        body = answer(await post(conformance, batch))
        assert [item["id"] for item in body] == [1, 2, 3, 4, 5, 6]
        assert body[0]["result"] == 3
        assert body[1]["error"]["code"] == -32009
        assert body[2]["error"]["code"] == -32602
        assert body[3]["result"] == 5
        assert body[4]["error"]["code"] == -32603
        assert body[5]["result"] == {"text": "ok"}

    async def test_a_batch_of_one_is_answered_with_an_array(
        self, conformance: httpx.AsyncClient
    ) -> None:
        body = answer(await post(conformance, [request("add", [2, 2], 1)]))
        assert body == [{"jsonrpc": "2.0", "id": 1, "result": 4}]

    async def test_the_batch_limit_is_100_by_default_and_refuses_before_running(self) -> None:
        api, state = concurrency_api()
        async with client_for(mounted(api)) as client:
            full = [request("work", {"ms": 0, "tag": i}, i) for i in range(100)]
            assert len(answer(await post(client, full))) == 100
            assert state["started"] == 100
            over = [*full, request("work", {"ms": 0, "tag": 100}, 100)]
            body = answer(await post(client, over))
        assert state["started"] == 100
        assert body == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32600,
                "message": "Batch of 101 requests exceeds the limit of 100",
                "data": {"code": "BATCH_TOO_LARGE", "details": {"limit": 100, "received": 101}},
            },
        }

    async def test_the_batch_limit_is_configurable(self) -> None:
        api, state = concurrency_api()
        async with client_for(mounted(api, JsonRpcTransport(max_batch_size=2))) as client:
            body = answer(
                await post(client, [request("work", {"ms": 0, "tag": i}, i) for i in range(3)])
            )
        assert body["error"]["message"] == "Batch of 3 requests exceeds the limit of 2"
        assert state["started"] == 0

    async def test_batch_items_are_invalid_one_by_one(self, conformance: httpx.AsyncClient) -> None:
        batch: list[object] = [
            [request("add", [1, 2], 1)],
            request("add", [1, 2], True),
            {"jsonrpc": "2.0", "method": "add", "params": "x", "id": 3},
            request("add", [1, 2], 4),
        ]
        assert answer(await post(conformance, batch)) == [
            invalid(),
            invalid(),
            invalid(3),
            {"jsonrpc": "2.0", "id": 4, "result": 3},
        ]


# -- dependency scopes ------------------------------------------------------------------------


def scoped_api(log: list[str], **options: Any) -> tuple[Tether, Callable[..., Any]]:
    counter = {"batch": 0, "call": 0}

    async def pool() -> AsyncIterator[str]:
        counter["batch"] += 1
        name = f"pool{counter['batch']}"
        log.append(f"open {name}")
        yield name
        log.append(f"close {name}")

    async def connection() -> AsyncIterator[str]:
        counter["call"] += 1
        name = f"conn{counter['call']}"
        log.append(f"open {name}")
        yield name
        log.append(f"close {name}")

    api = Tether(**options)

    @api.query
    async def use(
        n: int,
        p: Annotated[str, PerBatch(pool)],
        c: Annotated[str, Depends(connection)],
    ) -> str:
        await anyio.sleep(0.001 * (n % 3))
        return f"{n}:{p}:{c}"

    return api, pool


class TestDependencyScopes:
    async def test_per_batch_dependencies_solve_once_per_batch_and_close_last(self) -> None:
        log: list[str] = []
        api, _ = scoped_api(log)
        async with client_for(mounted(api)) as client:
            body = answer(await post(client, [request("use", [i], i) for i in range(4)]))
        assert [item["result"].split(":")[1] for item in body] == ["pool1"] * 4
        assert log.count("open pool1") == 1
        assert sum(entry.startswith("open conn") for entry in log) == 4
        assert log[0] == "open pool1"
        assert log[-1] == "close pool1"

    async def test_a_single_call_solves_per_batch_dependencies_per_call(self) -> None:
        log: list[str] = []
        api, _ = scoped_api(log)
        async with client_for(mounted(api)) as client:
            first = answer(await post(client, request("use", [1])))
            second = answer(await post(client, request("use", [2])))
        assert first["result"] == "1:pool1:conn1"
        assert second["result"] == "2:pool2:conn2"
        assert log.count("close pool1") == log.count("close pool2") == 1

    async def test_tether_batch_dependencies_are_shared_by_the_batch(self) -> None:
        log: list[str] = []

        async def transaction() -> AsyncIterator[None]:
            log.append("begin")
            yield
            log.append("commit")

        api = Tether(batch_dependencies=[Depends(transaction)])

        @api.command
        async def write(n: int) -> int:
            log.append(f"write {n}")
            return n

        async with client_for(mounted(api)) as client:
            answer(await post(client, [request("write", [i], i) for i in range(3)]))
            assert log[0] == "begin"
            assert log[-1] == "commit"
            assert log.count("begin") == 1
            log.clear()
            answer(await post(client, request("write", [9])))
        assert log == ["begin", "write 9", "commit"]

    async def test_tether_batch_dependencies_guard_the_whole_request(self) -> None:
        log: list[str] = []

        async def api_key(x_api_key: Annotated[str | None, Header()] = None) -> str:
            log.append("guard")
            if x_api_key != "secret":
                raise Unauthorized("API key required")
            return x_api_key

        api = Tether(batch_dependencies=[Depends(api_key)])

        @api.query
        async def add(a: int, b: int) -> int:
            return a + b

        @api.query
        async def key(k: Annotated[str, Depends(api_key)]) -> str:
            return k

        batch = [
            request("add", [1, 2], 1),
            notification("add", [1, 2]),
            {"jsonrpc": "2.0", "method": 5, "id": 3},
            request("nope", [], 4),
            request("key", [], 5),
        ]
        async with client_for(mounted(api)) as client:
            denied = answer(await post(client, batch))
            denied_single = answer(await post(client, request("add", [1, 2], "s")))
            denied_notification = await post(client, notification("add", [1, 2]))
            log.clear()
            allowed = answer(await post(client, batch, headers={"x-api-key": "secret"}))
            assert log == ["guard"]  # solved once, reused by `key`
            allowed_single = answer(
                await post(client, request("key", [], "s"), headers={"x-api-key": "secret"})
            )
        auth_error = {
            "code": -32001,
            "message": "API key required",
            "data": {"code": "UNAUTHORIZED", "details": None},
        }
        assert denied == [
            {"jsonrpc": "2.0", "id": 1, "error": auth_error},
            invalid(3),
            {"jsonrpc": "2.0", "id": 4, "error": {"code": -32601, "message": "Method not found"}},
            {"jsonrpc": "2.0", "id": 5, "error": auth_error},
        ]
        assert denied_single == {"jsonrpc": "2.0", "id": "s", "error": auth_error}
        assert denied_notification.status_code == 204
        assert [item.get("result") for item in allowed] == [3, None, None, "secret"]
        assert allowed_single["result"] == "secret"

    async def test_a_batch_with_only_unknown_methods_solves_nothing(self) -> None:
        log: list[str] = []
        api, _ = scoped_api(log)
        async with client_for(mounted(api)) as client:
            body = answer(await post(client, [request("nope", [], 1), {"bad": 1}]))
        assert [item["error"]["code"] for item in body] == [-32601, -32600]
        assert log == []

    async def test_an_unexpected_failure_of_a_batch_dependency_is_32603_for_each(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken() -> None:
            raise RuntimeError("pool exhausted")

        api = Tether(batch_dependencies=[Depends(broken)])

        @api.query
        async def ping() -> str:
            return "pong"

        with caplog.at_level(logging.ERROR, logger="tether"):
            async with client_for(mounted(api)) as client:
                body = answer(await post(client, [request("ping", [], 1), request("ping", [], 2)]))
        assert [item["error"]["code"] for item in body] == [-32603, -32603]
        assert "pool exhausted" not in json.dumps(body)
        assert "shared dependencies" in caplog.text


# -- the message handler on its own (what the WebSocket transport reuses) --------------------


class TestDispatcher:
    async def test_dispatch_without_http(self) -> None:
        api = Tether()

        def offset() -> int:
            return 0

        @api.query
        async def add(a: int, b: int, zero: int = Depends(offset)) -> int:
            return a + b + zero

        @api.query
        async def plain(a: int) -> int:
            return a

        dispatcher = JsonRpcDispatcher(TransportHandle(api))
        contexts: list[CallContext] = []

        def make_context() -> CallContext:
            ctx = CallContext(
                "websocket", {"type": "websocket", "headers": [], "query_string": b""}
            )
            contexts.append(ctx)
            return ctx

        single = await dispatcher.dispatch(request("add", [1, 2]), make_context)
        assert single.body == b'{"jsonrpc":"2.0","id":1,"result":3}'
        batch = await dispatcher.dispatch(
            [request("add", [1, 1], "a"), notification("add", [0, 0])], make_context
        )
        assert batch.body == b'[{"jsonrpc":"2.0","id":"a","result":2}]'
        nothing = await dispatcher.dispatch(notification("add", [1, 2]), make_context)
        assert nothing.body is None
        # One fresh context per call that has dependencies...
        assert len(contexts) == 4
        assert len({id(ctx) for ctx in contexts}) == 4
        # ...and none for a call without any: the invoker would never read it.
        assert (await dispatcher.dispatch(request("plain", [5]), make_context)).body == (
            b'{"jsonrpc":"2.0","id":1,"result":5}'
        )
        assert len(contexts) == 4

    async def test_a_dependency_cache_seeds_every_call(self) -> None:
        opened: list[str] = []

        async def session() -> str:
            opened.append("session")
            return "fresh"

        api = Tether()

        @api.query
        async def who(s: Annotated[str, Depends(session)]) -> str:
            return s

        app = mounted(api)
        ctx = CallContext("websocket", in_process_scope(app, "/api/ws"))
        dispatcher = JsonRpcDispatcher(TransportHandle(api))
        async with AsyncExitStack() as connection:
            # What a WebSocket connection does once: solve its shared dependencies.
            seed = await api.invoker.solve_shared(ctx, [Depends(session)], connection)
            assert opened == ["session"]
            for _ in range(2):
                reply = await dispatcher.dispatch(
                    [request("who", [], 1), request("who", [], 2)],
                    lambda: CallContext("websocket", ctx.scope),
                    dependency_cache=seed,
                )
                assert reply.body is not None
                assert [item["result"] for item in json.loads(reply.body)] == ["fresh", "fresh"]
            single = await dispatcher.dispatch(
                request("who"), lambda: CallContext("websocket", ctx.scope), dependency_cache=seed
            )
            assert single.body == b'{"jsonrpc":"2.0","id":1,"result":"fresh"}'
        # Neither the batch-level solve nor the calls solved it again.
        assert opened == ["session"]

    async def test_a_seeded_value_is_reused_by_the_batch_dependencies(self) -> None:
        opened: list[str] = []

        async def session() -> str:
            opened.append(f"session{len(opened) + 1}")
            return opened[-1]

        api = Tether(batch_dependencies=[Depends(session)])

        @api.query
        async def who(s: Annotated[str, Depends(session)]) -> str:
            return s

        app = mounted(api)
        ctx = CallContext("websocket", in_process_scope(app, "/api/ws"))
        dispatcher = JsonRpcDispatcher(TransportHandle(api))
        async with AsyncExitStack() as connection:
            seed = await api.invoker.solve_shared(ctx, [Depends(session)], connection)
            reply = await dispatcher.dispatch(
                [request("who", [], 1), request("who", [], 2)],
                lambda: CallContext("websocket", ctx.scope),
                dependency_cache=seed,
            )
        assert reply.body is not None
        assert [item["result"] for item in json.loads(reply.body)] == ["session1", "session1"]
        # The batch reused the connection's value instead of solving its own.
        assert opened == ["session1"]


# -- HTTP ---------------------------------------------------------------------------------


class TestWorkers:
    async def test_a_cancelled_batch_cancels_every_running_item_before_it_returns(self) -> None:
        api, state = concurrency_api()
        dispatcher = JsonRpcDispatcher(TransportHandle(api), max_concurrency=4)
        batch = [request("work", {"ms": 10_000, "tag": i}, i) for i in range(10)]
        with anyio.move_on_after(0.2) as scope:
            await dispatcher.dispatch(batch, lambda: CallContext("jsonrpc", {"type": "http"}))
        assert scope.cancelled_caught
        # Four items started (the bound); all four were cancelled and had finished
        # (their `finally` ran) by the time dispatch gave control back.
        assert state["started"] == 4
        assert state["running"] == 0

    async def test_items_that_never_suspend_run_in_one_worker(self) -> None:
        api = Tether()
        tasks: set[object] = set()

        @api.query
        async def where() -> int:
            tasks.add(anyio.get_current_task().id)
            return 0

        dispatcher = JsonRpcDispatcher(TransportHandle(api))
        reply = await dispatcher.dispatch([request("where", None, i) for i in range(50)], dict)
        assert reply.body is not None
        assert len(json.loads(reply.body)) == 50
        assert len(tasks) == 1

    @pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
    async def test_a_batch_leaves_no_reference_cycles(self) -> None:
        # A cycle per batch would be freed by the garbage collector alone: it then ran ten
        # times as often under load. Checked with items that suspend too (workers added).
        api, _ = concurrency_api()

        @api.query
        async def add(a: int, b: int) -> int:
            return a + b

        dispatcher = JsonRpcDispatcher(TransportHandle(api))
        quick = [request("add", [i, 1], i) for i in range(100)]
        slow = [request("work", {"ms": 1, "tag": i}, i) for i in range(20)]
        await dispatcher.dispatch(list(quick), dict)  # warm: first-call caches
        await dispatcher.dispatch(list(slow), dict)
        gc.collect()
        gc.disable()
        try:
            replies = [await dispatcher.dispatch(list(batch), dict) for batch in (quick, slow)]
            await anyio.sleep(0.01)  # the loop lets go of what it held for the batches
            found = gc.collect()
        finally:
            gc.enable()
        assert [len(json.loads(reply.body or b"")) for reply in replies] == [100, 20]
        assert found == 0


class TestFanOut:
    async def test_a_failing_worker_is_raised_once_no_worker_runs(self) -> None:
        # Workers never fail for a call's error (those are answers); only a bug can.
        from tether.transports._jsonrpc_dispatch import _fan_out

        running = 0
        started = 0

        async def worker() -> None:
            nonlocal running, started
            started += 1
            running += 1
            try:
                if started == 1:
                    await anyio.sleep(0.05)  # suspends: a second worker is added
                else:
                    raise RuntimeError("a bug in a worker")
            finally:
                running -= 1

        with pytest.raises((RuntimeError, BaseExceptionGroup)) as info:
            await _fan_out(worker, 2, lambda: started < 2)
        error: BaseException = info.value
        if isinstance(error, BaseExceptionGroup):  # anyio's task group (trio)
            error = error.exceptions[0]
        assert isinstance(error, RuntimeError)
        assert str(error) == "a bug in a worker"
        assert started == 2
        assert running == 0


class TestHttp:
    async def test_a_body_over_the_limit_is_413_with_a_jsonrpc_error(self) -> None:
        api = Tether(max_body_size=64)

        @api.query
        async def echo(text: str) -> str:
            return text

        async with client_for(mounted(api)) as client:
            response = await post(client, request("echo", ["x" * 100]))
            small = await post(client, request("echo", ["x"]))
        assert response.status_code == 413
        body = response.json()
        assert body["id"] is None
        assert body["error"]["code"] == -32013
        assert body["error"]["data"]["code"] == "PAYLOAD_TOO_LARGE"
        assert body["error"]["data"]["details"] == {"limit": 64}
        assert answer(small)["result"] == "x"

    async def test_a_streamed_body_over_the_limit_is_413_without_reading_it_all(self) -> None:
        api = Tether(max_body_size=64)

        @api.query
        async def echo(text: str) -> str:
            return text

        app = mounted(api)
        chunks = [b'{"jsonrpc":"2.0","method":"echo","params":["', b"x" * 100, b"x" * 100, b'"]}']
        read: list[bytes] = []
        sent: list[Message] = []

        async def receive() -> Message:
            read.append(chunks.pop(0))
            return {"type": "http.request", "body": read[-1], "more_body": bool(chunks)}

        async def send(message: Message) -> None:
            sent.append(message)

        await app(http_scope(app, []), receive, send)  # no Content-Length: chunked
        assert sent[0]["status"] == 413
        assert json.loads(sent[1]["body"])["error"]["data"]["code"] == "PAYLOAD_TOO_LARGE"
        assert len(read) == 2  # refused at the first chunk past the limit

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
    async def test_a_wrong_content_type_is_415_with_a_jsonrpc_error(
        self, conformance: httpx.AsyncClient, content_type: str
    ) -> None:
        response = await conformance.post(
            "/api/jsonrpc",
            content=json.dumps(request("add", [1, 2])),
            headers={"content-type": content_type},
        )
        assert response.status_code == 415
        body = response.json()
        assert body["jsonrpc"] == "2.0"
        assert body["id"] is None
        assert body["error"]["code"] == -32015
        assert body["error"]["data"]["code"] == "UNSUPPORTED_MEDIA_TYPE"

    @pytest.mark.parametrize(
        "content_type", ["application/json; charset=utf-8", "application/json-rpc+json"]
    )
    async def test_json_content_types_are_accepted(
        self, conformance: httpx.AsyncClient, content_type: str
    ) -> None:
        response = await conformance.post(
            "/api/jsonrpc",
            content=json.dumps(request("add", [1, 2])),
            headers={"content-type": content_type},
        )
        assert answer(response)["result"] == 3

    @pytest.mark.parametrize(
        "content",
        [json.dumps(request("act")).encode(), json.dumps([request("act")]).encode(), b""],
        ids=["single", "batch", "empty"],
    )
    async def test_a_post_without_content_type_is_415_and_runs_nothing(
        self, content: bytes
    ) -> None:
        # A cross-site page can POST a body of no type without a CORS preflight.
        api = Tether()
        ran: list[str] = []

        @api.command
        async def act() -> str:
            ran.append("act")
            return "acted"

        async with client_for(mounted(api)) as client:
            response = await client.post("/api/jsonrpc", content=content)
        assert response.status_code == 415
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32015,
                "message": "Content-Type must be application/json; the request has none",
                "data": {"code": "UNSUPPORTED_MEDIA_TYPE", "details": None},
            },
        }
        assert ran == []

    @pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
    async def test_other_http_methods_are_405(
        self, conformance: httpx.AsyncClient, method: str
    ) -> None:
        response = await conformance.request(method, "/api/jsonrpc")
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert response.json()["error"]["data"]["code"] == "METHOD_NOT_ALLOWED"

    async def test_an_invalid_content_length_is_400(self) -> None:
        app = create_app()
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = http_scope(app, [(b"content-length", b"ten")])
        await app(scope, receive, send)
        assert sent[0]["status"] == 400
        assert json.loads(sent[1]["body"])["error"]["data"]["code"] == "BAD_REQUEST"

    async def test_a_client_that_disconnects_mid_body_gets_nothing(self) -> None:
        app = create_app()
        sent: list[Message] = []
        messages: list[Message] = [
            {"type": "http.request", "body": b'{"jsonrpc":', "more_body": True},
            {"type": "http.disconnect"},
        ]

        async def receive() -> Message:
            return messages.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        await app(http_scope(app, []), receive, send)
        assert sent == []

    @pytest.mark.parametrize("body", [b"", b"   ", b"{", b"\xff\xfe", b'{"a": NaN}'])
    async def test_unparsable_bodies_are_parse_errors(
        self, conformance: httpx.AsyncClient, body: bytes
    ) -> None:
        assert answer(await post(conformance, body)) == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32700, "message": "Parse error"},
        }

    async def test_headers_set_by_response_dependencies_are_sent_status_is_not(self) -> None:
        api = Tether()

        @api.command
        async def login(name: str, response: Response) -> str:
            response.set_cookie("session", name)
            response.status_code = 201
            return name

        async with client_for(mounted(api)) as client:
            single = await post(client, request("login", ["ann"]))
            batch = await post(client, [request("login", ["a"], 1), request("login", ["b"], 2)])
        assert single.status_code == 200
        assert single.cookies["session"] == "ann"
        assert batch.status_code == 200
        cookies = batch.headers.get_list("set-cookie")
        assert sorted(c.split(";")[0] for c in cookies) == ["session=a", "session=b"]

    async def test_the_endpoint_is_documented_in_openapi(self) -> None:
        async with client_for(create_app()) as client:
            document = (await client.get("/openapi.json")).json()
        post_doc = document["paths"]["/api/jsonrpc"]["post"]
        assert post_doc["operationId"] == "jsonrpc"
        request_schema = post_doc["requestBody"]["content"]["application/json"]["schema"]
        assert {"$ref": "#/components/schemas/JsonRpcRequest"} in request_schema["anyOf"]
        # JSON-RPC never answers FastAPI's 422; HTTP-level problems are one "4XX" entry.
        assert set(post_doc["responses"]) == {"200", "204", "4XX"}
        problem = post_doc["responses"]["4XX"]["content"]["application/json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/JsonRpcErrorResponse"}
        assert "HTTPValidationError" not in json.dumps(post_doc)
        schemas = document["components"]["schemas"]
        assert set(schemas["JsonRpcRequest"]["properties"]) == {"jsonrpc", "method", "params", "id"}
        assert set(schemas["JsonRpcErrorResponse"]["properties"]) == {"jsonrpc", "id", "error"}
        assert document["paths"]["/api/openrpc.json"]["get"]["operationId"] == "openrpc"

    async def test_the_endpoint_path_is_configurable(self) -> None:
        api = Tether(prefix="/v1")

        @api.query
        async def ping() -> str:
            return "pong"

        async with client_for(mounted(api, JsonRpcTransport(path="/rpc"))) as client:
            response = await client.post("/v1/rpc", json=request("ping"))
            discovered = (await client.get("/v1/openrpc.json")).json()
        assert answer(response)["result"] == "pong"
        assert discovered["servers"] == [{"name": "JSON-RPC", "url": "/v1/rpc"}]


def http_scope(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/jsonrpc",
        "raw_path": b"/api/jsonrpc",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }


async def test_a_stream_operation_is_listed_but_not_callable_over_http_jsonrpc() -> None:
    api = Tether()

    @api.stream
    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async with client_for(mounted(api)) as client:
        body = answer(await post(client, request("ticks", [2])))
        document = (await client.get("/api/openrpc.json")).json()
    assert body["error"]["code"] == -32000
    assert body["error"]["data"] == {
        "code": "BAD_REQUEST",
        "details": {"operation": "ticks", "kind": "stream"},
    }
    (method,) = document["methods"]
    assert method["x-tether"]["kind"] == "stream"
    assert method["params"][0]["name"] == "n"


def test_the_endpoint_is_tried_before_any_documentation_route() -> None:
    from tether.schema.openapi import DocumentationRoute

    api = Tether()
    for index in range(50):

        async def op() -> int:
            return 1

        api.query(name=f"op{index}")(op)
    app = mounted(api)
    paths = [getattr(route, "path", None) for route in app.router.routes]
    first_doc = next(
        i for i, route in enumerate(app.router.routes) if isinstance(route, DocumentationRoute)
    )
    assert paths.index("/api/jsonrpc") < first_doc
    assert paths.index("/api/openrpc.json") < first_doc


async def test_operations_added_after_mounting_are_callable() -> None:
    api = Tether()
    app = mounted(api)

    @api.query
    async def late(x: int) -> int:
        return x * 2

    async with client_for(app) as client:
        body = answer(await post(client, [request("late", [21], 1)]))
    assert body == [{"jsonrpc": "2.0", "id": 1, "result": 42}]
