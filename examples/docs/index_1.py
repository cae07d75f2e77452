# file: examples/docs/index_1.py
from fastapi import FastAPI

from tether import NotFound, Tether

api = Tether(prefix="/api")
TODOS = {1: "write docs"}


@api.query
async def get_todo(id: int) -> str:
    """Fetch one todo's title."""
    if id not in TODOS:
        raise NotFound("no such todo", details={"id": id})
    return TODOS[id]


@api.command
def add_todo(title: str) -> int:  # sync functions run in the thread pool
    TODOS[len(TODOS) + 1] = title
    return len(TODOS)


app = FastAPI()
api.mount(app)
