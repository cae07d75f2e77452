# file: examples/docs/cache_affects.py
from fastapi import FastAPI

from tether import Tether

PRICES = {"pen": 150, "ink": 900}
CATEGORIES = {"pen": "office", "ink": "office"}

api = Tether(prefix="/api")


@api.query(context="catalog")
async def products(category: str) -> list[str]:
    return sorted(sku for sku, found in CATEGORIES.items() if found == category)


@api.query(context="catalog")
async def cheapest(category: str) -> int:
    return min(PRICES[sku] for sku, found in CATEGORIES.items() if found == category)


@api.query  # a query of no context: clients cache it alone, by its params
async def price(sku: str) -> int:
    return PRICES[sku]


# A context by name, and a query by its function: both scoped by the arguments they share.
@api.command(affects=["catalog", price])
async def reprice(sku: str, category: str, cents: int) -> int:
    PRICES[sku] = cents
    return cents


# A query by its name; the command has no `sku` argument, so every price is invalidated.
@api.command(affects=["price", "catalog"])
async def sale(percent: int) -> None:
    for sku in PRICES:
        PRICES[sku] -= PRICES[sku] * percent // 100


app = FastAPI()
api.mount(app)
