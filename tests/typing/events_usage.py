"""A module that uses commands, queries and events the way an application does; `mypy --strict` must accept it.

tests/typing/test_mypy.py type-checks this file and reads its `reveal_type` notes; it
also runs `main()` so that the code is not only well-typed but works.
"""

from typing import reveal_type

from fastapi import Depends
from pydantic import BaseModel

from tether import Tether
from tether.events import Command, Event, Events, Query


class NoteOut(BaseModel):
    id: int
    title: str


class CreateNote(Command[NoteOut]):
    title: str


class ListNotes(Query[list[NoteOut]]):
    prefix: str = ""


class NoteCreated(Event):
    note_id: int


api = Tether()
NOTES: dict[int, NoteOut] = {}
INDEXED: list[int] = []


@api.handler
async def create_note(cmd: CreateNote, events: Events = Depends()) -> NoteOut:
    note = NoteOut(id=len(NOTES) + 1, title=cmd.title)
    NOTES[note.id] = note
    events.emit(NoteCreated(note_id=note.id))
    return note


@api.handler
def list_notes(query: ListNotes) -> list[NoteOut]:
    return [note for note in NOTES.values() if note.title.startswith(query.prefix)]


@api.on(NoteCreated)
async def index(event: NoteCreated) -> None:
    INDEXED.append(event.note_id)


async def main() -> tuple[NoteOut, list[NoteOut], list[int]]:
    NOTES.clear()
    INDEXED.clear()
    note = await api.send(CreateNote(title="x"))
    reveal_type(note)
    found = await api.send(ListNotes(prefix="x"))
    reveal_type(found)
    reveal_type(note.title)
    reveal_type(await api.send(CreateNote(title="y")))
    await api.events.settle()
    return note, found, sorted(INDEXED)
