"""An app for tests that run a server in a subprocess (tests/e2e/test_server.py).

Its long calls append `enter TAG` to the file named by $TETHER_TEST_LOG once running, and
their yield dependency appends `exit TAG` when it is closed: the test sees both.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI

from tether import Tether

api = Tether(prefix="/api")
app = FastAPI()


def _record(line: str) -> None:
    path = os.environ.get("TETHER_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


class Held:
    """What a yield dependency knows of its call: the tag the operation gives it."""

    def __init__(self) -> None:
        self.tag = "?"


async def held() -> AsyncIterator[Held]:
    """A yield dependency that records its call's tag when it is closed.

    Its teardown awaits, as closing a database session would: a server that exits without
    letting cancelled calls run on for a moment never records the exit.
    """
    holder = Held()
    try:
        yield holder
    finally:
        await anyio.sleep(0.1)
        _record(f"exit {holder.tag}")


async def _hold(holder: Held, tag: str, ms: int) -> str:
    holder.tag = tag
    _record(f"enter {tag}")
    await anyio.sleep(ms / 1000)
    return tag


@api.query
async def slow_query(tag: str, ms: int, holder: Annotated[Held, Depends(held)]) -> str:
    """Sleep `ms` milliseconds, then answer the tag."""
    return await _hold(holder, tag, ms)


@api.command
async def slow_command(tag: str, ms: int, holder: Annotated[Held, Depends(held)]) -> str:
    """Sleep `ms` milliseconds, then answer the tag."""
    return await _hold(holder, tag, ms)


@api.query
async def echo(text: str) -> str:
    """Answer the text."""
    return text


api.mount(app)
