"""Messages: typed commands and queries sent to one handler, and events published to many.

`Command[R]` and `Query[R]` are pydantic models whose type parameter is their handler's
result: `await api.send(CreateNote(title="x"))` is typed `R`. An `Event` is a pydantic
model with an `event_id` and an `occurred_at`, emitted by a call and handled after it
succeeded, by any number of handlers, in this process or, through a broker, in others.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigurationError

__all__ = ("Command", "Event", "EventEnvelope", "Message", "Query", "R", "message_result")

R = TypeVar("R")
"""The result type of a command or query: what its handler returns, and `api.send` too."""


class Message(BaseModel):
    """Base of commands and queries: a message with exactly one handler, whose fields are its input."""

    model_config = ConfigDict(extra="forbid")


class Command(Message, Generic[R]):
    """A message that changes state; `Command[R]` is handled by one `@api.handler` returning `R`."""


class Query(Message, Generic[R]):
    """A message that reads; `Query[R]` is handled by one `@api.handler` returning `R`."""


def message_result(message_type: type[Message]) -> Any:
    """Return the `R` a message class declared (`Command[NoteOut]` -> NoteOut), or None if open."""
    for cls in message_type.__mro__:
        metadata = getattr(cls, "__pydantic_generic_metadata__", None)
        if metadata and metadata.get("origin") in (Command, Query) and metadata.get("args"):
            return metadata["args"][0]
    return None


def _now() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Something that happened: emitted by a call, released only when the call succeeds.

    Subclasses add fields. `event_id` identifies one occurrence everywhere (handlers see
    each id once in durable mode); `occurred_at` is when it was made, in UTC. The class
    keyword `name=` sets the event's type name on the wire (default: the class name), and
    `durable=` whether it goes through the outbox (default: as the Tether says).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str] = "Event"
    """The event's type name on the wire (set by the class keyword `name=`)."""
    durable: ClassVar[bool | None] = None
    """Through the outbox (True), never (False), or as the Tether says (None)."""

    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    occurred_at: datetime = Field(default_factory=_now)

    def __init_subclass__(
        cls, *, name: str | None = None, durable: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None and not (isinstance(name, str) and name):
            raise ConfigurationError(f"{cls.__qualname__}: name= takes a non-empty string")
        cls.event_type = name or cls.__name__
        if durable is not None:
            cls.durable = durable


class EventEnvelope:
    """An event on its way through a broker: the event and its causal chain (event type names).

    The chain lists the types of the events whose handlers led to this one, oldest first,
    so that handlers emitting events in turn are stopped at a cycle or past a depth.
    """

    __slots__ = ("chain", "event")

    def __init__(self, event: Event, chain: tuple[str, ...] = ()) -> None:
        self.event = event
        """The event."""
        self.chain = chain
        """Type names of the events that caused this one, oldest first."""

    def encode(self) -> bytes:
        """Return the envelope as JSON bytes: `{"type", "chain", "event"}`."""
        return orjson.dumps(
            {
                "type": type(self.event).event_type,
                "chain": list(self.chain),
                "event": self.event.model_dump(mode="json"),
            }
        )

    @staticmethod
    def peek(data: bytes) -> Mapping[str, Any]:
        """Parse the JSON of an envelope without validating the event (raises ValueError)."""
        parsed = orjson.loads(data)
        if (
            not isinstance(parsed, dict)
            or not isinstance(parsed.get("type"), str)
            or not isinstance(parsed.get("event"), dict)
            or not isinstance(parsed.get("chain", []), list)
        ):
            raise ValueError("not an event envelope: expected {type, chain, event}")
        return parsed
