"""The users and the todo model that the cache-coordination tests share (tests of effects and live push).

`current_user` resolves the `X-User` header ("1" ada, "2" bob, "9" root, who is staff) and is
what those tests give `Tether(user=Depends(current_user))`.
"""

from typing import Annotated

from fastapi import Header
from pydantic import BaseModel


class Todo(BaseModel):
    id: int
    owner_id: int
    title: str


class User(BaseModel):
    id: int
    name: str
    is_staff: bool = False


USERS = {
    "1": User(id=1, name="ada"),
    "2": User(id=2, name="bob"),
    "9": User(id=9, name="root", is_staff=True),
}


async def current_user(x_user: Annotated[str | None, Header()] = None) -> User | None:
    return USERS.get(x_user) if x_user is not None else None
