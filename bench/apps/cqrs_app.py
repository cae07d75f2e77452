"""python-cqrs: the query `GetNote` and its handler, behind a mediator built the way its docs build one.

`bootstrap.bootstrap(di_container=di.Container(), queries_mapper=...)` as in python-cqrs's
Quick Start: a request map binding the query to its handler class, the `di` container that
resolves the handler on every `send`, and the logging middleware `bootstrap` adds. Two
flavours of the same messages: pydantic (`PydanticRequest` / `PydanticResponse`, like
tether's messages) and dataclasses (`Request` / `Response`, python-cqrs's default aliases).
The handler body is the one tether's handler has: build the note from the query's id.
"""

from __future__ import annotations

import dataclasses

import cqrs
import di
from cqrs.bootstrap import requests as bootstrap


class NoteOut(cqrs.PydanticResponse):
    """The note a query returns (pydantic)."""

    id: int
    title: str


class GetNote(cqrs.PydanticRequest[NoteOut]):
    """Read one note by id (pydantic)."""

    id: int


class GetNoteHandler(cqrs.RequestHandler[GetNote, NoteOut]):
    """Answers `GetNote` (resolved by the container on every send)."""

    async def handle(self, request: GetNote) -> NoteOut:
        """Return the note."""
        return NoteOut(id=request.id, title="note")


@dataclasses.dataclass
class NoteOutDC(cqrs.Response):
    """The note a query returns (dataclass)."""

    id: int
    title: str


@dataclasses.dataclass
class GetNoteDC(cqrs.Request[NoteOutDC]):
    """Read one note by id (dataclass)."""

    id: int


class GetNoteDCHandler(cqrs.RequestHandler[GetNoteDC, NoteOutDC]):
    """Answers `GetNoteDC`."""

    async def handle(self, request: GetNoteDC) -> NoteOutDC:
        """Return the note."""
        return NoteOutDC(id=request.id, title="note")


def queries_mapper(mapper: cqrs.RequestMap) -> None:
    """Bind each query to its handler (python-cqrs's request map)."""
    mapper.bind(GetNote, GetNoteHandler)
    mapper.bind(GetNoteDC, GetNoteDCHandler)


def build_mediator() -> cqrs.RequestMediator:
    """The mediator, as python-cqrs's Quick Start builds it."""
    return bootstrap.bootstrap(di_container=di.Container(), queries_mapper=queries_mapper)
