"""The app the TypeScript runtime's vitest tests call over a real uvicorn server (prefix `/api`).

- `echo`, `slow`, `fail`, `whoami`: plain calls (results, delays for aborts, typed errors, headers);
- the context `notes(owner)`: slots `notes` and `title`; `add_note` invalidates it, `set_title`
  merges into `title`; `note_log` answers every note added, in order (the live tests compare);
- the per-user context `secret` (auth): a live subscription without `x-user` is refused (401);
- streams `ticks(n, ms)`, `ticks_then_fail(n)`, and `forever(ms)` whose cancellation
  `stream_state()` reports (a client leaving early must stop the server's generator).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import Tether, TetherError
from tether.errors import NotFound
from tether.transports import HttpTransport, JsonRpcTransport
from tether.transports.sse import SseTransport
from tether.transports.websocket import WebSocketTransport


class User(BaseModel):
    """A signed-in caller (from the `x-user` header)."""

    name: str


class OutOfStock(TetherError):
    """An app error with its own code, status and details."""

    code = "OUT_OF_STOCK"
    status = 409
    jsonrpc_code = 1001
    message = "Out of stock"


def current_user(x_user: Annotated[str | None, Header()] = None) -> User | None:
    """The caller named by `x-user`, if any."""
    return User(name=x_user) if x_user else None


api = Tether(prefix="/api", user=Depends(current_user))
NOTES: dict[str, list[str]] = {}
TITLES: dict[str, str] = {}
LOG: list[str] = []
STREAMS = {"started": 0, "cancelled": 0, "finished": 0}


@api.query
async def echo(value: int) -> int:
    """`value`, back."""
    return value


@api.query
async def slow(ms: int) -> int:
    """`ms`, after sleeping that long."""
    await anyio.sleep(ms / 1000)
    return ms


@api.command(errors=[OutOfStock, NotFound])
async def fail(kind: str) -> str:
    """Raise the error named by `kind` ("stock", "missing"); anything else succeeds."""
    if kind == "stock":
        raise OutOfStock(details={"sku": "widget", "available": 0})
    if kind == "missing":
        raise NotFound("no such thing", details={"kind": kind})
    return kind


@api.query
async def whoami(user: Annotated[User | None, Depends(current_user)]) -> str:
    """The caller's name from the `x-user` header ("anonymous" without it)."""
    return "anonymous" if user is None else user.name


@api.query(context="notes")
async def notes(owner: str) -> list[str]:
    """The notes of `owner`."""
    return NOTES.get(owner, [])


@api.query(context="notes")
async def title(owner: str) -> str:
    """The title of `owner`'s notes."""
    return TITLES.get(owner, "")


@api.command(affects=["notes"])
async def add_note(owner: str, text: str) -> int:
    """Add a note for `owner` (invalidates that owner's `notes`); answers how many they have."""
    NOTES.setdefault(owner, []).append(text)
    LOG.append(f"{owner}:{text}")
    return len(NOTES[owner])


@api.command(merge=["notes"])
async def set_title(owner: str, title: str) -> str:
    """Set `owner`'s title (merged into the `title` slot of `notes`)."""
    TITLES[owner] = title
    return title


@api.query
async def note_log() -> list[str]:
    """Every note added since the server started, as `owner:text`, in order."""
    return LOG


@api.query(context="secret", auth=True)
async def secret(user: Annotated[User | None, Depends(current_user)]) -> str:
    """A signed-in user's secret (a subscription without a user is refused)."""
    return f"secret of {user.name if user else '?'}"


@api.stream
async def ticks(n: int, ms: int = 0) -> AsyncIterator[int]:
    """1, 2, ... n, one every `ms` milliseconds."""
    for i in range(1, n + 1):
        if ms:
            await anyio.sleep(ms / 1000)
        yield i


@api.stream(errors=[NotFound])
async def ticks_then_fail(n: int) -> AsyncIterator[int]:
    """1 .. n, then NOT_FOUND."""
    for i in range(1, n + 1):
        yield i
    raise NotFound("no more ticks", details={"after": n})


@api.stream
async def forever(ms: int = 10) -> AsyncIterator[int]:
    """1, 2, ... until the client leaves (counted in `stream_state`)."""
    STREAMS["started"] += 1
    i = 0
    try:
        while True:
            i += 1
            yield i
            await anyio.sleep(ms / 1000)
    except BaseException:
        STREAMS["cancelled"] += 1
        raise
    finally:
        STREAMS["finished"] += 1


@api.query
async def stream_state() -> dict[str, int]:
    """How many `forever` streams started, were cancelled and finished."""
    return dict(STREAMS)


app = FastAPI()
# A short SSE heartbeat: the server notices soon a client that left (live streams have no task).
api.mount(
    app,
    transports=[
        HttpTransport(),
        JsonRpcTransport(),
        SseTransport(heartbeat=0.5),
        WebSocketTransport(),
    ],
)
