# file: examples/docs/quickstart_4.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel, Field

from tether import NotFound, Tether


class Note(BaseModel):
    id: int
    text: str
    author: str


class User(BaseModel):
    name: str


NOTES: dict[int, Note] = {}


async def current_user(x_user: Annotated[str | None, Header()] = None) -> User | None:
    """Who is calling: here, simply the `X-User` header (None when absent)."""
    return User(name=x_user) if x_user else None


api = Tether(prefix="/api", user=Depends(current_user))


@api.query
async def list_notes(author: str | None = None) -> list[Note]:
    """List every note, optionally only one author's."""
    return [n for n in NOTES.values() if author is None or n.author == author]


@api.query
async def get_note(id: int) -> Note:
    """Fetch one note."""
    if id not in NOTES:
        raise NotFound(f"No note {id}", details={"id": id})
    return NOTES[id]


@api.command(auth=True)
async def add_note(
    text: Annotated[str, Field(min_length=1, max_length=500)],
    user: Annotated[User, Depends(current_user)],
) -> Note:
    """Add a note written by the caller."""
    note = Note(id=len(NOTES) + 1, text=text, author=user.name)
    NOTES[note.id] = note
    return note


app = FastAPI(title="notes")
api.mount(app)
