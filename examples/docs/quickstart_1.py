# file: examples/docs/quickstart_1.py
from collections.abc import AsyncIterator

from fastapi import FastAPI

from tether import Tether

api = Tether(prefix="/api")


@api.query
async def greet(name: str) -> str:
    """Say hello to `name`."""
    return f"Hello, {name}!"


@api.stream
async def countdown(start: int) -> AsyncIterator[int]:
    """Count down from `start` to 1, one item at a time."""
    for n in range(start, 0, -1):
        yield n


app = FastAPI()
api.mount(app)
