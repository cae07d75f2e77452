"""tether: a query `add` at prefix /api (HTTP `POST /api/call/add`, JSON-RPC `POST /api/jsonrpc`)."""

from fastapi import FastAPI

from tether import Tether

api = Tether(prefix="/api")


@api.query
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


app = FastAPI()
api.mount(app)
