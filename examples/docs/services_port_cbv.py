# file: examples/docs/services_port_cbv.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import NotFound, Service, Tether, command, query


class Item(BaseModel):
    id: int
    name: str
    owner: str


class Store:
    def __init__(self) -> None:
        self.items: dict[int, Item] = {}

    def add(self, name: str, owner: str) -> Item:
        item = Item(id=len(self.items) + 1, name=name, owner=owner)
        self.items[item.id] = item
        return item


STORE = Store()


def get_store() -> Store:
    return STORE


def get_owner(x_user: Annotated[str, Header()]) -> str:
    return x_user


class Items(Service, name="items", tags=["items"]):
    store: Annotated[Store, Depends(get_store)]
    owner: str = Depends(get_owner)  # the @cbv spelling works too

    @query
    def get(self, item_id: int) -> Item:
        item = self.store.items.get(item_id)
        if item is None or item.owner != self.owner:
            raise NotFound("Item not found", details={"item_id": item_id})
        return item

    @command
    def create(self, name: str) -> Item:
        return self.store.add(name, self.owner)


api = Tether(prefix="/api")
api.include(Items)

app = FastAPI()
api.mount(app)
