"""fastapi-jsonrpc (the peer library): method `add` at `POST /api/jsonrpc`."""

import fastapi_jsonrpc as jsonrpc
from fastapi import Body

app = jsonrpc.API()
entrypoint = jsonrpc.Entrypoint("/api/jsonrpc")


@entrypoint.method()
async def add(a: int = Body(...), b: int = Body(...)) -> int:
    """Add two integers."""
    return a + b


app.bind_entrypoint(entrypoint)
