# file: examples/docs/streams_1.py
from collections.abc import AsyncIterator, Iterator

import anyio
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from tether import Tether

api = Tether(prefix="/api")
LOG: list[str] = []


class Progress(BaseModel):
    done: int
    total: int


async def open_cursor() -> AsyncIterator[str]:
    """A yield dependency: open while the stream runs, closed when it stops."""
    LOG.append("cursor opened")
    try:
        yield "cursor"
    except Exception as exc:
        LOG.append(f"cursor saw {type(exc).__name__}")  # a failure, or the client leaving
        raise
    finally:
        LOG.append("cursor closed")


@api.stream
async def ticks(n: int, ms: int = 0) -> AsyncIterator[int]:
    """Count from 1 to n, `ms` milliseconds apart."""
    for i in range(1, n + 1):
        if ms:
            await anyio.sleep(ms / 1000)
        yield i


@api.stream
async def export(
    total: int, ms: int = 0, cursor: str = Depends(open_cursor)
) -> AsyncIterator[Progress]:
    """Items are encoded like a response model: here each one is a Progress object."""
    for done in range(1, total + 1):
        await anyio.sleep(ms / 1000)  # stands for fetching the next rows with the cursor
        yield Progress(done=done, total=total)


@api.stream
def lines(text: str) -> Iterator[str]:
    """A sync generator: each item is produced in the thread pool."""
    yield from text.splitlines()


app = FastAPI()
api.mount(app)
