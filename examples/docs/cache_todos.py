# file: examples/docs/cache_todos.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import NotFound, Tether


class Todo(BaseModel):
    id: int
    owner_id: int
    title: str
    done: bool = False


class Profile(BaseModel):
    id: int
    name: str


TODOS: dict[int, Todo] = {}  # stands in for a database
NAMES = {1: "ada", 2: "bob"}


def signed_in(authorization: Annotated[str | None, Header()] = None) -> Profile | None:
    """`Authorization: Bearer <user id>`: a stand-in for real authentication."""
    user_id = (authorization or "").removeprefix("Bearer ")
    if not user_id.isdigit() or int(user_id) not in NAMES:
        return None
    return Profile(id=int(user_id), name=NAMES[int(user_id)])


api = Tether(prefix="/api", user=Depends(signed_in))
api.context("todos", rev=2, description="One owner's todos, and how many are open")


# -- the "todos" context: two slots, read together as one bundle ---------------------------


@api.query(context="todos")
async def todos(owner_id: int, done: bool | None = None) -> list[Todo]:
    found = [todo for todo in TODOS.values() if todo.owner_id == owner_id]
    return [todo for todo in found if done is None or todo.done == done]


@api.query(context="todos")
async def open_count(owner_id: int) -> int:
    return sum(1 for todo in TODOS.values() if todo.owner_id == owner_id and not todo.done)


@api.command(affects=["todos"])  # owner_id is a param of "todos": only that owner's bundle
async def add_todo(owner_id: int, title: str) -> Todo:
    todo = Todo(id=max(TODOS, default=0) + 1, owner_id=owner_id, title=title)
    TODOS[todo.id] = todo
    return todo


@api.command(affects=["todos"])
async def toggle_todo(owner_id: int, id: int) -> Todo:
    todo = TODOS.get(id)
    if todo is None or todo.owner_id != owner_id:
        raise NotFound(f"owner {owner_id} has no todo {id}")
    todo.done = not todo.done
    return todo


@api.command(affects=["todos"])  # no argument names a param of "todos": every bundle of it
async def clear_done() -> int:
    done = [id for id, todo in TODOS.items() if todo.done]
    for id in done:
        del TODOS[id]
    return len(done)


# -- the "user" context: per user, since its query depends on the user resolver -------------


@api.query(context="user", auth=True)
async def current_user(user: Annotated[Profile, Depends(signed_in)]) -> Profile:
    return user


@api.command(merge=["user"], auth=True)  # returns a Profile, as current_user does
async def rename_user(name: str, user: Annotated[Profile, Depends(signed_in)]) -> Profile:
    NAMES[user.id] = name
    return Profile(id=user.id, name=name)


app = FastAPI()
api.mount(app)
