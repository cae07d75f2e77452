# file: examples/docs/client_app.py
import datetime
import enum
from collections.abc import AsyncIterator
from typing import Annotated, Generic, Literal, TypeVar

import anyio
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, Field

from tether import NotFound, Tether

T = TypeVar("T")


class Priority(enum.Enum):
    LOW = "low"
    HIGH = "high"


class Note(BaseModel):
    kind: Literal["note"] = "note"
    text: str


class Link(BaseModel):
    kind: Literal["link"] = "link"
    url: str


class Todo(BaseModel):
    id: int
    owner: str
    title: str
    done: bool = False
    priority: Priority = Priority.LOW
    due: datetime.date | None = None
    attachment: Annotated[Note | Link, Field(discriminator="kind")] | None = None
    position: tuple[int, int] = (0, 0)
    labels: dict[str, int] = {}


class Page(BaseModel, Generic[T]):
    items: list[T]
    next: int | None = None


class User(BaseModel):
    name: str
    is_staff: bool = False


TODOS: dict[int, Todo] = {}  # stands in for a database
NAMES: dict[str, str] = {}  # display names, by user


def signed_in(authorization: Annotated[str | None, Header()] = None) -> User | None:
    """`Authorization: Bearer <name>`: a stand-in for real authentication; admin is staff."""
    name = (authorization or "").removeprefix("Bearer ")
    return User(name=name, is_staff=name == "admin") if name else None


Me = Annotated[User, Depends(signed_in)]
api = Tether(prefix="/api", user=Depends(signed_in))


@api.query(context="todos")
async def list_todos(done: bool | None = None) -> Page[Todo]:
    """Every todo, or the done (or open) ones."""
    return Page[Todo](items=[t for t in TODOS.values() if done is None or t.done == done])


@api.query(errors=[NotFound])
async def get_todo(id: int) -> Todo:
    if id not in TODOS:
        raise NotFound(f"no todo {id}")
    return TODOS[id]


@api.command(affects=["todos"], auth=True)
async def add_todo(
    title: str,
    me: Me,
    priority: Priority = Priority.LOW,
    attachment: Annotated[Note | Link, Field(discriminator="kind")] | None = None,
) -> Todo:
    """Add a todo; every client's `todos` is refetched."""
    todo = Todo(id=len(TODOS) + 1, owner=me.name, title=title, priority=priority)
    todo.attachment = attachment
    TODOS[todo.id] = todo
    return todo


@api.query(context="user", auth=True)
async def current_user(me: Me) -> str:
    return NAMES.get(me.name, me.name)


@api.command(merge=["user"], auth=True)  # returns a str, as current_user does
async def rename_user(display_name: str, me: Me) -> str:
    NAMES[me.name] = display_name
    return display_name


@api.query(auth="staff")
async def open_count() -> int:
    return sum(not todo.done for todo in TODOS.values())


@api.stream
async def countdown(start: int = 3) -> AsyncIterator[int]:
    for n in range(start, 0, -1):
        yield n
        await anyio.sleep(0.01)


app = FastAPI()
api.mount(app)
