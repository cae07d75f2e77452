# file: examples/docs/events_notes.py
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from tether import Command, Event, Events, NotFound, Query, Tether


class Note(BaseModel):
    id: int
    title: str


class CreateNote(Command[Note]):  # the type parameter is what its handler returns
    title: str


class GetNote(Query[Note]):
    id: int


class NoteCreated(Event):  # has event_id and occurred_at, plus its own fields
    note_id: int
    title: str


class Store:
    """Stands in for a database."""

    def __init__(self) -> None:
        self.notes: dict[int, Note] = {}
        self.index: dict[str, int] = {}  # a search index, kept by an event handler


STORE = Store()
MAILS: list[str] = []


def get_store() -> Store:
    return STORE


api = Tether(prefix="/api")


@api.handler  # an operation named create_note; its input is CreateNote's fields
async def create_note(
    cmd: CreateNote,
    store: Annotated[Store, Depends(get_store)],
    events: Events = Depends(),
) -> Note:
    note = Note(id=len(store.notes) + 1, title=cmd.title)
    store.notes[note.id] = note
    events.emit(NoteCreated(note_id=note.id, title=note.title))  # released if this succeeds
    return note


@api.handler
async def get_note(query: GetNote, store: Annotated[Store, Depends(get_store)]) -> Note:
    if query.id not in store.notes:
        raise NotFound(f"no note {query.id}", details={"id": query.id})
    return store.notes[query.id]


@api.on(NoteCreated)  # handlers take dependencies too
async def index_note(event: NoteCreated, store: Annotated[Store, Depends(get_store)]) -> None:
    store.index[event.title] = event.note_id


@api.on(NoteCreated, group="mail")  # another group: it gets every NoteCreated as well
def mail_note(event: NoteCreated) -> None:  # sync: runs in the thread pool
    MAILS.append(f"note {event.note_id} created at {event.occurred_at:%H:%M}")


app = FastAPI()
api.mount(app)


async def create_and_read(title: str) -> Note:
    """In-process: `api.send` runs the handler through the invoker, typed by the message."""
    note = await api.send(CreateNote(title=title))  # mypy: Note
    return await api.send(GetNote(id=note.id))
