"""Helpers shared by the core tests: an in-memory client, and one call over either path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from fastapi import FastAPI

from tether import Tether, TetherError

TRANSPORTS = ("http", "inprocess")


def asgi_client(app: Any) -> httpx.AsyncClient:
    """An httpx client that calls `app` in memory (no server, no lifespan)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def mounted(api: Tether) -> FastAPI:
    """A fresh FastAPI app with `api` mounted on it."""
    app = FastAPI()
    api.mount(app)
    return app


async def call_over(
    transport: str,
    api: Tether,
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Call `name` over HTTP (POST) or in-process; return (status, envelope) either way."""
    if transport == "http":
        assert api.app is not None, "mount the api first"
        async with asgi_client(api.app) as client:
            response = await client.post(
                f"{api.prefix}/call/{name}", json=dict(params or {}), headers=headers
            )
        return response.status_code, response.json()
    try:
        result = await api.call(name, params, headers=headers)
    except TetherError as error:
        return error.status, {"error": error.to_dict()}
    return 200, {"result": result}
