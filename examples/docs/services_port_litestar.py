# file: examples/docs/services_port_litestar.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import Forbidden, NotFound, Service, Tether, command, query


class NewOrder(BaseModel):
    sku: str
    quantity: int


class Order(NewOrder):
    id: int


class OrderRepo:
    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}

    def add(self, data: NewOrder) -> Order:
        order = Order(id=len(self.orders) + 1, **data.model_dump())
        self.orders[order.id] = order
        return order


REPO = OrderRepo()


def get_repo() -> OrderRepo:
    return REPO


def requires_staff(x_role: Annotated[str, Header()] = "") -> None:
    """A guard is a dependency: it reads what it needs, and raises to refuse."""
    if x_role != "staff":
        raise Forbidden("staff only")


class Orders(Service, name="orders", tags=["orders"], guards=[requires_staff]):
    repo: Annotated[OrderRepo, Depends(get_repo)]  # on self, not in every signature

    @query
    async def get(self, order_id: int) -> Order:
        if order_id not in self.repo.orders:
            raise NotFound(f"no order {order_id}")
        return self.repo.orders[order_id]

    @command
    async def create(self, data: NewOrder) -> Order:
        return self.repo.add(data)


api = Tether(prefix="/api")
api.include(Orders)

app = FastAPI()
api.mount(app)
