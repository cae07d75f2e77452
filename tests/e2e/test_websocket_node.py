"""Third-party JavaScript clients on tether's socket, run by node against a real uvicorn server.

- the npm `ws` client drives the envelope dialect (tests/node_ws/envelope_client.mjs);
- `@open-rpc/client-js` with its WebSocket transport drives the JSON-RPC dialect
  (tests/node_ws/jsonrpc_client.mjs).
"""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, serve

from .test_websocket_server import build

pytestmark = pytest.mark.e2e

NODE_DIR = Path(__file__).resolve().parents[1] / "node_ws"


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    app, _ = build()
    with serve(app) as live:
        yield live


def run_node(script: str, server: LiveServer) -> Any:
    completed = subprocess.run(
        ["node", str(NODE_DIR / script), server.ws_url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def ok(uuid: Any, payload: Any) -> dict[str, Any]:
    return {"uuid": uuid, "status": 200, "headers": {}, "payload": payload}


def test_npm_ws_drives_the_envelope_dialect(server: LiveServer) -> None:
    results = run_node("envelope_client.mjs", server)
    assert results["sum"] == ok(1, {"sum": 10})
    assert results["named"] == ok("n", {"sum": 10})
    assert results["alias"] == ok(2, {"sum": 7})
    assert results["who"] == ok(3, "node")
    assert results["whoOverride"] == ok(4, "message")
    assert results["pong"] == {"uuid": None, "route": "PONG"}
    assert results["unknown"]["status"] == 404
    assert results["unknown"]["payload"]["error"]["code"] == "NOT_FOUND"
    assert results["invalid"]["status"] == 422
    assert results["invalid"]["payload"]["error"]["details"][0]["loc"] == ["values", 0]
    assert results["concurrent"] == [2 * i for i in range(20)]
    assert results["subscription"] == [
        {"uuid": "s", "status": 200, "headers": {"stream": "item"}, "payload": i} for i in (1, 2, 3)
    ] + [{"uuid": "s", "status": 200, "headers": {"stream": "end", "items": 3}, "payload": None}]
    cancelled = results["cancelled"]
    assert cancelled["headers"]["stream"] == "cancelled"
    assert cancelled["headers"]["items"] == results["cancelledItems"]
    assert 0 < results["cancelledItems"] < 100000


def test_open_rpc_client_drives_the_jsonrpc_dialect(server: LiveServer) -> None:
    results = run_node("jsonrpc_client.mjs", server)
    assert results["positional"] == {"sum": 6}
    assert results["named"] == {"sum": 9}
    assert results["unknown"] == {"code": -32601, "message": "Method not found"}
    assert results["invalid"]["code"] == -32602
    assert results["invalid"]["data"]["code"] == "VALIDATION_FAILED"
    assert results["subscription"] == {"items": 3, "cancelled": False}
    subscription_ids = {n["params"]["subscription"] for n in results["notifications"]}
    assert len(subscription_ids) == 1
    assert [n["method"] for n in results["notifications"]] == ["subscription"] * 3
    assert [n["params"]["result"] for n in results["notifications"]] == [1, 2, 3]
    assert results["concurrent"] == [{"sum": i + 1} for i in range(10)]
