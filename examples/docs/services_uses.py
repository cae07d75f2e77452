# file: examples/docs/services_uses.py
from typing import Annotated

from fastapi import Depends, FastAPI

from tether import Service, Tether, query

CONNECTIONS: list[str] = []


class Warehouse:
    """Stands in for a client that is slow to connect."""

    def __init__(self) -> None:
        CONNECTIONS.append("warehouse")

    def total(self, sku: str) -> int:
        return 42


def get_warehouse() -> Warehouse:
    return Warehouse()


def get_prices() -> dict[str, float]:
    return {"apple": 0.5}


class Reports(Service, name="reports"):
    prices: Annotated[dict[str, float], Depends(get_prices)]
    warehouse: Annotated[Warehouse, Depends(get_warehouse)]

    @query(uses=["prices"])  # only `prices` is solved for this operation
    async def price(self, sku: str) -> float:
        return self.prices[sku]

    @query  # no uses=: every class dependency is solved
    async def stock_value(self, sku: str) -> float:
        return self.prices[sku] * self.warehouse.total(sku)


api = Tether(prefix="/api")
api.include(Reports)

app = FastAPI()
api.mount(app)
