"""Third-party JSON-RPC clients against a real uvicorn server on loopback.

- `jsonrpcclient` (PyPI) builds and parses the messages; httpx carries them.
- The npm package `json-rpc-2.0`, run by node (tests/node/jsonrpc_client.mjs).
- The official OpenRPC meta-schema, validated with ajv by node (tests/node/openrpc_validate.mjs).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from examples.conformance.app import create_app
from jsonrpcclient import Error, Ok, notification_json, parse, parse_json, request, request_json

from tests.conftest import LiveServer, serve

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    with serve(create_app()) as live:
        yield live


def run_node(script: str, server: LiveServer) -> Any:
    completed = subprocess.run(
        ["node", str(NODE_DIR / script), server.url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_jsonrpcclient_single_calls_and_errors(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:

        def send(text: str, **headers: str) -> httpx.Response:
            return client.post(
                "/api/jsonrpc",
                content=text,
                headers={"content-type": "application/json", **headers},
            )

        assert parse_json(send(request_json("subtract", params=(42, 23))).text).result == 19
        named = parse_json(
            send(request_json("subtract", params={"minuend": 5, "subtrahend": 7})).text
        )
        assert isinstance(named, Ok)
        assert named.result == -2
        echo = parse_json(send(request_json("echo", params={"text": "hi"})).text)
        assert isinstance(echo, Ok)
        assert echo.result == {"text": "hi"}
        missing = parse_json(send(request_json("nope")).text)
        assert isinstance(missing, Error)
        assert (missing.code, missing.message) == (-32601, "Method not found")
        invalid = parse_json(send(request_json("add", params={"a": 1})).text)
        assert isinstance(invalid, Error)
        assert invalid.code == -32602
        assert invalid.data["details"][0]["loc"] == ["b"]
        denied = parse_json(send(request_json("whoami")).text)
        assert isinstance(denied, Error)
        assert (denied.code, denied.data["code"]) == (-32001, "UNAUTHORIZED")
        me = parse_json(send(request_json("whoami"), authorization="Bearer alice").text)
        assert isinstance(me, Ok)
        assert me.result == {"name": "alice", "is_staff": True}
        sent = send(notification_json("notify_hello", params=(7,)))
        assert sent.status_code == 204
        assert sent.content == b""


def test_jsonrpcclient_batch(server: LiveServer) -> None:
    batch = [
        request("add", params=(1, 2)),
        request("fail", params={"code": "CONFLICT"}),
        request("slow", params={"ms": 10}),
    ]
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/jsonrpc", json=batch)
    assert response.status_code == 200
    results = list(parse(response.json()))
    assert [r.id for r in results] == [item["id"] for item in batch]
    first, second, third = results
    assert isinstance(first, Ok)
    assert first.result == 3
    assert isinstance(second, Error)
    assert (second.code, second.data["code"]) == (-32009, "CONFLICT")
    assert isinstance(third, Ok)
    assert third.result == 10


def test_the_npm_json_rpc_2_0_client(server: LiveServer) -> None:
    out = run_node("jsonrpc_client.mjs", server)
    assert out["positional"] == 19
    assert out["named"] == 19
    assert out["echo"] == {"text": "héllo"}
    assert out["data"] == ["hello", 5]
    assert out["unknown"] == {"code": -32601, "message": "Method not found"}
    assert out["invalid"]["code"] == -32602
    assert out["invalid"]["data"]["details"][0]["loc"] == ["a"]
    assert out["notFound"] == {
        "code": -32004,
        "message": "fail('NOT_FOUND')",
        "data": {"code": "NOT_FOUND", "details": None},
    }
    assert out["whoami"] == {"name": "alice", "is_staff": True}
    assert out["anonymous"]["code"] == -32001
    assert out["batch"] == [
        {"jsonrpc": "2.0", "id": 1, "result": 3},
        {"jsonrpc": "2.0", "id": 2, "result": 20},
        {"jsonrpc": "2.0", "id": 3, "error": {"code": -32601, "message": "Method not found"}},
    ]
    # Nine requests answered with 200, the notification with 204, then the batch.
    assert out["statuses"] == [200] * 9 + [204, 200]


def test_the_openrpc_document_validates_against_the_official_meta_schema(
    server: LiveServer,
) -> None:
    out = run_node("openrpc_validate.mjs", server)
    assert out["status"] == 200
    assert out["errors"] == []
    assert out["valid"] is True
    assert out["rejectsBroken"] is True
    assert out["dangling"] == []
    assert len(out["methods"]) == 14
