"""A module that uses contexts, `affects=` and `merge=` the way an application does; `mypy --strict` must accept it.

tests/typing/test_mypy.py type-checks this file and reads its `reveal_type` notes; it
also runs `main()` so that the code is not only well-typed but works.
"""

from typing import Any, reveal_type

from pydantic import BaseModel

from tether import CallResult, Tether


class Todo(BaseModel):
    id: int
    owner_id: int
    title: str


class Profile(BaseModel):
    name: str


api = Tether()
api.context("todos", rev=2, description="an owner's todos")


@api.query(context="todos")
async def todos(owner_id: int) -> list[Todo]:
    return [Todo(id=1, owner_id=owner_id, title="milk")]


@api.query(context="user")
async def current_user() -> Profile:
    return Profile(name="ada")


@api.command(affects=[todos])
async def add_todo(owner_id: int, title: str) -> Todo:
    return Todo(id=2, owner_id=owner_id, title=title)


@api.command(merge={"user": "current_user"})
async def rename(name: str) -> Profile:
    return Profile(name=name)


async def main() -> tuple[CallResult, Any, dict[str, Any]]:
    added = await api.call("add_todo", {"owner_id": 5, "title": "x"}, effects=True)
    reveal_type(added)
    reveal_type(added.invalidate)
    plain = await api.call("rename", {"name": "grace"})
    reveal_type(plain)
    bundle = await api.fetch_context("todos", {"owner_id": 5})
    reveal_type(bundle)
    return added, plain, bundle
