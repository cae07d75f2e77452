from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any

import pytest
from fastapi import Depends, Header

from tests._core_helpers import TRANSPORTS, call_over, mounted
from tether import CallContext, ConfigurationError, Forbidden, Tether, Unauthorized
from tether.auth import check_auth, describe_policy, validate_policy

per_transport = pytest.mark.parametrize("transport", TRANSPORTS)


@dataclass
class User:
    name: str
    is_staff: bool = False
    is_superuser: bool = False


USERS: dict[str, Any] = {
    "alice": User("alice", is_staff=True),  # attribute object, staff
    "carol": User("carol"),  # attribute object, no flags
    "root": User("root", is_superuser=True),  # attribute object, superuser
    "bob": {"name": "bob"},  # dict, no flags
    "dave": {"name": "dave", "is_staff": True},  # dict, staff
    "eve": {"name": "eve", "is_superuser": True},  # dict, superuser
}


def current_user(authorization: Annotated[str | None, Header()] = None) -> Any:
    if authorization is None or not authorization.startswith("Bearer "):
        return None
    return USERS.get(authorization.removeprefix("Bearer "))


def bearer(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {name}"}


def make_api() -> Tether:
    api = Tether(user=Depends(current_user))

    @api.query(auth=True)
    def whoami(ctx_user: Any = Depends(current_user)) -> str:
        return str(ctx_user["name"] if isinstance(ctx_user, dict) else ctx_user.name)

    @api.query(auth="staff")
    def staff_only() -> str:
        return "staff ok"

    @api.query(auth="superuser")
    def superuser_only() -> str:
        return "superuser ok"

    @api.command(auth=True)
    def strict(n: int) -> int:
        return n

    mounted(api)
    return api


@per_transport
async def test_auth_true_needs_a_user(transport: str) -> None:
    api = make_api()
    assert await call_over(transport, api, "whoami") == (
        401,
        {
            "error": {
                "code": "UNAUTHORIZED",
                "message": "Authentication required",
                "details": None,
            }
        },
    )
    assert (await call_over(transport, api, "whoami", headers=bearer("nobody")))[0] == 401
    assert await call_over(transport, api, "whoami", headers=bearer("carol")) == (
        200,
        {"result": "carol"},
    )
    assert await call_over(transport, api, "whoami", headers=bearer("bob")) == (
        200,
        {"result": "bob"},
    )


@per_transport
async def test_input_is_validated_before_auth(transport: str) -> None:
    # DESIGN.md's order: validate -> solve dependencies -> check auth -> run.
    api = make_api()
    status, body = await call_over(transport, api, "strict", {"n": "not a number"})
    assert status == 422
    assert body["error"]["code"] == "VALIDATION_FAILED"
    status, body = await call_over(transport, api, "strict", {"n": 1})
    assert status == 401
    assert await call_over(transport, api, "strict", {"n": 1}, headers=bearer("bob")) == (
        200,
        {"result": 1},
    )


@per_transport
async def test_an_unauthenticated_call_never_opens_the_operations_dependencies(
    transport: str,
) -> None:
    opened: list[str] = []

    async def session() -> AsyncIterator[str]:
        opened.append("session")
        yield "s"

    api = Tether(user=Depends(current_user))

    @api.command(auth="staff")
    async def purge(s: str = Depends(session)) -> str:
        return s

    mounted(api)
    assert (await call_over(transport, api, "purge"))[0] == 401
    assert (await call_over(transport, api, "purge", headers=bearer("bob")))[0] == 403
    assert opened == []
    assert await call_over(transport, api, "purge", headers=bearer("alice")) == (
        200,
        {"result": "s"},
    )
    assert opened == ["session"]


@per_transport
@pytest.mark.parametrize(
    ("token", "status"),
    [
        (None, 401),
        ("nobody", 401),
        ("carol", 403),
        ("bob", 403),
        ("alice", 200),
        ("dave", 200),
        ("root", 200),  # a superuser is also staff
        ("eve", 200),
    ],
)
async def test_staff_policy(transport: str, token: str | None, status: int) -> None:
    api = make_api()
    got, body = await call_over(
        transport, api, "staff_only", headers=bearer(token) if token else None
    )
    assert got == status
    if status == 200:
        assert body == {"result": "staff ok"}
    elif status == 403:
        assert body == {
            "error": {"code": "FORBIDDEN", "message": "Requires staff", "details": None}
        }
    else:
        assert body["error"]["code"] == "UNAUTHORIZED"


@per_transport
@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("alice", 403), ("dave", 403), ("bob", 403), ("root", 200), ("eve", 200)],
)
async def test_superuser_policy(transport: str, token: str | None, status: int) -> None:
    api = make_api()
    got, body = await call_over(
        transport, api, "superuser_only", headers=bearer(token) if token else None
    )
    assert got == status
    if status == 403:
        assert body["error"]["code"] == "FORBIDDEN"
    if status == 200:
        assert body == {"result": "superuser ok"}


@per_transport
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_custom_predicate(transport: str, is_async: bool) -> None:
    seen: list[tuple[Any, str]] = []

    def allowed(user: Any, ctx: CallContext) -> bool:
        seen.append((user, ctx.transport))
        assert ctx.user is user
        return user is not None and user["name"] == "bob"

    async def allowed_async(user: Any, ctx: CallContext) -> bool:
        return allowed(user, ctx)

    api = Tether(user=Depends(current_user))

    @api.query(auth=allowed_async if is_async else allowed)
    def only_bob() -> str:
        return "hi bob"

    mounted(api)
    assert (await call_over(transport, api, "only_bob"))[0] == 401
    status, body = await call_over(transport, api, "only_bob", headers=bearer("dave"))
    assert status == 403
    assert body["error"] == {"code": "FORBIDDEN", "message": "Not allowed", "details": None}
    assert await call_over(transport, api, "only_bob", headers=bearer("bob")) == (
        200,
        {"result": "hi bob"},
    )
    assert [t for _, t in seen] == [transport] * 3
    assert [u["name"] if u else None for u, _ in seen] == [None, "dave", "bob"]


def test_auth_without_user_resolver_is_a_configuration_error() -> None:
    api = Tether()
    for policy in (True, "staff", "superuser", lambda user, ctx: True):
        with pytest.raises(ConfigurationError, match="needs a user resolver"):
            api.command(auth=policy, name="guarded")(lambda: None)
    assert len(api) == 0


def test_false_and_none_mean_no_auth() -> None:
    api = Tether()

    @api.query(auth=False)
    def open_() -> int:
        return 1

    assert api.get("open_").auth is None
    assert api.get("open_").plan is None


def test_validate_policy() -> None:
    def predicate(user: Any, ctx: CallContext) -> bool:
        return True

    assert validate_policy(None, where="x") is None
    assert validate_policy(False, where="x") is None
    assert validate_policy(True, where="x") is True
    assert validate_policy("staff", where="x") == "staff"
    assert validate_policy("superuser", where="x") == "superuser"
    assert validate_policy(predicate, where="x") is predicate
    with pytest.raises(ConfigurationError, match=r"^op: auth must be"):
        validate_policy("admin", where="op")


def test_describe_policy() -> None:
    assert describe_policy(None) is False
    assert describe_policy(True) is True
    assert describe_policy("staff") == "staff"
    assert describe_policy("superuser") == "superuser"
    assert describe_policy(lambda user, ctx: True) == "custom"


async def test_check_auth_directly() -> None:
    ctx = CallContext("inprocess", {"type": "http"})
    await check_auth(True, object(), ctx)
    with pytest.raises(Unauthorized):
        await check_auth(True, None, ctx)
    with pytest.raises(Unauthorized):
        await check_auth("staff", None, ctx)
    with pytest.raises(Forbidden, match="Requires superuser"):
        await check_auth("superuser", {"is_staff": True}, ctx)
    # Flags are read for truth, not presence.
    with pytest.raises(Forbidden):
        await check_auth("staff", {"is_staff": 0}, ctx)
    with pytest.raises(Forbidden):
        await check_auth("staff", User("x", is_staff=False), ctx)
    await check_auth("staff", {"is_superuser": 1}, ctx)
    # Any mapping is read by key, not only a dict.
    await check_auth("staff", MappingProxyType({"is_staff": True}), ctx)
    with pytest.raises(Forbidden):
        await check_auth("superuser", MappingProxyType({"is_staff": True}), ctx)


@per_transport
async def test_user_resolver_runs_once_and_can_be_overridden(transport: str) -> None:
    runs: list[str | None] = []

    def resolver(authorization: Annotated[str | None, Header()] = None) -> Any:
        runs.append(authorization)
        return current_user(authorization)

    api = Tether(user=Depends(resolver))

    @api.query(auth="staff")
    def staff_name(user: Any = Depends(resolver)) -> str:
        return str(user.name if isinstance(user, User) else user["name"])

    app = mounted(api)
    assert await call_over(transport, api, "staff_name", headers=bearer("alice")) == (
        200,
        {"result": "alice"},
    )
    # The user resolver and the operation's own use of it share one solved value.
    assert runs == ["Bearer alice"]
    app.dependency_overrides[resolver] = lambda: {"name": "test", "is_staff": True}
    assert await call_over(transport, api, "staff_name") == (200, {"result": "test"})
    app.dependency_overrides[resolver] = lambda: None
    assert (await call_over(transport, api, "staff_name", headers=bearer("alice")))[0] == 401
    assert runs == ["Bearer alice"]


@per_transport
async def test_operations_without_auth_do_not_resolve_the_user(transport: str) -> None:
    runs: list[int] = []

    def resolver() -> None:
        runs.append(1)

    api = Tether(user=Depends(resolver))

    @api.query
    def public() -> str:
        return "hi"

    mounted(api)
    assert await call_over(transport, api, "public") == (200, {"result": "hi"})
    assert runs == []


@per_transport
async def test_params_cannot_inject_the_user_or_a_dependency(transport: str) -> None:
    ran: list[str] = []

    def get_db() -> str:
        return "real"

    api = Tether(user=Depends(current_user))

    @api.command(auth="superuser")
    def drop(table: str, db: str = Depends(get_db)) -> str:
        ran.append(db)
        return f"{db}:{table}"

    mounted(api)
    for key, value in (
        ("__tether_user__", {"name": "x", "is_superuser": True}),
        ("user", {"name": "x", "is_superuser": True}),
        ("db", "fake"),
    ):
        for headers in (None, bearer("root")):
            status, body = await call_over(
                transport, api, "drop", {"table": "t", key: value}, headers=headers
            )
            assert status == 422
            assert body["error"]["details"] == [
                {"loc": [key], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
            ]
    assert ran == []
    assert (await call_over(transport, api, "drop", {"table": "t"}))[0] == 401
    assert await call_over(transport, api, "drop", {"table": "t"}, headers=bearer("root")) == (
        200,
        {"result": "real:t"},
    )
    assert ran == ["real"]
