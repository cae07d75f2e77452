from __future__ import annotations

from collections.abc import Callable

import httpx
from fastapi import FastAPI

from tests.conftest import LiveServer
from tether import Tether


def test_add_over_real_server(live_server: Callable[..., LiveServer]) -> None:
    api = Tether(prefix="/api")

    @api.query
    async def add(a: int, b: int) -> int:
        return a + b

    app = FastAPI()
    api.mount(app)
    server = live_server(app)
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/api/call/add", json={"a": 2, "b": 3})
        assert response.status_code == 200
        assert response.json() == {"result": 5}
