# file: examples/docs/schema_types.py
import datetime
import enum
import uuid
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import FastAPI
from pydantic import BaseModel, Field

from tether import Tether

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
    """One thing to do."""

    id: uuid.UUID
    title: str = Field(description="What to do.")
    due: datetime.date | None = None
    created_at: datetime.datetime
    priority: Priority = Priority.LOW
    owner_id: int = Field(alias="ownerId")
    attachment: Annotated[Note | Link, Field(discriminator="kind")]
    position: tuple[float, float]
    labels: dict[str, int] = {}


class Page(BaseModel, Generic[T]):
    items: list[T]
    next: str | None = None


api = Tether(prefix="/api")


@api.query(context="todos")
async def todos(owner_id: int, cursor: str | None = None) -> Page[Todo]:
    """List one owner's todos, a page at a time."""
    return Page[Todo](items=[])


@api.command(affects=["todos"])
async def add_todo(owner_id: int, title: str) -> Todo:
    """Add a todo; its owner's `todos` context is refetched."""
    raise NotImplementedError


app = FastAPI(title="todos", version="1.0")
api.mount(app)
