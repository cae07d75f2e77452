# file: examples/docs/from_fastapi_jsonrpc_1.py
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import PerBatch, Tether, TetherError, Unauthorized

EVENTS: list[str] = []
BALANCES = {"user-1": 100}


class User(BaseModel):
    name: str


async def get_auth_user(user_auth_token: Annotated[str | None, Header()] = None) -> User:
    """Was in Entrypoint(dependencies=[...]): solved once per batch, per call elsewhere."""
    EVENTS.append("auth")
    if not user_auth_token:
        raise Unauthorized("Send a user-auth-token header")
    return User(name=f"user-{user_auth_token}")


async def db_session() -> AsyncIterator[str]:
    """Was in Entrypoint(common_dependencies=[...]) or a middleware: around every call."""
    EVENTS.append("open")
    try:
        yield "session"
    finally:
        EVENTS.append("close")


class Money(BaseModel):
    balance: int
    currency: str


class NotEnoughMoney(TetherError):
    """Was a jsonrpc.BaseError with CODE = 6001 and a DataModel."""

    code = "NOT_ENOUGH_MONEY"  # tether's string code, in error.data.code
    status = 409  # the HTTP status, over HTTP and SSE
    jsonrpc_code = 6001  # the JSON-RPC error code, as before
    message = "Not enough money"
    details_model = Money  # was DataModel: error.data.details


# Was jsonrpc.Entrypoint("/api/v1/jsonrpc", dependencies=[...], common_dependencies=[...]).
api = Tether(
    prefix="/api/v1",  # the endpoint: POST /api/v1/jsonrpc
    batch_dependencies=[Depends(get_auth_user)],  # was dependencies=: once per batch
    dependencies=[Depends(db_session)],  # was common_dependencies=: once per call
)

# A parameter that needs the batch's user says so: the value is the batch's, solved once.
Auth = Annotated[User, PerBatch(get_auth_user)]


@api.query
async def echo(data: str) -> str:
    """Was `data: str = Body(..., examples=["123"])`: a plain parameter is an input."""
    return data


@api.command(errors=[NotEnoughMoney])
async def withdraw(amount: int, user: Auth) -> int:
    """Was @api_v1.method(errors=[NotEnoughMoney])."""
    balance = BALANCES.get(user.name, 0)
    if amount > balance:
        raise NotEnoughMoney(details={"balance": balance, "currency": "USD"})
    BALANCES[user.name] = balance - amount
    return BALANCES[user.name]


app = FastAPI()  # was jsonrpc.API()
api.mount(app)  # was app.bind_entrypoint(api_v1): POST /api/v1/jsonrpc, and every transport
