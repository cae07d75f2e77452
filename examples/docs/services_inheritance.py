# file: examples/docs/services_inheritance.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header

from tether import Forbidden, Service, Tether, command, query

GUARDS: list[str] = []
NOTES = {1: "first note"}


def require_api_key(x_api_key: Annotated[str, Header()] = "") -> None:
    GUARDS.append("api key")
    if x_api_key != "secret":
        raise Forbidden("wrong API key")


def require_admin(x_role: Annotated[str, Header()] = "") -> None:
    GUARDS.append("admin")
    if x_role != "admin":
        raise Forbidden("admins only")


def get_notes() -> dict[int, str]:
    return NOTES


class NotesBase(Service, abstract=True, guards=[require_api_key], tags=["notes"]):
    """Not included itself: the operations and settings its subclasses share."""

    notes: Annotated[dict[int, str], Depends(get_notes)]

    @query
    async def get(self, id: int) -> str:
        return self.notes[id]

    @command
    async def delete(self, id: int) -> None:
        del self.notes[id]


class Notes(NotesBase, name="notes", exclude=["delete"]):
    """Read-only: `delete` is removed."""


class AdminNotes(NotesBase, name="admin_notes", guards=[require_admin], tags=["admin"]):
    """Guards are appended: the API key is checked first, then the role."""

    async def get(self, id: int) -> str:  # an undecorated override keeps the operation
        return self.notes[id].upper()


class InternalNotes(NotesBase, name="internal_notes", guards=[], replace_guards=True):
    """replace_guards=True drops the inherited guards (here: all of them)."""


api = Tether(prefix="/api")
api.include(Notes, AdminNotes, InternalNotes)  # siblings of one base, side by side

app = FastAPI()
api.mount(app)
