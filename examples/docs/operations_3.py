# file: examples/docs/operations_3.py
from fastapi import FastAPI

from tether import Tether, command, query


# Markers only: nothing is registered until a Tether includes the function.
@query
async def ping() -> str:
    """Answer "pong"."""
    return "pong"


@command(name="counter.bump")
async def bump(by: int = 1) -> int:
    """Add `by` to a counter and return it."""
    return by


def create_app() -> FastAPI:
    api = Tether(prefix="/api")
    api.include(ping, bump)

    @api.operation(kind="query", name="version")
    async def version() -> str:
        """The same as @api.query, with the kind given explicitly."""
        return "1.0"

    app = FastAPI()
    api.mount(app)
    return app


app = create_app()
