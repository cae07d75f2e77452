# file: examples/docs/dependencies_5.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException

from tether import Tether

CHECKS: list[str | None] = []


async def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    """The app's own gate: every route of the app, and every tether operation."""
    CHECKS.append(x_api_key)
    if x_api_key != "secret":
        raise HTTPException(status_code=401, detail="Missing or wrong API key")


app = FastAPI(dependencies=[Depends(require_key)])


@app.get("/health")
async def health() -> str:
    return "ok"


api = Tether(prefix="/api")


@api.query
async def greet(name: str) -> str:
    return f"Hello, {name}!"


# mount reads the app's dependencies: greet is guarded on every transport, and so is any
# operation registered later.
api.mount(app)
