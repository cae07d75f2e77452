# file: examples/docs/testing_1.py
from fastapi import FastAPI

from tether import BadRequest, Tether


def create_api() -> Tether:
    """A factory: each test gets its own operations and state."""
    api = Tether(prefix="/api")

    @api.query
    async def divide(a: float, b: float) -> float:
        """Divide a by b."""
        if b == 0:
            raise BadRequest("Cannot divide by zero", details={"b": b})
        return a / b

    return api


def create_app(api: Tether | None = None) -> FastAPI:
    app = FastAPI()
    (api or create_api()).mount(app)
    return app
