"""Operations declared in a module with postponed annotations (PEP 563)."""

from __future__ import annotations

from typing import Annotated

from fastapi import BackgroundTasks, Depends, Header, Request, Response
from pydantic import BaseModel, Field

from tether import command, query


class Item(BaseModel):
    name: str
    price: float = 0.0


def get_prefix(x_prefix: Annotated[str, Header()] = "item") -> str:
    return x_prefix


@query
async def describe(
    item: Item,
    count: Annotated[int, Field(ge=1, le=3)] = 1,
    prefix: str = Depends(get_prefix),
) -> str:
    """Describe an item, with a prefix taken from a header."""
    return f"{prefix}:{item.name}x{count}"


@command(name="future.touch")
def touch(
    names: list[str],
    request: Request,
    response: Response,
    tasks: BackgroundTasks,
    agent: Annotated[str | None, Header(alias="user-agent")] = None,
) -> Item:
    """Return a model built from list input, using every special dependency type."""
    response.headers["x-touched"] = str(len(names))
    return Item(name=",".join(names) + f"@{request.url.path}", price=float(agent is not None))


@query
def unresolvable(value: NoSuchType) -> int:  # type: ignore[name-defined]  # noqa: F821
    return 0
