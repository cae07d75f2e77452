# file: examples/docs/dependencies_1.py
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Cookie, Depends, FastAPI, Header, Request

from tether import Tether

EVENTS: list[str] = []


class Session:
    """Stands in for a database session."""

    def __init__(self) -> None:
        self.rows: list[str] = []


async def get_session() -> AsyncIterator[Session]:
    """A yield dependency: opened before the call, closed after it, even on failure."""
    session = Session()
    EVENTS.append("open")
    try:
        yield session
        EVENTS.append("commit")
    except Exception as exc:
        EVENTS.append(f"rollback after {type(exc).__name__}")
        raise  # re-raise: the caller still gets the operation's error
    finally:
        EVENTS.append("close")


DB = Annotated[Session, Depends(get_session)]
api = Tether(prefix="/api")


@api.command
async def save(text: str, db: DB) -> int:
    """Save a row; `text` is input, `db` is solved by FastAPI."""
    if not text.strip():
        raise ValueError("blank")
    db.rows.append(text)
    return len(db.rows)


@api.query
async def whoami(
    request: Request,
    user_agent: Annotated[str, Header()] = "unknown",
    theme: Annotated[str | None, Cookie()] = None,
) -> dict[str, str | None]:
    """Read the request, a header and a cookie: none of them are operation inputs."""
    return {"path": request.url.path, "agent": user_agent, "theme": theme}


app = FastAPI()
api.mount(app)
