"""An app with every kind of type the generator renders, for the tsc checks (test_tsc.py).

Every shape here is used by tests/codegen/ts/usage.ts (correct uses) or mistakes.ts (each
mistake must fail with the expected code).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Generic, Literal, NotRequired, TypeVar

from fastapi import FastAPI
from pydantic import BaseModel, Field, computed_field
from typing_extensions import TypeAliasType, TypedDict

from tether import Conflict, Service, Tether, TetherError, command, query

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


class Teapot(TetherError):
    """A custom error: its code, status and JSON-RPC code reach the client's table."""

    code = "TEAPOT"
    status = 418
    jsonrpc_code = -32418


class Color(enum.Enum):
    """A string enum."""

    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Circle(BaseModel):
    kind: Literal["circle"] = "circle"
    radius: float


class Square(BaseModel):
    kind: Literal["square"] = "square"
    side: float


Shape = Annotated[Circle | Square, Field(discriminator="kind")]


class Page(BaseModel, Generic[T]):
    """A page of items."""

    items: list[T]
    next: str | None = None


class Pair(BaseModel, Generic[K, V]):
    key: K
    value: V


class Tree(BaseModel):
    """A model that holds itself."""

    name: str
    children: list[Tree] = []


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Limits(TypedDict):
    low: int
    high: int
    step: NotRequired[int]  # absent from the output unless set


Tags = TypeAliasType("Tags", list[str])


class Date(BaseModel):
    """A user type named like a global: renamed `Date_`."""

    day: datetime.date


class DateTime(BaseModel):
    """A user type named like a format alias: the alias yields (`DateTime_`)."""

    iso: str


class Item(BaseModel):
    """An item with every field type."""

    id: uuid.UUID
    title: str = Field(description="Shown in lists.")
    note: str | None = None
    color: Color = Color.RED
    level: Level = Level.LOW
    mode: Literal["a", "b", 3, True] = "a"
    position: tuple[float, float]
    empty: tuple[()] = ()
    labels: dict[str, int] = {}
    tags: Tags = []
    shape: Shape
    shapes: list[Shape] = []
    price: decimal.Decimal
    created_at: datetime.datetime
    due: datetime.date | None = None
    at: datetime.time | None = None
    every: datetime.timedelta | None = None
    owner_id: int = Field(alias="ownerId")
    content_type: str = Field(default="text/plain", alias="content-type")
    nick: str = Field(default="", serialization_alias="nickName")
    point: Point | None = None
    limits: Limits | None = None
    extra: object = None
    stamp: Date | None = None
    iso: DateTime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> str:
        """The title and color."""
        return f"{self.title} ({self.color.value})"


class Plain(BaseModel):
    """A model whose input and output shapes agree: no `Plain.Input`."""

    a: int
    b: list[str]


api = Tether(prefix="/api")


@query(context="items")
async def list_items(owner_id: int, color: Color | None = None, limit: int = 10) -> Page[Item]:
    """List one owner's items, a page at a time."""
    return Page[Item](items=[])


@query(context="items")
async def item_count(owner_id: int) -> int:
    return 0


@query(errors=[Teapot])
async def get_pair(key: str) -> Pair[str, Tree]:
    raise Teapot()


@query
async def stats() -> dict[str, int]:
    return {}


@query(context="stats")
async def stats_summary() -> Plain:
    return Plain(a=1, b=[])


@command(affects=["items"], errors=[Conflict])
async def add_item(item: Item, tags: Tags = [], where: Point | None = None) -> Item:  # noqa: B006
    """Add an item.

    Its owner's `items` context is refetched.
    """
    return item


@command(deprecated=True)
async def old_add(title: str) -> None:
    return None


@command
async def client(plain: Plain, limits: Limits, when: datetime.datetime) -> tuple[int, str]:
    """An operation whose camelCase name is a member of the Api object: it becomes `client_`."""
    return (1, "one")


@command
async def shapes(shape: Shape, pairs: list[Pair[int, Shape]]) -> list[Shape]:
    return [shape]


@command
async def put_page(page: Page[Circle], pairs: dict[str, Pair[Level, Point]] | None = None) -> int:
    """A generic model sent: `Page.Input<Circle.Input>`."""
    return len(page.items)


@api.stream
async def ticks(every_ms: int = 1000) -> AsyncIterator[Circle | Square | None]:
    yield None


class Math(Service, name="math"):
    @query
    async def sum(self, numbers: list[float]) -> float:
        return sum(numbers)

    @query(context="math")
    async def pi(self) -> decimal.Decimal:
        return decimal.Decimal("3.14")


api.include(list_items, item_count, get_pair, stats, stats_summary, add_item, old_add, client)
api.include(shapes, put_page, Math)

app = FastAPI(title="fidelity", version="1.0")
api.mount(app)
