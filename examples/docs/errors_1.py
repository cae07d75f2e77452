# file: examples/docs/errors_1.py
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from tether import Conflict, Tether


class Shortage(BaseModel):
    item: str
    wanted: int
    available: int


class OutOfStock(Conflict):
    """Our own error: a Conflict with its own code and typed details."""

    code = "OUT_OF_STOCK"
    jsonrpc_code = -32042
    message = "Not enough stock"
    details_model = Shortage


api = Tether(prefix="/api")
STOCK = {"apple": 2}


@api.command(errors=[OutOfStock])  # listed in the operation's OpenAPI responses
async def order(item: str, count: int) -> int:
    """Take `count` of `item` from stock."""
    available = STOCK.get(item, 0)
    if count > available:
        raise OutOfStock(details={"item": item, "wanted": count, "available": available})
    STOCK[item] = available - count
    return STOCK[item]


@api.query
async def legacy(id: int) -> str:
    """FastAPI's HTTPException maps to the error with the same status."""
    raise HTTPException(status_code=404, detail=f"No legacy record {id}")


@api.query
async def broken() -> int:
    """An unexpected exception: the client sees INTERNAL_ERROR and nothing else."""
    return 1 // 0


app = FastAPI()
api.mount(app)
