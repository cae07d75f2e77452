"""The conformance app: one fixed set of operations that every transport is tested against.

Run it with `uvicorn examples.conformance.app:app`. Tether is mounted at `/api`.

Users come from the `Authorization` header: `Bearer alice` is a staff user, `Bearer bob`
is a plain user, and anything else (or nothing) is unauthenticated.

Later transports (JSON-RPC, WebSocket, SSE) and features extend `create_api()`; the names
and behaviours below are fixed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, Field

from tether import Service, Tether, query
from tether.errors import BUILTIN_ERRORS, error_for_code

__all__ = (
    "USERS",
    "Echo",
    "Math",
    "Stats",
    "Sum",
    "User",
    "app",
    "create_api",
    "create_app",
    "current_user",
)

PREFIX = "/api"

ErrorCode = Literal[tuple(error.code for error in BUILTIN_ERRORS)]  # type: ignore[valid-type]
"""The string code of every built-in error: what `fail` accepts, listed in its schema."""

LONGEST_MS = 60_000
"""The longest sleep `slow` and `ticks` take, in milliseconds."""

MOST_TICKS = 1_000_000
"""The most items `ticks` streams."""


class User(BaseModel):
    """The caller, as `whoami` returns it."""

    name: str
    is_staff: bool = False


class Echo(BaseModel):
    """What `echo` returns: the text it was given."""

    text: str


class Stats(BaseModel):
    """What `admin_stats` returns: counts about the app."""

    operations: int
    users: int


USERS: dict[str, User] = {
    "alice": User(name="alice", is_staff=True),
    "bob": User(name="bob", is_staff=False),
}
"""The known users, by bearer token."""


async def current_user(authorization: Annotated[str | None, Header()] = None) -> User | None:
    """Resolve `Authorization: Bearer <name>` to a known user; None for anything else."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return USERS.get(token.strip())


def create_api(*, strict: bool = False) -> Tether:
    """Build a fresh Tether carrying every conformance operation (`strict`: strict inputs)."""
    api = Tether(prefix=PREFIX, user=Depends(current_user), strict=strict)

    @api.query
    async def add(a: int, b: int) -> int:
        """Return a + b."""
        return a + b

    @api.query
    async def subtract(minuend: int, subtrahend: int) -> int:
        """Return minuend - subtrahend (the JSON-RPC specification's example method)."""
        return minuend - subtrahend

    @api.query(name="sum")
    async def sum_(a: int, b: int, c: int = 0) -> int:
        """Return a + b + c."""
        return a + b + c

    @api.query
    async def get_data() -> list[Any]:
        """Return `["hello", 5]`, as in the JSON-RPC specification's examples."""
        return ["hello", 5]

    @api.command
    async def notify_hello(n: int) -> None:
        """Do nothing; used as a notification."""

    @api.command
    async def notify_sum(a: int, b: int, c: int = 0) -> None:
        """Do nothing with three numbers; used as a notification."""

    @api.command
    async def update(a: int, b: int, c: int, d: int, e: int) -> None:
        """Do nothing with five numbers; used as a notification."""

    @api.query
    async def echo(text: str) -> Echo:
        """Return the text, wrapped in the `Echo` model."""
        return Echo(text=text)

    @api.query
    async def slow(ms: Annotated[int, Field(ge=0, le=LONGEST_MS)]) -> int:
        """Sleep `ms` milliseconds, then return `ms`."""
        await anyio.sleep(ms / 1000)
        return ms

    @api.command(errors=BUILTIN_ERRORS)
    async def fail(code: ErrorCode) -> None:
        """Raise the built-in error whose string code is `code` (any other code is a 422)."""
        error = error_for_code(code)
        assert error is not None, code  # the input admits built-in codes only
        raise error(f"fail({code!r})")

    @api.query(auth=True)
    async def whoami(user: Annotated[User, Depends(current_user)]) -> User:
        """Return the authenticated caller."""
        return user

    @api.query(auth="staff")
    async def admin_stats() -> Stats:
        """Return counts about the app; staff only."""
        return Stats(operations=len(api), users=len(USERS))

    @api.stream
    async def ticks(
        n: Annotated[int, Field(ge=0, le=MOST_TICKS)],
        ms: Annotated[int, Field(ge=0, le=LONGEST_MS)] = 0,
    ) -> AsyncIterator[int]:
        """Stream 1..n, sleeping `ms` milliseconds before each item after the first."""
        for i in range(1, n + 1):
            if ms and i > 1:
                await anyio.sleep(ms / 1000)
            yield i

    api.include(Math)
    return api


class Sum(BaseModel):
    """What `math.sum` returns."""

    sum: int


class Math(Service, name="math"):
    """A group of operations: `math.sum`, reachable over a socket as route `math/sum`."""

    @query
    async def sum(self, values: list[int]) -> Sum:
        """Return the sum of `values`."""
        return Sum(sum=sum(values))


def create_app(*, strict: bool = False) -> FastAPI:
    """Build the conformance FastAPI app, with a fresh Tether mounted at `/api`."""
    app = FastAPI(title="tether conformance")
    create_api(strict=strict).mount(app)
    return app


app = create_app()
