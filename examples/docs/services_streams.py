# file: examples/docs/services_streams.py
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI

from tether import Service, Tether, stream


class Cursor:
    """Stands in for a database cursor: open while the stream runs."""

    def __init__(self) -> None:
        self.open = True

    def rows(self, limit: int) -> list[str]:
        return [f"row {n}" for n in range(limit)]


CURSORS: list[Cursor] = []


async def get_cursor() -> AsyncIterator[Cursor]:
    cursor = Cursor()
    CURSORS.append(cursor)
    try:
        yield cursor
    finally:
        cursor.open = False


class Exports(Service, name="exports"):
    cursor: Annotated[Cursor, Depends(get_cursor)]

    @stream
    async def rows(self, limit: int) -> AsyncIterator[str]:
        for row in self.cursor.rows(limit):
            yield row  # the instance and its cursor live until the stream ends


api = Tether(prefix="/api")
api.include(Exports)

app = FastAPI()
api.mount(app)


async def main() -> list[str]:
    return [row async for row in api.stream_call("exports.rows", {"limit": 3})]
