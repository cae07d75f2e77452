# file: examples/docs/events_testing.py
from examples.docs.events_notes import MAILS, STORE, CreateNote, api


async def test_a_new_note_is_indexed_and_mailed() -> None:
    note = await api.send(CreateNote(title="groceries"))

    await api.events.settle()  # every event released so far has been handled

    assert STORE.index == {"groceries": note.id}
    assert len(MAILS) == 1
    assert api.events.stats.handled == 2  # index_note and mail_note, once each
