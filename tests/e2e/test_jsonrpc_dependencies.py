"""Dependency scopes of JSON-RPC batches, over a real uvicorn server on loopback."""

# No `from __future__ import annotations`: operations here annotate with local dependencies.
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio
import httpx
import pytest
from fastapi import Depends, FastAPI, Header, Request

from tests.conftest import LiveServer
from tether import PerBatch, Tether, Unauthorized

pytestmark = pytest.mark.e2e


class Resources:
    """Opens numbered resources and records when each opens and closes."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[str] = []

    def factory(self, kind: str) -> Callable[[], AsyncIterator[str]]:
        async def resource() -> AsyncIterator[str]:
            name = f"{kind}{sum(n.startswith(kind) for n in self.opened) + 1}"
            self.opened.append(name)
            try:
                yield name
            finally:
                self.closed.append(name)

        return resource


def test_a_batch_of_10_opens_one_batch_resource_and_10_per_call_ones(
    live_server: Callable[..., LiveServer],
) -> None:
    resources = Resources()
    pool = resources.factory("pool")
    session = resources.factory("session")
    api = Tether()

    @api.query
    async def work(
        n: int,
        p: Annotated[str, PerBatch(pool)],
        s: Annotated[str, Depends(session)],
    ) -> list[str]:
        await anyio.sleep(0.01)
        return [p, s]

    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    batch = [{"jsonrpc": "2.0", "method": "work", "params": [i], "id": i} for i in range(10)]
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/jsonrpc", json=batch)
        assert response.status_code == 200
        results = [item["result"] for item in response.json()]
        # Every item shares the one batch resource and has its own per-call one.
        assert {p for p, _ in results} == {"pool1"}
        assert sorted(s for _, s in results) == sorted(f"session{i}" for i in range(1, 11))
        assert resources.opened.count("pool1") == 1
        assert len(resources.opened) == 11
        # All closed before the response was sent; the batch resource last.
        assert sorted(resources.closed) == sorted(resources.opened)
        assert resources.closed[-1] == "pool1"
        # The connection stays usable: a second batch gets a fresh batch resource.
        again = client.post("/api/jsonrpc", json=batch[:3])
        assert {item["result"][0] for item in again.json()} == {"pool2"}
    assert sorted(resources.closed) == sorted(resources.opened)


def test_a_batch_level_auth_failure_answers_each_item(
    live_server: Callable[..., LiveServer],
) -> None:
    checks: list[str | None] = []

    async def require_token(authorization: Annotated[str | None, Header()] = None) -> str:
        checks.append(authorization)
        if authorization != "Bearer good":
            raise Unauthorized("A valid token is required")
        return "good"

    api = Tether(batch_dependencies=[Depends(require_token)])
    ran: list[int] = []

    @api.command
    async def act(n: int) -> int:
        ran.append(n)
        return n

    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    batch = [
        {"jsonrpc": "2.0", "method": "act", "params": [1], "id": 1},
        {"jsonrpc": "2.0", "method": "act", "params": [2]},
        {"jsonrpc": "2.0", "method": "act", "params": [3], "id": 3},
    ]
    error = {
        "code": -32001,
        "message": "A valid token is required",
        "data": {"code": "UNAUTHORIZED", "details": None},
    }
    with httpx.Client(base_url=server.url) as client:
        denied = client.post("/api/jsonrpc", json=batch, headers={"authorization": "Bearer bad"})
        assert denied.status_code == 200
        assert denied.json() == [
            {"jsonrpc": "2.0", "id": 1, "error": error},
            {"jsonrpc": "2.0", "id": 3, "error": error},
        ]
        assert ran == []
        assert checks == ["Bearer bad"]  # checked once for the whole batch
        allowed = client.post("/api/jsonrpc", json=batch, headers={"authorization": "Bearer good"})
        assert [item["result"] for item in allowed.json()] == [1, 3]
    assert sorted(ran) == [1, 2, 3]


def test_yield_dependencies_in_batches_and_notifications_keep_the_connection_alive(
    live_server: Callable[..., LiveServer],
) -> None:
    # The trap DESIGN.md names: an exit stack closed in another task than the one that
    # entered it makes uvicorn drop the keep-alive connection after the reply.
    resources = Resources()
    pool = resources.factory("pool")
    session = resources.factory("session")
    api = Tether()

    @api.command
    async def touch(
        n: int,
        request: Request,
        p: Annotated[str, PerBatch(pool)],
        s: Annotated[str, Depends(session)],
    ) -> int:
        await anyio.sleep(0.005)
        assert request.client is not None
        return request.client.port

    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    ports: set[int] = set()
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            batch = [
                {"jsonrpc": "2.0", "method": "touch", "params": [i], "id": i} for i in range(5)
            ]
            batch.append({"jsonrpc": "2.0", "method": "touch", "params": [9]})
            response = client.post("/api/jsonrpc", json=batch)
            ports.update(item["result"] for item in response.json())
            notified = client.post(
                "/api/jsonrpc", json={"jsonrpc": "2.0", "method": "touch", "params": [1]}
            )
            assert notified.status_code == 204
            single = client.post(
                "/api/jsonrpc", json={"jsonrpc": "2.0", "method": "touch", "params": [1], "id": 1}
            )
            ports.add(single.json()["result"])
    # Every request travelled on the one connection: it was never dropped.
    assert len(ports) == 1
    assert sorted(resources.closed) == sorted(resources.opened)
    assert len(resources.opened) == 3 * (1 + 6) + 3 * 2 + 3 * 2
