# file: examples/docs/operations_2.py
from datetime import date
from typing import Annotated, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field

from tether import Tether

api = Tether(prefix="/api")


class Address(BaseModel):
    street: str
    city: str


class Customer(BaseModel):
    name: str
    address: Address
    since: date


@api.query
async def search(
    q: Annotated[str, Field(min_length=2)],  # constraints from pydantic's Field
    tags: tuple[str, ...] = (),  # a sequence: repeat the key in a GET query string
    limit: Annotated[int, Field(ge=1, le=100)] = 10,  # a default makes it optional
    order: Literal["asc", "desc"] = "asc",
) -> list[str]:
    """Search, with scalar and list inputs: callable with POST and with GET."""
    found = [f"{q}-{tag}" for tag in tags] or [q]
    return sorted(found, reverse=order == "desc")[:limit]


@api.command
def register(customer: Customer, notify: bool = False) -> Customer:
    """Take a pydantic model as input; sync functions run in the thread pool."""
    return customer


app = FastAPI()
api.mount(app)
