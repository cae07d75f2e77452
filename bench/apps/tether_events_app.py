"""tether: the query `GetNote` (bench/apps/cqrs_app.py's, in tether), and a command emitting events.

`build_send_api()` binds `get_note`, a query handler without dependencies whose body is the
python-cqrs handler's. `build_events_api(broker)` binds `create_notes`, which emits
`count` `NoteCreated` events, and one `@api.on(NoteCreated)` handler counting them.
"""

from __future__ import annotations

from fastapi import Depends
from pydantic import BaseModel

from tether import Command, Event, Events, Query, Tether


class NoteOut(BaseModel):
    """The note a query returns."""

    id: int
    title: str


class GetNote(Query[NoteOut]):
    """Read one note by id."""

    id: int


async def get_note(query: GetNote) -> NoteOut:
    """Return the note (the handler body python-cqrs's `GetNoteHandler.handle` has)."""
    return NoteOut(id=query.id, title="note")


def build_send_api() -> Tether:
    """A Tether with `get_note` bound to `GetNote`."""
    api = Tether()
    api.handler(get_note)
    return api


class NoteCreated(Event):
    """A note was created."""

    note_id: int


class CreateNotes(Command[int]):
    """Create `count` notes (emits one `NoteCreated` each)."""

    count: int


def build_events_api(broker: str | None) -> tuple[Tether, list[int]]:
    """A Tether on `broker` (memory when None), and `[n]`: how many events its handler handled."""
    api = Tether(broker=broker) if broker is not None else Tether()
    handled = [0]

    @api.handler
    async def create_notes(command: CreateNotes, events: Events = Depends()) -> int:
        for note_id in range(command.count):
            events.emit(NoteCreated(note_id=note_id))
        return command.count

    @api.on(NoteCreated)
    async def count_note(event: NoteCreated) -> None:
        handled[0] += 1

    return api, handled
