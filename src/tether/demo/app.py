"""A small todo app: tether operations on FastAPI, stored in SQLite, with a React page.

Run it with `tether demo` (or `make demo`, or `uvicorn tether.demo.app:app`), then open
http://127.0.0.1:8000/ for the page, http://127.0.0.1:8000/docs for Swagger UI, or:

    curl -X POST localhost:8000/api/call/add_todo -H 'Authorization: Bearer ada' \
         -H 'Content-Type: application/json' -d '{"title": "write docs"}'
    curl 'localhost:8000/api/call/list_todos?done=false'
    curl 'localhost:8000/api/context/todos'          # the "todos" bundle
    curl -N 'localhost:8000/api/live?contexts=todos'  # every change, pushed (SSE)

The database is one SQLite file: `$TODO_DB` if set, else `tether-todo.db` in the system's
temporary directory. No other service is needed.

The caller is whoever `Authorization: Bearer <name>` names; the name `admin` is staff.
Anyone may read; a signed-in user adds todos, and only a todo's owner, or staff, may
toggle or delete it (others get 403 `FORBIDDEN`).

Client caches (docs/cache.md): `list_todos` is the context `todos`, which adding, toggling
and deleting invalidate (and `stats`, a query of no context); `current_user` is the per-user
context `user`, into which `rename_user` merges the new profile. `counter` is a stream.

The page: `/` serves a small HTML shell and `/app.js` the React app that renders into it.
The app's source is `web/src/` in the repository; it reads everything through the typed
client that `tether generate --app tether.demo.app:app --out web/src/api` writes (not
committed), and `node web/build.mjs` (`make demo-web` does both) bundles it into
`static/app.js`, committed and shipped in the package, so serving the demo needs no Node. The page keeps the `user` and
`todos` contexts and the staff-only `stats` in the client's cache, follows live push (so two
windows stay in sync), and shows a counter fed by the stream.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, Header
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from tether import Conflict, Forbidden, NotFound, Tether, command, query, stream

__all__ = ("Profile", "Stats", "Todo", "TodoId", "User", "app", "create_app", "default_db_path")

STAFF = frozenset({"admin"})
"""User names that are staff."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS todos (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT    NOT NULL,
    done  INTEGER NOT NULL DEFAULT 0,
    owner TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS profiles (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL
);
"""


TodoId = Annotated[int, Field(ge=1, le=2**53 - 1)]
"""A todo's id: from 1 up to the largest integer a JavaScript number (the page's) holds
exactly, well inside SQLite's 64-bit integers; an id outside is a 422, not a database error."""


# -- models ------------------------------------------------------------------------------


class Todo(BaseModel):
    """One todo item."""

    id: int
    title: str
    done: bool
    owner: str


class User(BaseModel):
    """The caller, resolved from the `Authorization` header."""

    name: str
    is_staff: bool = False


class Profile(BaseModel):
    """The signed-in user's profile: the name they sign in with, and the name they show."""

    name: str
    display_name: str
    is_staff: bool


class Stats(BaseModel):
    """Counts of todos, for staff."""

    total: int
    done: int
    open: int


# -- dependencies ------------------------------------------------------------------------


def get_db(connection: HTTPConnection) -> Iterator[sqlite3.Connection]:
    """Open a database connection for one call; commit if the call succeeds, else roll back.

    `HTTPConnection` (rather than `Request`) is the call's request on HTTP and JSON-RPC and
    the socket on WebSocket, so this dependency works on every transport.
    """
    db = sqlite3.connect(connection.app.state.todo_db, check_same_thread=False)
    db.row_factory = sqlite3.Row
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


# Function scope: the transaction commits before the answer is sent, so a client that has
# its answer sees its write on its next call (default-scope teardown runs after the send).
DB = Annotated[sqlite3.Connection, Depends(get_db, scope="function")]


async def resolve_user(authorization: Annotated[str | None, Header()] = None) -> User | None:
    """Resolve `Authorization: Bearer <name>` to a user; None when the header is missing."""
    if authorization is None:
        return None
    scheme, _, name = authorization.partition(" ")
    name = name.strip()
    if scheme.lower() != "bearer" or not name:
        return None
    return User(name=name, is_staff=name in STAFF)


CurrentUser = Annotated[User, Depends(resolve_user)]


def _row_to_todo(row: sqlite3.Row) -> Todo:
    return Todo(id=row["id"], title=row["title"], done=bool(row["done"]), owner=row["owner"])


def _fetch(db: sqlite3.Connection, id: int) -> Todo:
    row = db.execute("SELECT * FROM todos WHERE id = ?", (id,)).fetchone()
    if row is None:
        raise NotFound(f"No todo with id {id}", details={"id": id})
    return _row_to_todo(row)


def _check_owner(todo: Todo, user: User, action: str) -> None:
    """Refuse (403) a change to `todo` by anyone but its owner or staff."""
    if todo.owner != user.name and not user.is_staff:
        raise Forbidden(f"Only the owner or staff may {action} a todo", details={"id": todo.id})


# -- operations --------------------------------------------------------------------------


@query(context="todos")
def list_todos(db: DB, done: bool | None = None) -> list[Todo]:
    """List every todo, oldest first; `done` filters by state."""
    if done is None:
        rows = db.execute("SELECT * FROM todos ORDER BY id").fetchall()
    else:
        rows = db.execute("SELECT * FROM todos WHERE done = ? ORDER BY id", (done,)).fetchall()
    return [_row_to_todo(row) for row in rows]


@query(errors=[NotFound])
def get_todo(id: TodoId, db: DB) -> Todo:
    """Fetch one todo by id."""
    return _fetch(db, id)


@command(auth=True, errors=[Conflict], affects=["todos", "stats"])
def add_todo(
    title: Annotated[str, Field(min_length=1, max_length=200)], db: DB, user: CurrentUser
) -> Todo:
    """Add a todo owned by the caller; a title already open for them is a conflict."""
    duplicate = db.execute(
        "SELECT id FROM todos WHERE owner = ? AND title = ? AND done = 0", (user.name, title)
    ).fetchone()
    if duplicate is not None:
        raise Conflict("You already have this todo open", details={"id": duplicate["id"]})
    cursor = db.execute("INSERT INTO todos (title, owner) VALUES (?, ?)", (title, user.name))
    assert cursor.lastrowid is not None
    return _fetch(db, cursor.lastrowid)


@command(auth=True, errors=[NotFound, Forbidden], affects=["todos", "stats"])
def toggle_todo(id: TodoId, db: DB, user: CurrentUser) -> Todo:
    """Flip a todo between done and open; only its owner or staff may."""
    _check_owner(_fetch(db, id), user, "toggle")
    db.execute("UPDATE todos SET done = 1 - done WHERE id = ?", (id,))
    return _fetch(db, id)


@command(auth=True, errors=[NotFound, Forbidden], affects=["todos", "stats"])
def delete_todo(id: TodoId, db: DB, user: CurrentUser) -> None:
    """Delete a todo; only its owner or staff may."""
    _check_owner(_fetch(db, id), user, "delete")
    db.execute("DELETE FROM todos WHERE id = ?", (id,))


@query(auth="staff")
def stats(db: DB) -> Stats:
    """Count todos, done and open; staff only."""
    total, done = db.execute("SELECT COUNT(*), COALESCE(SUM(done), 0) FROM todos").fetchone()
    return Stats(total=total, done=done, open=total - done)


def _profile(db: sqlite3.Connection, user: User) -> Profile:
    row = db.execute("SELECT display_name FROM profiles WHERE name = ?", (user.name,)).fetchone()
    shown = row["display_name"] if row is not None else user.name
    return Profile(name=user.name, display_name=shown, is_staff=user.is_staff)


@query(context="user", auth=True)
def current_user(db: DB, user: CurrentUser) -> Profile:
    """Return the caller's profile (per user: its pushes reach that user only)."""
    return _profile(db, user)


@command(auth=True, merge=["user"])
def rename_user(
    display_name: Annotated[str, Field(min_length=1, max_length=80)], db: DB, user: CurrentUser
) -> Profile:
    """Change the name the caller shows; the answer patches their `user` context in place."""
    db.execute(
        "INSERT INTO profiles (name, display_name) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name",
        (user.name, display_name),
    )
    return _profile(db, user)


@stream
async def counter(
    every_ms: Annotated[int, Field(ge=10, le=60_000)] = 1000,
    start: int = 0,
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1_000_000,
) -> AsyncIterator[int]:
    """Count up from `start`, one number every `every_ms` milliseconds, `count` numbers in all."""
    for n in range(start, start + count):
        if n != start:
            await anyio.sleep(every_ms / 1000)
        yield n


# -- the app -----------------------------------------------------------------------------


def default_db_path() -> Path:
    """Return the database file: `$TODO_DB`, else `tether-todo.db` in the temp directory."""
    configured = os.environ.get("TODO_DB")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / "tether-todo.db"


def create_app(db_path: str | os.PathLike[str] | None = None, *, strict: bool = False) -> FastAPI:
    """Build the todo app on the SQLite file `db_path` (default: `default_db_path()`).

    `strict` validates inputs strictly (`Tether(strict=True)`); the demo serves lax ones.
    """
    path = Path(db_path) if db_path is not None else default_db_path()
    with sqlite3.connect(path) as connection:
        connection.executescript(SCHEMA)
    connection.close()

    app = FastAPI(title="tether todo demo", version="0.1.0")
    app.state.todo_db = str(path)
    api = Tether(prefix="/api", user=Depends(resolve_user), tags=["todos"], strict=strict)
    api.include(
        list_todos,
        get_todo,
        add_todo,
        toggle_todo,
        delete_todo,
        stats,
        current_user,
        rename_user,
        counter,
    )
    api.mount(app)
    app.state.api = api  # for in-process calls: `await app.state.api.call("list_todos")`
    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.add_api_route("/app.js", bundle, methods=["GET"], include_in_schema=False)
    return app


PAGE_SHELL = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tether todo demo</title>
<link rel="icon" href="data:,">
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  header { display: flex; justify-content: space-between; align-items: baseline; }
  section { border-top: 1px solid #ddd; padding: .5rem 0; }
  .row { display: flex; gap: .5rem; align-items: end; flex-wrap: wrap; margin: .5rem 0; }
  li.done .title { text-decoration: line-through; color: #666; }
  li button { margin-left: .5rem; }
  .owner { color: #555; }
  .error { color: #a00; }
  .badge { margin-left: .5rem; padding: 0 .4rem; border-radius: .3rem; background: #264; color: #fff; font-size: .8rem; }
  .live-ready { color: #264; }
  .live-error { color: #a00; }
</style>
</head>
<body>
<div id="root"><noscript>This page needs JavaScript; see <a href="/docs">/docs</a>.</noscript></div>
<script type="module" src="/app.js"></script>
</body>
</html>
"""
"""The page's shell: the React app (`web/`, built into `static/app.js`) renders into `#root`."""


async def index() -> HTMLResponse:
    """Serve the page's HTML shell."""
    return HTMLResponse(PAGE_SHELL)


async def bundle() -> Response:
    """Serve the page's script: the bundle `web/build.mjs` built, shipped as package data."""
    source = resources.files("tether.demo").joinpath("static", "app.js").read_bytes()
    return Response(
        source,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )


app = create_app()
