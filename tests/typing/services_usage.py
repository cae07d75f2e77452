"""A module that uses services the way an application does; `mypy --strict` must accept it.

tests/typing/test_mypy.py type-checks this file and reads its `reveal_type` notes; it
also runs `main()` so that the code is not only well-typed but works.
"""

from collections.abc import AsyncIterator
from typing import Annotated, reveal_type

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import Service, Tether, command, query, stream


class User(BaseModel):
    id: int
    name: str


class Session:
    def __init__(self) -> None:
        self.names = {1: "ada"}


async def get_db() -> AsyncIterator[Session]:
    yield Session()


class TenantScoped(Service, abstract=True):
    tenant: Annotated[str, Header(alias="X-Tenant")]
    db: Annotated[Session, Depends(get_db)]


class Users(TenantScoped, name="users", tags=["users"]):
    limit: int = 10

    @query
    async def get(self, id: int) -> User:
        return User(id=id, name=self.db.names[id])

    @query(uses=["tenant"])
    def search(self, q: str) -> list[str]:
        return [q, self.tenant][: self.limit]

    @command(auth=False)
    async def rename(self, id: int, name: str) -> User:
        user = await self.get(id)
        self.db.names[id] = name
        return user.model_copy(update={"name": name})

    @stream
    async def watch(self, id: int) -> AsyncIterator[User]:
        yield await self.get(id)


class AdminUsers(Users, name="admin_users", exclude=["search"]):
    @command
    async def purge(self, id: int) -> None:
        del self.db.names[id]


def build() -> FastAPI:
    api = Tether()
    api.include(Users, AdminUsers)
    app = FastAPI()
    api.mount(app)
    return app


async def main() -> tuple[User, list[str], User, list[User], dict[int, str]]:
    users = Users(tenant="acme", db=Session())
    got = await users.get(1)
    reveal_type(got)
    found = users.search("a")
    reveal_type(found)
    renamed = await users.rename(1, "grace")
    reveal_type(renamed)
    reveal_type(users.tenant)
    watched = [user async for user in users.watch(1)]
    reveal_type(users.watch(1))
    admin = AdminUsers(tenant="acme", db=Session())
    reveal_type(admin.purge)
    await admin.purge(1)
    return got, found, renamed, watched, admin.db.names
