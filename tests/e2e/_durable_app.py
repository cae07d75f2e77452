"""An app with durable events, for tests/e2e/test_events_durable.py (run by uvicorn in a subprocess).

`ping` emits a `Pinged` event and answers with its event_id. The `record` handler writes the
event_id into a SQLite file of its own ($TETHER_TEST_HANDLED): one row per delivery in
`deliveries`, and the id once in `handled` (UNIQUE, INSERT ... ON CONFLICT DO NOTHING).
The outbox is a SQLite file too ($TETHER_TEST_OUTBOX, a SQLAlchemy URL), with a short
lease so that rows a killed server had claimed are sent again soon after a restart; the
broker is $TETHER_TEST_BROKER (memory by default).
"""

from __future__ import annotations

import os
import sqlite3
import threading

from fastapi import Depends, FastAPI

from tether import Command, Event, Events, EventSettings, Tether
from tether.events.outbox import Outbox

HANDLED = os.environ.get("TETHER_TEST_HANDLED", "handled.sqlite3")
OUTBOX = os.environ.get("TETHER_TEST_OUTBOX", "sqlite+aiosqlite:///outbox.sqlite3")

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (event_id TEXT NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS handled (event_id TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""


def handled_db() -> sqlite3.Connection:
    """A connection to the handler's own database (WAL, so the test can read while we write)."""
    connection = sqlite3.connect(HANDLED, timeout=30, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    return connection


_setup = handled_db()
_setup.executescript(SCHEMA)
_setup.close()

# The broker: $TETHER_TEST_BROKER (memory:// or redis://...); a dead consumer's Redis
# entries are taken over after a second, not the default 30.
api = Tether(
    prefix="/api",
    broker=os.environ.get("TETHER_TEST_BROKER") or "memory://",
    outbox=Outbox(OUTBOX, lease=1.0, poll=0.2),
    events=EventSettings(reclaim_after=1.0),
)
app = FastAPI()


class Ping(Command[str]):
    """Emit one `Pinged` event; the answer is its event_id."""

    n: int


class Pinged(Event):
    """What `ping` emits."""

    n: int


@api.handler
async def ping(cmd: Ping, events: Events = Depends()) -> str:
    event = Pinged(n=cmd.n)
    events.emit(event)
    return str(event.event_id)


# One connection, one writer at a time (handlers run in the thread pool): queueing on a lock
# here is quicker than in SQLite's busy handler.
_recorder = handled_db()
_recording = threading.Lock()


@api.on(Pinged)
def record(event: Pinged) -> None:
    with _recording:
        _recorder.execute("BEGIN IMMEDIATE")
        try:
            _recorder.execute(
                "INSERT INTO deliveries (event_id, pid) VALUES (?, ?)",
                (str(event.event_id), os.getpid()),
            )
            _recorder.execute(
                "INSERT INTO handled (event_id, n) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (str(event.event_id), event.n),
            )
        except BaseException:
            _recorder.execute("ROLLBACK")
            raise
        _recorder.execute("COMMIT")


api.mount(app)
