# file: examples/docs/dependencies_2.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException

from tether import Tether

CALLS: list[str] = []


async def require_api_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Runs before every operation of the Tether below."""
    if x_api_key != "secret":
        raise HTTPException(status_code=401, detail="Missing or wrong API key")


def get_settings() -> dict[str, str]:
    CALLS.append("get_settings")
    return {"greeting": "Hello"}


Settings = Annotated[dict[str, str], Depends(get_settings)]


def get_greeter(settings: Settings) -> str:
    return settings["greeting"]


api = Tether(prefix="/api", dependencies=[Depends(require_api_key)])


@api.query
async def greet(
    name: str, settings: Settings, greeting: Annotated[str, Depends(get_greeter)]
) -> str:
    """Both parameters use get_settings; it runs once per call."""
    return f"{greeting}, {name}!"


app = FastAPI()
api.mount(app)
