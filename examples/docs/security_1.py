# file: examples/docs/security_1.py
import secrets
from typing import Annotated

from fastapi import Cookie, Depends, FastAPI, Response
from pydantic import BaseModel

from tether import Tether, Unauthorized

PASSWORDS = {"ada": "correct horse battery staple"}
SESSIONS: dict[str, str] = {}  # session token -> user name; a real app uses a shared store
BALANCES = {"ada": 100, "alan": 0}


class User(BaseModel):
    name: str


async def current_user(session: Annotated[str | None, Cookie()] = None) -> User | None:
    """The signed-in user, from the session cookie: HTTP, JSON-RPC, SSE and the socket's handshake."""
    name = SESSIONS.get(session) if session else None
    return None if name is None else User(name=name)


api = Tether(prefix="/api", user=Depends(current_user))


@api.command
async def sign_in(name: str, password: str, response: Response) -> str:
    """Start a session: the cookie is HttpOnly, Secure and SameSite=Lax."""
    if not secrets.compare_digest(PASSWORDS.get(name, ""), password):
        raise Unauthorized("Wrong name or password")
    token = secrets.token_urlsafe(32)
    SESSIONS[token] = name
    response.set_cookie("session", token, httponly=True, secure=True, samesite="lax")
    return name


@api.query(auth=True)
async def balance(user: Annotated[User, Depends(current_user)]) -> int:
    """A query reads and never writes: it may be called with GET."""
    return BALANCES[user.name]


@api.command(auth=True)
async def transfer(to: str, amount: int, user: Annotated[User, Depends(current_user)]) -> int:
    """A command: POST only, with a JSON body, which no cross-site page can send."""
    BALANCES[user.name] -= amount
    BALANCES[to] = BALANCES.get(to, 0) + amount
    return BALANCES[user.name]


app = FastAPI()
api.mount(app)
