# file: examples/docs/auth_1.py
from typing import Annotated

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import CallContext, Tether


class User(BaseModel):
    name: str
    is_staff: bool = False
    is_superuser: bool = False
    plan: str = "free"


USERS = {
    "t-ada": User(name="ada", is_superuser=True),
    "t-grace": User(name="grace", is_staff=True),
    "t-alan": User(name="alan", plan="pro"),
}


async def current_user(authorization: Annotated[str | None, Header()] = None) -> User | None:
    """Return the caller, or None: tether turns None into 401 where auth is needed."""
    if authorization is None or not authorization.startswith("Bearer "):
        return None
    return USERS.get(authorization.removeprefix("Bearer "))


api = Tether(prefix="/api", user=Depends(current_user))


@api.query
async def public() -> str:
    """Anyone may call this."""
    return "hello"


@api.query(auth=True)
async def me(user: Annotated[User, Depends(current_user)]) -> User:
    """Any authenticated user; the resolver runs once even though it is used twice."""
    return user


@api.query(auth="staff")
async def staff_report() -> str:
    """Users whose `is_staff` (or `is_superuser`) is true."""
    return "report"


@api.command(auth="superuser")
async def reset() -> None:
    """Users whose `is_superuser` is true."""


def is_pro(user: User | None, ctx: CallContext) -> bool:
    """A custom predicate; it may also be `async def`."""
    return user is not None and user.plan == "pro"


@api.query(auth=is_pro)
async def pro_feature() -> str:
    """False from the predicate is 401 without a user and 403 with one."""
    return "pro"


app = FastAPI()
api.mount(app)
