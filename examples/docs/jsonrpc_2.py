# file: examples/docs/jsonrpc_2.py
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header

from tether import PerBatch, Tether, Unauthorized
from tether.transports import HttpTransport, JsonRpcTransport
from tether.transports.websocket import WebSocketTransport

EVENTS: list[str] = []


async def transaction() -> AsyncIterator[str]:
    """Opened once for a whole batch (and once per call elsewhere)."""
    EVENTS.append("begin")
    yield "tx"
    EVENTS.append("commit")


async def audit_log() -> AsyncIterator[None]:
    """A plain dependency: solved for every call, batch items included."""
    EVENTS.append("audit")
    yield


async def api_key(x_api_key: Annotated[str | None, Header()] = None) -> str:
    """Checked once per JSON-RPC batch, per call elsewhere; a failure answers every item."""
    if x_api_key != "s3cret":
        raise Unauthorized("Send X-API-Key")
    return x_api_key


api = Tether(
    prefix="/api",
    dependencies=[Depends(audit_log)],
    # Every operation, on every transport: HTTP, JSON-RPC, WebSocket, in-process.
    batch_dependencies=[Depends(api_key)],
)


@api.command
async def transfer(amount: int, tx: Annotated[str, PerBatch(transaction)]) -> str:
    EVENTS.append(f"transfer {amount} in {tx}")
    return "ok"


app = FastAPI()
api.mount(
    app,
    transports=[
        HttpTransport(),
        JsonRpcTransport(
            max_batch_size=20,  # a larger batch is refused whole (default 100)
            max_concurrency=4,  # items of one batch running at once (default 16)
        ),
        WebSocketTransport(),
    ],
)
