"""The fast lane (`_fast_lane`): `/live` and `/ws` skip the router's layers, never the user's middleware.

In memory (asyncio and trio), with the clients of test_live_sse.py and test_websocket.py.
What a request went through is read from its scope, as an app dependency (which the live
gate runs) sees it: FastAPI's `AsyncExitStackMiddleware` puts `fastapi_middleware_astack`
there, and Starlette's `ExceptionMiddleware` `starlette.exception_handlers`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.transports.test_live_sse import LiveStream, build_api
from tests.transports.test_websocket import MemorySocket
from tether import Tether
from tether.transports import HttpTransport
from tether.transports.sse import SseTransport
from tether.transports.websocket import WebSocketTransport

ROUTER_LAYERS = ("fastapi_middleware_astack", "starlette.exception_handlers")


class Recorder:
    """A user's pure ASGI middleware: it notes every request it sees."""

    def __init__(self, app: ASGIApp, name: str, seen: list[tuple[str, str, str]]) -> None:
        self.app = app
        self.name = name
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            self.seen.append((self.name, scope["type"], scope["path"]))
        await self.app(scope, receive, send)


class Probe:
    """The app's dependency: keeps the scope of each request it is solved for."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    def __call__(self, request: Request) -> None:
        self.scopes.append(dict(request.scope))


@pytest.fixture
async def apps() -> AsyncIterator[Callable[..., tuple[Tether, FastAPI]]]:
    made: list[Tether] = []

    def make(app: FastAPI) -> tuple[Tether, FastAPI]:
        api = build_api()
        made.append(api)

        @api.stream
        async def ticks(n: int) -> AsyncIterator[int]:
            for tick in range(n):
                yield tick

        api.mount(app, transports=[HttpTransport(), SseTransport(), WebSocketTransport()])
        return api, app

    yield make
    for api in made:
        await api.live.close()
        await api.live.broker.close()


def live_message() -> dict[str, Any]:
    return {"uuid": "u", "route": "LIVE", "payload": {"contexts": ["todos"]}}


async def open_both(app: FastAPI) -> None:
    """Open a live SSE stream and a socket with a live subscription; wait for both ready."""
    async with LiveStream(app, "contexts=todos") as stream:
        events = await stream.wait_events(1)
        assert events[0]["event"] == "ready"
    async with MemorySocket(app) as socket:
        await socket.send_json(live_message())
        ready = await socket.receive()
        assert ready["headers"] == {"stream": "ready"}, ready


async def test_user_middleware_sees_live_and_socket_requests(apps: Any) -> None:
    seen: list[tuple[str, str, str]] = []
    app = FastAPI()
    app.add_middleware(Recorder, name="before mount", seen=seen)
    apps(app)
    app.add_middleware(Recorder, name="after mount", seen=seen)
    await open_both(app)
    assert seen == [
        ("after mount", "http", "/api/live"),
        ("before mount", "http", "/api/live"),
        ("after mount", "websocket", "/api/ws"),
        ("before mount", "websocket", "/api/ws"),
    ]


async def test_live_and_socket_requests_skip_the_router_layers(apps: Any) -> None:
    probe = Probe()
    app = FastAPI(dependencies=[Depends(probe)])
    apps(app)
    await open_both(app)
    live_scope, socket_scope = probe.scopes
    for scope in (live_scope, socket_scope):
        assert not [key for key in ROUTER_LAYERS if key in scope]
        # What the router would have put there, the lane does.
        assert scope["router"] is app.router
        assert scope["path_params"] == {}
    assert live_scope["endpoint"] is app.state.tether_fast_lane.routes["http"][0][2]
    assert socket_scope["endpoint"] is app.state.tether_fast_lane.routes["websocket"][0][2]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        # So does a stream (`@api.stream`, over SSE).
        response = await client.get("/api/stream/ticks", params={"n": 2})
        assert response.text.count("event: data") == 2
        stream_scope = probe.scopes[-1]
        assert not [key for key in ROUTER_LAYERS if key in stream_scope]
        assert stream_scope["path_params"] == {"name": "ticks"}
        # Any other request takes the whole way in (the probe sees those layers there).
        response = await client.get("/api/call/stats", params={"owner_id": 1})
    assert response.status_code == 200
    assert all(key in probe.scopes[-1] for key in ROUTER_LAYERS)


async def test_an_app_that_has_served_already_keeps_the_router(apps: Any) -> None:
    probe = Probe()
    app = FastAPI(dependencies=[Depends(probe)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as client:
        assert (await client.get("/nothing")).status_code == 404  # the stack is built
    apps(app)
    await open_both(app)
    assert all(key in scope for scope in probe.scopes for key in ROUTER_LAYERS)
    assert len(probe.scopes) == 2
