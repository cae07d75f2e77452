# file: examples/docs/websocket_app.py
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, Header, HTTPException

from tether import PerConnection, Service, Tether, query
from tether.transports import HttpTransport, JsonRpcTransport
from tether.transports.websocket import WebSocketTransport

CONNECTION_LOG: list[str] = []


async def connection_log() -> AsyncIterator[list[str]]:
    """Solved once per socket, when it opens; closed when the socket closes."""
    CONNECTION_LOG.append("open")
    try:
        yield CONNECTION_LOG
    finally:
        CONNECTION_LOG.append("close")


def api_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Without the key, the handshake is refused with close code 1008 (over HTTP: a 403)."""
    if x_api_key != "let-me-in":
        raise HTTPException(403, "A valid X-Api-Key header is required")


# Solved once per socket, at the handshake, and per call on every other transport.
api = Tether(prefix="/api", connection_dependencies=[Depends(api_key)])


class Math(Service, name="math"):
    @query
    async def sum(self, values: list[int]) -> dict[str, int]:
        """Route `math/sum` (or `math.sum`): the sum of a list of integers."""
        return {"sum": sum(values)}


api.include(Math)


@api.stream
async def ticks(n: int, ms: int = 0) -> AsyncIterator[int]:
    """A stream: over the socket, a subscription (one message per item)."""
    for i in range(1, n + 1):
        if ms:
            await anyio.sleep(ms / 1000)
        yield i


@api.query
async def whoami(
    log: Annotated[list[str], PerConnection(connection_log)],
    x_user: Annotated[str, Header()] = "anonymous",
) -> dict[str, object]:
    """Handshake headers, overridable per message; a per-connection dependency."""
    return {"user": x_user, "connections_opened": log.count("open")}


socket = WebSocketTransport(
    max_in_flight=64,  # calls running at once per socket; past it, reading pauses
    max_subscriptions=64,  # open subscriptions per socket; past it, 429
    max_queued_messages=256,  # outgoing queue; a client that lets it fill is closed (1013)
    max_message_size=1024 * 1024,  # larger incoming messages close the socket (1009)
)
app = FastAPI()
api.mount(app, transports=[HttpTransport(), JsonRpcTransport(), socket])
