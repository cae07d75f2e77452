"""The app of the live scale-out tests and bench: run by `uvicorn --workers 3` with `TETHER_BROKER`.

The context `feed` has two slots: `items(publisher)` and `item(publisher, seq=0)`, so its
params are `publisher` (required: every slot declares it) and `seq` (optional). The command
`post(publisher, seq)` affects `feed`: both its arguments are params of the context, so each
post invalidates `{"context": "feed", "params": {"publisher": p, "seq": n}}`, which lets a
subscriber check, per publisher, that it received every post in order. `pid()` answers the
PID of the worker that served the call (a client finds which worker holds its connection).
The context `inbox(owner)` is never affected: bench/live_bench.py parks idle subscribers on it
(or on `feed` with another publisher). Nothing is stored: the tests and the bench read only the pushes.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from tether import Tether

api = Tether(prefix="/api")  # the broker comes from $TETHER_BROKER (memory:// without it)


@api.query(context="feed")
def items(publisher: str) -> list[int]:
    """The posts of `publisher` (none are kept: the tests read pushes, not bundles)."""
    return []


@api.query(context="feed")
def item(publisher: str, seq: int = 0) -> int | None:
    """One post of `publisher` (none are kept)."""
    return None


@api.command(affects=["feed"])
def post(publisher: str, seq: int) -> int:
    """Post number `seq` of `publisher`: invalidates `feed` for that publisher and seq."""
    return os.getpid()


@api.query(context="inbox")
def inbox(owner: str) -> list[int]:
    """Another context, which no post affects (the bench's idle subscribers may read it)."""
    return []


@api.query
def pid() -> int:
    """The PID of the worker that serves this call."""
    return os.getpid()


app = FastAPI()
api.mount(app)
