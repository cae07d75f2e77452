"""Strict and lax inputs, over HTTP POST and GET, JSON-RPC and in-process (docs/operations.md)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer
from tether import Service, Tether, ValidationFailed, query

pytestmark = pytest.mark.e2e


def make_api(strict: bool) -> Tether:
    api = Tether(strict=strict)

    @api.query
    async def add(a: int, b: int) -> int:
        return a + b

    @api.query
    async def when(at: datetime.datetime, flag: bool = False) -> str:
        return f"{at.isoformat()} {flag}"

    @api.query(strict=not strict)
    async def other(a: int) -> int:
        return a

    return api


def serve(live_server: Callable[..., LiveServer], strict: bool) -> tuple[Tether, httpx.Client]:
    from fastapi import FastAPI

    app = FastAPI()
    api = make_api(strict)
    api.mount(app)
    return api, httpx.Client(base_url=live_server(app).url)


def post(client: httpx.Client, name: str, params: dict[str, Any]) -> httpx.Response:
    return client.post(f"/api/call/{name}", json=params)


def rpc(client: httpx.Client, name: str, params: dict[str, Any]) -> dict[str, Any]:
    request = {"jsonrpc": "2.0", "id": 1, "method": name, "params": params}
    reply: dict[str, Any] = client.post("/api/jsonrpc", json=request).json()
    return reply


async def in_process(api: Tether, name: str, params: dict[str, Any]) -> Any:
    try:
        return await api.call(name, params)
    except ValidationFailed as error:
        return ("422", [entry.loc for entry in error.details])


# (params, lax answer, strict answer): 422 lists the refused inputs.
CASES = [
    ({"a": 1, "b": 2}, 3, 3),
    ({"a": 0, "b": False}, 0, ("422", [["b"]])),
    ({"a": "1", "b": 2}, 3, ("422", [["a"]])),
    ({"a": 1.0, "b": 2}, 3, 3),
    ({"a": 1.5, "b": 2}, ("422", [["a"]]), ("422", [["a"]])),
]


def answer(response: httpx.Response) -> Any:
    body = response.json()
    if response.status_code == 422:
        return ("422", [entry["loc"] for entry in body["error"]["details"]])
    assert response.status_code == 200, response.text
    return body["result"]


def rpc_answer(reply: dict[str, Any]) -> Any:
    if "error" in reply:
        assert reply["error"]["code"] == -32602
        return ("422", [entry["loc"] for entry in reply["error"]["data"]["details"]])
    return reply["result"]


@pytest.mark.parametrize("strict", [False, True], ids=["lax", "strict"])
async def test_json_values_on_every_wire(
    live_server: Callable[..., LiveServer], strict: bool
) -> None:
    api, client = serve(live_server, strict)
    with client:
        for params, lax_answer, strict_answer in CASES:
            expected = strict_answer if strict else lax_answer
            assert answer(post(client, "add", params)) == expected, params
            assert rpc_answer(rpc(client, "add", params)) == expected, params
            assert await in_process(api, "add", params) == expected, params
        # The per-operation option wins over the Tether's: `other` runs in the other mode.
        for a, lax_answer, strict_answer in OTHER:
            expected = lax_answer if strict else strict_answer
            assert answer(post(client, "other", {"a": a})) == expected, a
            assert await in_process(api, "other", {"a": a}) == expected, a


OTHER = [(1, 1, 1), ("1", 1, ("422", [["a"]])), (True, 1, ("422", [["a"]])), (2.0, 2, 2)]


@pytest.mark.parametrize("strict", [False, True], ids=["lax", "strict"])
def test_types_json_cannot_carry_still_parse(
    live_server: Callable[..., LiveServer], strict: bool
) -> None:
    _, client = serve(live_server, strict)
    with client:
        params = {"at": "2024-05-01T12:00:00", "flag": True}
        assert answer(post(client, "when", params)) == "2024-05-01T12:00:00 True"
        assert rpc_answer(rpc(client, "when", params)) == "2024-05-01T12:00:00 True"
        got = answer(client.get("/api/call/when", params={"at": "2024-05-01T12:00:00"}))
        assert got == "2024-05-01T12:00:00 False"
        # A number is a timestamp only in lax mode, as in pydantic's strict JSON mode.
        timestamp = answer(post(client, "when", {"at": 0}))
        assert timestamp == (("422", [["at"]]) if strict else "1970-01-01T00:00:00+00:00 False")


# GET ?query: (lax answer, strict answer). A query value is text in both modes.
GETS = [
    ({"a": "1", "b": "2"}, 3, 3),
    ({"a": "true", "b": "2"}, ("422", [["a"]]), ("422", [["a"]])),
    ({"a": "True", "b": "2"}, ("422", [["a"]]), ("422", [["a"]])),
    ({"a": "1.0", "b": "2"}, 3, 3),
]


@pytest.mark.parametrize("strict", [False, True], ids=["lax", "strict"])
def test_get_reads_query_text_as_post_reads_json(
    live_server: Callable[..., LiveServer], strict: bool
) -> None:
    _, client = serve(live_server, strict)
    with client:
        for query, lax_answer, strict_answer in GETS:
            expected = strict_answer if strict else lax_answer
            assert answer(client.get("/api/call/add", params=query)) == expected, query
        # Booleans: `true` is true in both modes; `True` and `1` only in lax mode.
        for text, lax_flag in (("true", True), ("True", True), ("1", True), ("false", False)):
            response = client.get(
                "/api/call/when", params={"at": "2024-05-01T00:00:00", "flag": text}
            )
            if strict and text in ("True", "1"):
                assert answer(response) == ("422", [["flag"]]), text
            else:
                assert answer(response) == f"2024-05-01T00:00:00 {lax_flag}", text


class Numbers(Service, name="numbers"):
    """A service whose one method validates strictly in a lax Tether."""

    @query(strict=True)
    async def double(self, n: int) -> int:
        return 2 * n

    @query
    async def triple(self, n: int) -> int:
        return 3 * n


def test_services_take_strict_per_method(live_server: Callable[..., LiveServer]) -> None:
    from fastapi import FastAPI

    api = Tether()
    api.include(Numbers)
    app = FastAPI()
    api.mount(app)
    with httpx.Client(base_url=live_server(app).url) as client:
        assert answer(post(client, "numbers.double", {"n": 2})) == 4
        assert answer(post(client, "numbers.double", {"n": True})) == ("422", [["n"]])
        assert answer(client.get("/api/call/numbers.double", params={"n": "true"})) == (
            "422",
            [["n"]],
        )
        assert rpc_answer(rpc(client, "numbers.double", {"n": "2"})) == ("422", [["n"]])
        # The service's other method keeps the Tether's lax default.
        assert answer(post(client, "numbers.triple", {"n": True})) == 3
        assert answer(post(client, "numbers.triple", {"n": "2"})) == 6


@pytest.mark.parametrize("strict", [False, True], ids=["lax", "strict"])
def test_websocket_validates_as_http(live_server: Callable[..., LiveServer], strict: bool) -> None:
    from fastapi import FastAPI
    from websockets.sync.client import connect

    app = FastAPI()
    make_api(strict).mount(app)
    server = live_server(app)
    with connect(f"{server.ws_url}/api/ws") as socket:
        for number, (params, lax_answer, strict_answer) in enumerate(CASES):
            socket.send(json.dumps({"uuid": str(number), "route": "add", "payload": params}))
            reply = json.loads(socket.recv(timeout=5))
            got = (
                ("422", [entry["loc"] for entry in reply["payload"]["error"]["details"]])
                if reply["status"] == 422
                else reply["payload"]
            )
            assert got == (strict_answer if strict else lax_answer), params
