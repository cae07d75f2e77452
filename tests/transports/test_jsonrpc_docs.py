"""docs/transports/jsonrpc.md: its examples (examples/docs/jsonrpc_*.py) and its exchanges.

Every ```text block of the page made of `-->` request / `<--` response lines is replayed
against a fresh copy of examples/docs/jsonrpc_1.py, so the wire the page shows is the wire
tether speaks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests._docs_examples import client_for, load

from .test_websocket import MemorySocket

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "transports" / "jsonrpc.md"
TEXT_BLOCK = re.compile(r"^```text\n(.*?)^```$", re.MULTILINE | re.DOTALL)
NOTHING = "nothing (HTTP 204)"


def exchanges() -> list[list[tuple[str, str]]]:
    """Each text block of the page as its (request, response) pairs."""
    blocks = []
    for block in TEXT_BLOCK.findall(PAGE.read_text(encoding="utf-8")):
        lines = block.strip().splitlines()
        assert len(lines) % 2 == 0, block
        pairs = []
        for sent, received in zip(lines[::2], lines[1::2], strict=True):
            assert sent.startswith("--> "), sent
            assert received.startswith("<-- "), received
            pairs.append((sent[4:], received[4:]))
        blocks.append(pairs)
    return blocks


def test_the_page_has_exchanges_for_each_topic() -> None:
    sent = [request for block in exchanges() for request, _ in block]
    assert len(exchanges()) == 6
    assert any('"params": [42, 23]' in s for s in sent)
    assert any(s.startswith("[") for s in sent)
    assert any("rpc.discover" in s for s in sent)


@pytest.mark.parametrize("block", exchanges(), ids=lambda b: b[0][0][:40])
async def test_each_exchange_on_the_page_is_what_tether_answers(
    block: list[tuple[str, str]],
) -> None:
    async with client_for(load("jsonrpc_1")) as client:
        for sent, expected in block:
            response = await client.post(
                "/api/jsonrpc", content=sent, headers={"content-type": "application/json"}
            )
            if expected == NOTHING:
                assert response.status_code == 204
                assert response.content == b""
            else:
                assert response.status_code == 200
                assert response.json() == json.loads(expected)


async def test_jsonrpc_1_over_http_too() -> None:
    async with client_for(load("jsonrpc_1")) as client:
        response = await client.post("/api/call/notes.get", json={"id": 1})
    assert response.json() == {"result": "buy milk"}


def batch(size: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"jsonrpc": "2.0", "method": "transfer", "params": [1], "id": i}
        for i in range(start, start + size)
    ]


async def test_jsonrpc_2_batch_scopes_and_the_api_key_on_every_transport() -> None:
    module = load("jsonrpc_2")
    key = {"x-api-key": "s3cret"}
    async with client_for(module) as client:
        ok = await client.post("/api/jsonrpc", json=batch(3), headers=key)
        assert [item["result"] for item in ok.json()] == ["ok"] * 3
        events = module.EVENTS
        assert events[0] == "begin"
        assert events[-1] == "commit"
        assert sorted(events[1:-1]) == ["audit"] * 3 + ["transfer 1 in tx"] * 3
        events.clear()
        denied = await client.post("/api/jsonrpc", json=batch(3))
        assert [item["error"]["data"]["code"] for item in denied.json()] == ["UNAUTHORIZED"] * 3
        assert [item["error"]["code"] for item in denied.json()] == [-32001] * 3
        assert events == []
        too_big = await client.post("/api/jsonrpc", json=batch(21), headers=key)
        assert too_big.json()["error"]["message"] == "Batch of 21 requests exceeds the limit of 20"
        assert events == []
        single = await client.post("/api/jsonrpc", json=batch(1)[0], headers=key)
        assert single.json()["result"] == "ok"
        # A single request is a batch of one: the per-batch transaction opens first.
        assert events == ["begin", "audit", "transfer 1 in tx", "commit"]
        events.clear()
        # Over HTTP, the key guards the operation too (it answered 200 when the check was
        # JsonRpcTransport(batch_dependencies=...)); per-batch dependencies solve per call.
        refused = await client.post("/api/call/transfer", json={"amount": 5})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "UNAUTHORIZED"
        assert "transfer 5 in tx" not in events
        events.clear()
        http = await client.post("/api/call/transfer", json={"amount": 5}, headers=key)
        assert http.json() == {"result": "ok"}
        assert events == ["audit", "begin", "transfer 5 in tx", "commit"]


async def test_jsonrpc_2_the_key_guards_the_websocket_too() -> None:
    module = load("jsonrpc_2")
    call = {"uuid": 1, "route": "transfer", "payload": {"amount": 5}}
    rpc = {"jsonrpc": "2.0", "id": 2, "method": "transfer", "params": [5]}
    async with MemorySocket(module.app) as ws:
        refused = await ws.call(call)
        refused_rpc = await ws.call(rpc)
    assert refused["status"] == 401
    assert refused["payload"]["error"]["code"] == "UNAUTHORIZED"
    assert refused_rpc["error"]["data"]["code"] == "UNAUTHORIZED"
    assert not any(event.startswith("transfer") for event in module.EVENTS)
    async with MemorySocket(module.app, headers=[("x-api-key", "s3cret")]) as ws:
        allowed = await ws.call(call)
        allowed_rpc = await ws.call(rpc)
    assert allowed["payload"] == "ok"
    assert allowed_rpc["result"] == "ok"


async def test_jsonrpc_2_bounds_concurrency_at_4() -> None:
    module = load("jsonrpc_2")
    dispatcher = module.app.router.routes  # the transport's dispatcher carries the bound
    transports = [route.app for route in dispatcher if getattr(route, "path", "") == "/api/jsonrpc"]
    assert transports[0].dispatcher.max_concurrency == 4


async def test_jsonrpc_3_custom_codes_through_jsonrpcclient() -> None:
    module = load("jsonrpc_3")
    async with client_for(module) as client:
        lines = await module.place_orders(client)
        document = (await client.get("/api/openrpc.json")).json()
    assert lines == ["ordered 2", "1001 OUT_OF_STOCK: {'sku': 'widget', 'available': 0}"]
    (order,) = document["methods"]
    assert {"code": 1001, "message": "Out of stock", "data": {"code": "OUT_OF_STOCK"}} in order[
        "errors"
    ]
