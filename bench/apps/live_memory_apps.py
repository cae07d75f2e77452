"""The apps bench/live_memory.py serves: bare ASGI floors and a small tether app, all idle.

- `bare_ws`: accepts a WebSocket, then awaits `receive` until the client leaves;
- `bare_sse`: answers `text/event-stream` with one comment, then awaits `http.disconnect`;
- `tether_app`: a Tether with one query (so `/api/ws` has something to call) and `idle`, a
  stream that yields nothing until the client leaves (read at `GET /api/stream/idle`);
- `live_app`: a Tether whose context `todos` live subscribers follow, over
  `GET /api/live?contexts=todos&owner_id=N` or a WebSocket `{"route": "LIVE"}` message.

Every app acknowledges the lifespan, so uvicorn starts them the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

_SSE_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
    ],
}
_SSE_COMMENT = {"type": "http.response.body", "body": b": hello\n\n", "more_body": True}


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def bare_ws(scope: Any, receive: Any, send: Any) -> None:
    """Accept a WebSocket, then wait (receiving) until the client leaves."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (await receive())["type"] == "websocket.receive":
        pass


async def bare_sse(scope: Any, receive: Any, send: Any) -> None:
    """Send an event-stream's headers and one comment, then wait for the client to leave."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await send(_SSE_START)
    await send(_SSE_COMMENT)
    while (await receive())["type"] != "http.disconnect":
        pass


def _tether_app() -> Any:
    from fastapi import FastAPI

    from tether import Tether

    api = Tether(prefix="/api")

    @api.query
    async def echo(text: str) -> str:
        return text

    @api.stream
    async def idle() -> AsyncIterator[int]:
        await anyio.sleep_forever()
        yield 0  # pragma: no cover - never reached

    app = FastAPI()
    api.mount(app)
    return app


def _live_app() -> Any:
    from fastapi import FastAPI

    from tether import Tether

    api = Tether(prefix="/api")

    @api.query(context="todos")
    async def todos(owner_id: int) -> list[str]:
        return []

    @api.command(affects=["todos"])
    async def add_todo(owner_id: int, title: str) -> str:
        return title

    @api.command(affects=["todos"])
    async def reset_all() -> int:
        return 0

    app = FastAPI()
    api.mount(app)
    return app


_FACTORIES = {"tether_app": _tether_app, "live_app": _live_app}


def __getattr__(name: str) -> Any:
    """Build `tether_app` or `live_app` on first use, so a bare app's server imports no tether.

    `tether_app`: `echo` over `/api/ws`, and `idle` over `/api/stream/idle`. `live_app`: the
    context `todos` (scoped by `owner_id`), `add_todo` (invalidates one owner's), and
    `reset_all` (invalidates every owner's).
    """
    factory = _FACTORIES.get(name)
    if factory is None:
        raise AttributeError(name)
    app = globals()[name] = factory()
    return app
