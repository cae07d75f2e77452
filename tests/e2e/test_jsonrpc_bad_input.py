"""Hostile JSON-RPC input against a real uvicorn server on loopback.

Each case gets its documented error, never a 500 and never a hang, and the server answers
the next request normally.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from examples.conformance.app import create_api
from fastapi import FastAPI

from tests.conftest import LiveServer

pytestmark = pytest.mark.e2e

JSON = {"content-type": "application/json"}
PARSE_ERROR = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}


def conformance_app(max_body_size: int | None = None) -> tuple[FastAPI, dict[str, int]]:
    """The conformance operations, with a counter of `add` calls that actually ran."""
    api = create_api()
    if max_body_size is not None:
        api.max_body_size = max_body_size
    ran = {"count": 0}

    @api.query
    async def counted_add(a: int, b: int) -> int:
        ran["count"] += 1
        return a + b

    app = FastAPI()
    api.mount(app)
    return app, ran


@pytest.fixture
def client(live_server: Callable[..., LiveServer]) -> Iterator[httpx.Client]:
    app, _ = conformance_app()
    server = live_server(app)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def still_serving(client: httpx.Client) -> None:
    response = client.post(
        "/api/jsonrpc", json={"jsonrpc": "2.0", "method": "add", "params": [2, 3], "id": "next"}
    )
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": "next", "result": 5}


def test_ten_thousand_nested_arrays_are_a_parse_error(client: httpx.Client) -> None:
    body = b"[" * 10_000 + b"]" * 10_000
    response = client.post("/api/jsonrpc", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == PARSE_ERROR
    still_serving(client)


def test_nesting_inside_params_is_a_parse_error_too(client: httpx.Client) -> None:
    params = b"[" * 10_000 + b"]" * 10_000
    body = b'{"jsonrpc":"2.0","method":"add","params":' + params + b',"id":1}'
    response = client.post("/api/jsonrpc", content=body, headers=JSON)
    assert response.json() == PARSE_ERROR
    still_serving(client)


def test_a_batch_of_100000_calls_is_refused_whole_and_fast(
    live_server: Callable[..., LiveServer],
) -> None:
    # A body limit large enough to carry the batch: the batch limit is what refuses it.
    app, ran = conformance_app(max_body_size=64 * 1024 * 1024)
    server = live_server(app)
    item = b'{"jsonrpc":"2.0","method":"counted_add","params":[1,2],"id":1}'
    body = b"[" + b",".join([item] * 100_000) + b"]"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        started = time.monotonic()
        response = client.post("/api/jsonrpc", content=body, headers=JSON)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert response.json() == {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32600,
                "message": "Batch of 100000 requests exceeds the limit of 100",
                "data": {
                    "code": "BATCH_TOO_LARGE",
                    "details": {"limit": 100, "received": 100_000},
                },
            },
        }
        assert ran["count"] == 0
        assert elapsed < 5, f"refusing the batch took {elapsed:.1f}s"
        still_serving(client)


def test_a_batch_of_100000_calls_at_the_default_body_limit_is_413(client: httpx.Client) -> None:
    item = b'{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'
    body = b"[" + b",".join([item] * 100_000) + b"]"
    response = client.post("/api/jsonrpc", content=body, headers=JSON)
    assert response.status_code == 413
    assert response.json()["error"]["data"]["code"] == "PAYLOAD_TOO_LARGE"
    still_serving(client)


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_numbers_in_params_are_a_parse_error(client: httpx.Client, value: bytes) -> None:
    body = b'{"jsonrpc":"2.0","method":"add","params":[' + value + b',1],"id":1}'
    response = client.post("/api/jsonrpc", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == PARSE_ERROR
    still_serving(client)


def test_an_8_mb_string_param_is_413_at_the_default_limit(client: httpx.Client) -> None:
    text = "x" * (8 * 1024 * 1024)
    response = client.post(
        "/api/jsonrpc",
        json={"jsonrpc": "2.0", "method": "echo", "params": [text], "id": 1},
    )
    assert response.status_code == 413
    body = response.json()
    assert body["jsonrpc"] == "2.0"
    assert body["id"] is None
    assert body["error"]["code"] == -32013
    assert body["error"]["data"] == {
        "code": "PAYLOAD_TOO_LARGE",
        "details": {"limit": 1024 * 1024},
    }
    still_serving(client)


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","method":"echo","params":["\xff\xfe"],"id":1}',
        b'{"jsonrpc":"2.0","method":"echo","params":["\xc3\x28"],"id":1}',
        b'{"jsonrpc":"2.0","method":"echo","params":["\xed\xa0\x80"],"id":1}',
    ],
    ids=["invalid-bytes", "bad-continuation", "surrogate"],
)
def test_a_non_utf8_body_is_a_parse_error(client: httpx.Client, body: bytes) -> None:
    response = client.post("/api/jsonrpc", content=body, headers=JSON)
    assert response.status_code == 200
    assert response.json() == PARSE_ERROR
    still_serving(client)
