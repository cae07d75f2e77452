"""Services declared in a module with postponed annotations (PEP 563).

Every annotation here is a string until tether resolves it against this module's globals.
The `define_*` functions build broken services on demand, for the error tests.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header
from pydantic import BaseModel

from tether import Service, query


class Item(BaseModel):
    sku: str
    price: float
    currency: str


class PriceList:
    def price(self, sku: str) -> float:
        return 10.0


def get_prices() -> PriceList:
    return PriceList()


class Priced(Service, abstract=True):
    currency: Annotated[str, Header(alias="X-Currency")]
    prices: PriceList = Depends(get_prices)


class Catalog(Priced, name="catalog"):
    discount: float = 0.0

    @query
    async def get(self, sku: str) -> Item:
        price = self.prices.price(sku) * (1 - self.discount)
        return Item(sku=sku, price=price, currency=self.currency)

    @query
    def list(self, skus: list[str]) -> list[Item]:
        return [Item(sku=s, price=self.prices.price(s), currency=self.currency) for s in skus]


class DiscountCatalog(Catalog, name="discount_catalog"):
    discount = 0.1


def define_unresolvable_method() -> None:
    class Broken(Service):
        @query
        async def get(self, sku: Missing) -> Item:  # type: ignore[name-defined]  # noqa: F821
            raise NotImplementedError


def define_unresolvable_attribute() -> None:
    class Broken(Service):
        prices: Missing = Depends(get_prices)  # type: ignore[name-defined]  # noqa: F821


def define_collision() -> None:
    class Broken(Service):
        prices: PriceList = Depends(get_prices)

        @query
        async def get(self, prices: int) -> int:
            return prices
