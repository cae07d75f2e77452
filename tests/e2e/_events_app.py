"""The app of the scale-out test: run by `uvicorn --workers 3` with `TETHER_BROKER=redis://...`.

`note(n)` emits `Noted(n, pid)` and answers its event id and the worker's PID. The handler
group `$TETHER_TEST_GROUP` records each event it handles as `event_id:pid` in the Redis list
`$TETHER_TEST_HANDLED_KEY`, through a dependency. The stream `feed` says which worker serves
it, then forwards every `Noted` that `api.events.subscribe` sees, from every worker.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import Depends, FastAPI
from redis.asyncio import Redis

from tether import Event, Events, Tether

HANDLED_KEY = os.environ.get("TETHER_TEST_HANDLED_KEY", "tether.test.handled")
# A group of its own per test run: a group left in a shared Redis by an earlier run would
# hand this one the entries published since.
GROUP = os.environ.get("TETHER_TEST_GROUP", "recorders")


class Noted(Event, name="scaleout.noted"):
    n: int
    pid: int


api = Tether(prefix="/api")  # the broker comes from $TETHER_BROKER
_store: list[Redis] = []


async def store() -> Redis:
    """One Redis client per worker, for the handler's records."""
    if not _store:
        _store.append(Redis.from_url(os.environ["TETHER_BROKER"]))
    return _store[0]


@api.command
async def note(n: int, events: Events = Depends()) -> dict[str, Any]:
    event = Noted(n=n, pid=os.getpid())
    events.emit(event)
    return {"event_id": str(event.event_id), "pid": os.getpid()}


@api.on(Noted, group=GROUP)
async def record(event: Noted, redis: Redis = Depends(store)) -> None:
    await redis.rpush(HANDLED_KEY, f"{event.event_id}:{os.getpid()}")


@api.stream
async def feed() -> AsyncIterator[dict[str, Any]]:
    yield {"hello": os.getpid()}
    async with aclosing(api.events.subscribe(Noted)) as events:
        async for event in events:
            yield {"event_id": str(event.event_id), "n": event.n, "from": event.pid}


app = FastAPI()
api.mount(app)
