# file: examples/docs/services_example.py
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import Forbidden, NotFound, Service, Tether, command, query


class User(BaseModel):
    id: int
    name: str
    tenant: str


class Entry(BaseModel):
    user_id: int
    action: str


class Session:
    """Stands in for a database session: one per call, closed when the call ends."""

    def __init__(self, users: dict[int, str]) -> None:
        self.users = users
        self.closed = False


class AuditLog:
    """Stands in for an audit log."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    def record(self, user_id: int, action: str) -> None:
        self.entries.append(Entry(user_id=user_id, action=action))


USERS = {1: "ada", 2: "grace"}
ENTRIES: list[Entry] = []
SESSIONS: list[Session] = []
TOKENS: dict[str, dict[str, Any]] = {
    "alice-token": {"name": "alice", "is_staff": True},
    "bob-token": {"name": "bob"},
}


async def get_db() -> AsyncIterator[Session]:
    session = Session(USERS)
    SESSIONS.append(session)
    try:
        yield session
    finally:
        session.closed = True


def get_audit_log() -> AuditLog:
    return AuditLog(ENTRIES)


def current_user(authorization: Annotated[str, Header()] = "") -> dict[str, Any] | None:
    return TOKENS.get(authorization.removeprefix("Bearer "))


def require_admin(user: Annotated[dict[str, Any] | None, Depends(current_user)]) -> None:
    if user is None or user["name"] != "alice":
        raise Forbidden("admins only")


class TenantScoped(Service, abstract=True):
    tenant: Annotated[str, Header(alias="X-Tenant")]
    db: Annotated[Session, Depends(get_db)]  # a yield dependency, closed when the call ends


class Audited:  # a plain mixin
    audit: Annotated[AuditLog, Depends(get_audit_log)]

    @query
    async def history(self, id: int) -> list[Entry]:
        return [entry for entry in self.audit.entries if entry.user_id == id]


class Users(Audited, TenantScoped, name="users", auth=True, tags=["users"]):
    @query
    async def get(self, id: int) -> User:
        """Return one user of the caller's tenant."""
        if id not in self.db.users:
            raise NotFound(f"no user {id}", details={"id": id})
        return User(id=id, name=self.db.users[id], tenant=self.tenant)

    @query
    def search(self, q: str, limit: int = 50) -> list[User]:  # sync: runs in the thread pool
        found = [id for id, name in sorted(self.db.users.items()) if q in name]
        return [User(id=id, name=self.db.users[id], tenant=self.tenant) for id in found[:limit]]

    @command(auth="staff")
    async def rename(self, id: int, name: str) -> User:
        user = await self.get(id)  # a plain method call on the same instance
        self.db.users[id] = name
        self.audit.record(id, "rename")
        return user.model_copy(update={"name": name})


class AdminUsers(Users, name="admin_users", guards=[require_admin]):
    @command
    async def purge(self, id: int) -> None:
        del self.db.users[id]
        self.audit.record(id, "purge")


api = Tether(prefix="/api", user=Depends(current_user))
api.include(Users, AdminUsers)

app = FastAPI()
api.mount(app)
