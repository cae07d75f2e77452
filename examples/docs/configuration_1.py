# file: examples/docs/configuration_1.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header

from tether import Tether, Unauthorized


def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Refuse every call that does not carry the key, on every transport."""
    if x_api_key != "let-me-in":
        raise Unauthorized("A valid X-Api-Key header is required")


api = Tether(
    prefix="/rpc",  # endpoints: /rpc/call/{name}, /rpc/jsonrpc, /rpc/ws, /rpc/stream/{name}
    dependencies=[Depends(require_key)],
    tags=["rpc"],
    max_body_size=64 * 1024,  # 64 KiB instead of 1 MiB
    max_in_flight=256,  # HTTP and JSON-RPC requests served at once by this process
    body_timeout=5.0,  # seconds a request body may take to arrive
    allowed_origins=["https://app.example.com"],  # pages that may open the WebSocket
    strict=True,  # no coercion of inputs: "1" is not an int, true is not an int
)


@api.query
async def add(a: int, b: int) -> int:
    return a + b


app = FastAPI()
api.mount(app)
