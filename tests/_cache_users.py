"""The users, models and operations that the cache-coordination tests share (effects, live push).

`current_user` resolves the `X-User` header ("1" ada, "2" bob, "9" root, who is staff) and is
what those tests give `Tether(user=Depends(current_user))`.
"""

from typing import Annotated

from fastapi import Header
from pydantic import BaseModel

from tether import Conflict, Tether


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


class Profile(BaseModel):
    id: int
    name: str


def effects_api() -> Tether:
    """A Tether with the operations the effects tests of every wire share.

    The contexts `todos` (per owner) and `user`; `rename` merges into `user`; `refuse`
    declares an effect and fails; `plain` declares none. Each wire's tests add their own.
    """
    api = Tether()

    @api.query(context="todos")
    async def todos(owner_id: int) -> list[Todo]:
        return []

    @api.query(context="user")
    async def current_user() -> Profile:
        return Profile(id=1, name="ada")

    @api.command(merge=["user"])
    async def rename(name: str) -> Profile:
        return Profile(id=1, name=name)

    @api.command(affects=["todos"])
    async def refuse(owner_id: int) -> int:
        raise Conflict("not now")

    @api.command
    async def plain(value: int) -> int:
        return value

    return api
