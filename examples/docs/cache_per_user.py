# file: examples/docs/cache_per_user.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import LiveSettings, Tether


class Member(BaseModel):
    email: str
    team: str


MEMBERS = {"k-ada": Member(email="ada@example.com", team="core")}
DRAFTS: dict[str, list[str]] = {}


def member(x_api_key: Annotated[str | None, Header()] = None) -> Member | None:
    return MEMBERS.get(x_api_key or "")


def draft_owner(x_api_key: Annotated[str | None, Header()] = None) -> str:
    """Reads the caller without the user resolver: tether cannot infer per_user."""
    found = MEMBERS.get(x_api_key or "")
    return found.email if found else "nobody"


api = Tether(
    prefix="/api",
    user=Depends(member),
    user_key=lambda user: user.email if user is not None else None,  # who is who, for pushes
    live=LiveSettings(subscriber_queue=64, max_topics=8),
)
api.context("drafts", per_user=True)  # declared: its query does not use the user resolver


@api.query(context="drafts", auth=True)
async def drafts(owner: Annotated[str, Depends(draft_owner)]) -> list[str]:
    return DRAFTS.get(owner, [])


@api.command(affects=["drafts"], auth=True)
async def save_draft(text: str, owner: Annotated[str, Depends(draft_owner)]) -> None:
    DRAFTS.setdefault(owner, []).append(text)


app = FastAPI()
api.mount(app)
