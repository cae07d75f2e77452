# file: examples/docs/jsonrpc_3.py
import httpx
from fastapi import FastAPI
from jsonrpcclient import Error, Ok, parse, request

from tether import Tether, TetherError


class OutOfStock(TetherError):
    """Users pick any JSON-RPC code for their own errors."""

    code = "OUT_OF_STOCK"
    status = 409
    jsonrpc_code = 1001
    message = "Out of stock"


api = Tether(prefix="/api")


@api.command(errors=[OutOfStock])
async def order(sku: str, quantity: int = 1) -> int:
    if sku == "widget":
        raise OutOfStock(details={"sku": sku, "available": 0})
    return quantity


async def place_orders(client: httpx.AsyncClient) -> list[str]:
    """Send a batch with jsonrpcclient's messages and read each result or error."""
    batch = [
        request("order", params={"sku": "gadget", "quantity": 2}),
        request("order", ["widget"]),
    ]
    response = await client.post("/api/jsonrpc", json=batch)
    lines = []
    for outcome in parse(response.json()):
        if isinstance(outcome, Ok):
            lines.append(f"ordered {outcome.result}")
        elif isinstance(outcome, Error):
            lines.append(f"{outcome.code} {outcome.data['code']}: {outcome.data['details']}")
    return lines


app = FastAPI()
api.mount(app)
