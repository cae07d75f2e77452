# file: examples/docs/operations_1.py
from fastapi import FastAPI

from tether import Conflict, Tether

api = Tether(prefix="/api", tags=["inventory"])
STOCK: dict[str, int] = {"apple": 3}


@api.query
async def stock(item: str) -> int:
    """How many of `item` are in stock.

    The docstring is the operation's description in OpenAPI.
    """
    return STOCK.get(item, 0)


@api.command(
    name="inventory.restock",  # dotted names group operations
    tags=["admin"],  # added to the Tether's tags
    summary="Restock an item",
    errors=[Conflict],  # documented in OpenAPI, with its status
)
async def restock(item: str, count: int) -> int:
    """Add `count` of `item`; a negative stock is a conflict."""
    if STOCK.get(item, 0) + count < 0:
        raise Conflict("Stock cannot go negative", details={"item": item})
    STOCK[item] = STOCK.get(item, 0) + count
    return STOCK[item]


@api.query(deprecated=True, description="Use `stock` instead.")
async def count_stock(item: str) -> int:
    return STOCK.get(item, 0)


app = FastAPI()
api.mount(app)
