"""Messages: `Command[R]`, `Query[R]`, `Event`, and the envelope an event travels in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from tether.errors import ConfigurationError
from tether.events import Command, Event, Message, Query
from tether.events.messages import EventEnvelope, message_result


class NoteOut(BaseModel):
    id: int
    title: str


class CreateNote(Command[NoteOut]):
    title: str


class GetNote(Query[NoteOut]):
    id: int


class NoteCreated(Event):
    note_id: int


class Renamed(Event, name="notes.renamed"):
    note_id: int


class Audited(Event, durable=True):
    who: str


class Ephemeral(Event, durable=False):
    pass


# -- commands and queries -----------------------------------------------------------------


def test_commands_and_queries_are_messages_and_refuse_unknown_fields() -> None:
    assert issubclass(CreateNote, Message)
    assert issubclass(GetNote, Message)
    assert CreateNote(title="x").title == "x"
    with pytest.raises(ValidationError) as caught:
        CreateNote(title="x", colour="red")  # type: ignore[call-arg]
    assert caught.value.errors()[0]["type"] == "extra_forbidden"
    assert caught.value.errors()[0]["loc"] == ("colour",)
    with pytest.raises(ValidationError):
        GetNote.model_validate({"id": 1, "extra": True})


def test_message_result_reads_the_type_parameter() -> None:
    assert message_result(CreateNote) is NoteOut
    assert message_result(GetNote) is NoteOut

    class Listed(Query[list[int]]):
        pass

    class Sub(CreateNote):  # a subclass keeps its parent's result
        pass

    assert message_result(Listed) == list[int]
    assert message_result(Sub) is NoteOut


# -- events -------------------------------------------------------------------------------


def test_an_event_has_a_fresh_id_and_a_utc_time() -> None:
    before = datetime.now(UTC)
    first = NoteCreated(note_id=1)
    second = NoteCreated(note_id=1)
    after = datetime.now(UTC)
    assert isinstance(first.event_id, uuid.UUID)
    assert first.event_id != second.event_id
    assert first.occurred_at.tzinfo is not None
    assert first.occurred_at.utcoffset() == timedelta(0)
    assert before <= first.occurred_at <= after


def test_an_event_is_frozen() -> None:
    event = NoteCreated(note_id=1)
    with pytest.raises(ValidationError):
        event.note_id = 2  # type: ignore[misc]
    assert hash(event) == hash(event)  # frozen models are hashable


def test_an_event_keeps_given_id_and_time() -> None:
    event_id = uuid.uuid4()
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = NoteCreated(note_id=1, event_id=event_id, occurred_at=at)
    assert (event.event_id, event.occurred_at) == (event_id, at)


def test_type_names_default_to_the_class_name_and_name_sets_them() -> None:
    assert NoteCreated.event_type == "NoteCreated"
    assert Renamed.event_type == "notes.renamed"

    class Child(Renamed):  # a subclass gets its own name, not its parent's
        pass

    assert Child.event_type == "Child"


@pytest.mark.parametrize("bad", ["", 3])
def test_a_bad_name_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="name= takes a non-empty string"):

        class Bad(Event, name=bad):
            pass


def test_durable_is_a_class_keyword_and_is_inherited() -> None:
    assert NoteCreated.durable is None
    assert Audited.durable is True
    assert Ephemeral.durable is False

    class MoreAudited(Audited):
        pass

    assert MoreAudited.durable is True


# -- the envelope ---------------------------------------------------------------------------


def test_an_envelope_encodes_type_chain_and_event_as_json() -> None:
    event = Renamed(note_id=7)
    data = EventEnvelope(event, ("NoteCreated",)).encode()
    parsed = orjson.loads(data)
    assert parsed == {
        "type": "notes.renamed",
        "chain": ["NoteCreated"],
        "event": {
            "event_id": str(event.event_id),
            "occurred_at": parsed["event"]["occurred_at"],
            "note_id": 7,
        },
    }
    peeked = EventEnvelope.peek(data)
    assert peeked["type"] == "notes.renamed"
    assert Renamed.model_validate(peeked["event"]) == event


def test_an_envelope_without_chain_is_accepted() -> None:
    event = NoteCreated(note_id=1)
    data = orjson.dumps({"type": "NoteCreated", "event": event.model_dump(mode="json")})
    assert EventEnvelope.peek(data)["type"] == "NoteCreated"
    assert EventEnvelope(event).chain == ()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'"text"',
        b'{"event": {}}',
        b'{"type": 1, "event": {}}',
        b'{"type": "NoteCreated"}',
        b'{"type": "NoteCreated", "event": []}',
        b'{"type": "NoteCreated", "event": {}, "chain": "A"}',
    ],
)
def test_a_bad_envelope_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (orjson's JSONDecodeError is a ValueError too)
        EventEnvelope.peek(data)


def test_unknown_fields_of_an_event_are_ignored() -> None:
    # A newer process may add fields: an older one still reads the event.
    event = NoteCreated.model_validate({"note_id": 1, "added_later": True})
    assert event.note_id == 1
    assert not hasattr(event, "added_later")
