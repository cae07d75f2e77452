"""The issue's service example, built by a factory that records what its dependencies do.

`build_issue_example()` returns fresh classes, a fresh store and a fresh log each time,
so that tests stay independent. The module deliberately has no
`from __future__ import annotations`: the classes are defined inside the factory and
their annotations refer to its locals (tests/_future_services.py covers the other case).
"""

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel

from tether import Forbidden, NotFound, Service, Tether, command, query


class User(BaseModel):
    id: int
    name: str
    tenant: str


class Entry(BaseModel):
    id: int
    action: str


class Session:
    """A fake database session over a shared dict of user names."""

    def __init__(self, users: dict[int, str]) -> None:
        self.users = users


class AuditLog:
    """A fake audit log."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries

    def record(self, id: int, action: str) -> None:
        self.entries.append(Entry(id=id, action=action))


USERS: dict[str, dict[str, Any]] = {
    "alice": {"name": "alice", "is_staff": True},
    "bob": {"name": "bob"},
}


def current_user(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any] | None:
    return USERS.get((authorization or "").removeprefix("Bearer "))


def headers(user: str | None = "bob", tenant: str | None = "acme") -> dict[str, str]:
    """Request headers for `user` in `tenant` (None leaves a header out)."""
    result = {}
    if user is not None:
        result["Authorization"] = f"Bearer {user}"
    if tenant is not None:
        result["X-Tenant"] = tenant
    return result


@dataclass
class IssueExample:
    """The example's classes and what its dependencies recorded."""

    api: Tether
    app: FastAPI
    get_db: Any
    get_audit_log: Any
    TenantScoped: type[Service]
    Audited: type
    Users: type[Service]
    AdminUsers: type[Service]
    store: dict[int, str]
    audit_entries: list[Entry]
    log: list[str] = field(default_factory=list)
    """"db open", "db commit", "db rollback <Exception>", "db close", "audit", "guard"."""
    instances: list[object] = field(default_factory=list)
    """The instance each call of `users.get` ran on."""
    threads: dict[str, int] = field(default_factory=dict)
    """Thread idents: "db" (where get_db ran) and "search" (where the sync method ran)."""


def build_issue_example(*, mount: bool = True) -> IssueExample:
    """Build the issue's example: TenantScoped, Audited, Users, AdminUsers, one Tether."""
    log: list[str] = []
    store = {1: "ada", 2: "grace"}
    audit_entries: list[Entry] = []
    instances: list[object] = []
    threads: dict[str, int] = {}

    async def get_db() -> AsyncIterator[Session]:
        log.append("db open")
        threads["db"] = threading.get_ident()
        try:
            yield Session(store)
        except Exception as exc:
            log.append(f"db rollback {type(exc).__name__}")
            raise
        else:
            log.append("db commit")
        finally:
            log.append("db close")

    def get_audit_log() -> AuditLog:
        log.append("audit")
        return AuditLog(audit_entries)

    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        log.append("guard")
        if authorization != "Bearer alice":
            raise Forbidden("admins only")

    class TenantScoped(Service, abstract=True):
        tenant: Annotated[str, Header(alias="X-Tenant")]
        db: Annotated[Session, Depends(get_db)]

    class Audited:
        audit: Annotated[AuditLog, Depends(get_audit_log)]

        @query
        async def history(self, id: int) -> list[Entry]:
            return [entry for entry in self.audit.entries if entry.id == id]

    class Users(Audited, TenantScoped, name="users", auth=True, tags=["users"]):
        @query
        async def get(self, id: int) -> User:
            """Return one user of the caller's tenant."""
            instances.append(self)
            name = self.db.users.get(id)
            if name is None:
                raise NotFound(f"no user {id}")
            return User(id=id, name=name, tenant=self.tenant)

        @query
        def search(self, q: str, limit: int = 50) -> list[User]:
            threads["search"] = threading.get_ident()
            found = [
                User(id=id, name=name, tenant=self.tenant)
                for id, name in sorted(self.db.users.items())
                if q in name
            ]
            return found[:limit]

        @command(auth="staff")
        async def rename(self, id: int, name: str) -> User:
            user = await self.get(id)
            self.db.users[id] = name
            self.audit.record(id, "rename")
            return user.model_copy(update={"name": name})

    class AdminUsers(Users, name="admin_users", guards=[require_admin]):
        @command
        async def purge(self, id: int) -> None:
            del self.db.users[id]
            self.audit.record(id, "purge")

    api = Tether(user=Depends(current_user))
    api.include(Users, AdminUsers)
    app = FastAPI()
    if mount:
        api.mount(app)
    return IssueExample(
        api=api,
        app=app,
        get_db=get_db,
        get_audit_log=get_audit_log,
        TenantScoped=TenantScoped,
        Audited=Audited,
        Users=Users,
        AdminUsers=AdminUsers,
        store=store,
        audit_entries=audit_entries,
        log=log,
        instances=instances,
        threads=threads,
    )
