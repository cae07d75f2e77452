"""Auth policies: who may call an operation, checked by the invoker on every transport.

A policy is one of:

- `None` or `False`: anyone may call;
- `True`: an authenticated user is needed (401 `UNAUTHORIZED` when there is none);
- `"staff"` or `"superuser"`: the user must have a true `is_staff` (or `is_superuser`)
  attribute or mapping key; a superuser also passes `"staff"` (403 `FORBIDDEN` otherwise);
- a predicate `(user, ctx) -> bool`, sync or async: False is 401 without a user, else 403.

The user always comes from the `user=` dependency given to `Tether`; there is no hidden
`request.state` contract.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .errors import ConfigurationError, Forbidden, Unauthorized

if TYPE_CHECKING:
    from .context import CallContext

__all__ = ("AuthPolicy", "AuthPredicate", "check_auth", "describe_policy", "validate_policy")

AuthPredicate: TypeAlias = "Callable[[Any, CallContext], bool | Awaitable[bool]]"
"""A custom auth check: given the user (or None) and the call context, may the call proceed?"""

AuthPolicy: TypeAlias = "bool | Literal['staff', 'superuser'] | AuthPredicate | None"
"""What `auth=` accepts on an operation."""

_ROLE_ATTRIBUTES = {"staff": ("is_staff", "is_superuser"), "superuser": ("is_superuser",)}


def validate_policy(policy: Any, *, where: str) -> Any:
    """Check an `auth=` value at registration and return it normalised (False becomes None)."""
    if policy is None or policy is False:
        return None
    if policy is True or callable(policy):
        return policy
    if isinstance(policy, str) and policy in _ROLE_ATTRIBUTES:
        return policy
    raise ConfigurationError(
        f"{where}: auth must be True, 'staff', 'superuser' or a callable (user, ctx) -> bool,"
        f" not {policy!r}"
    )


def describe_policy(policy: Any) -> bool | str:
    """Return the policy as it appears in the `x-tether` OpenAPI extension and OpenRPC."""
    if policy is None:
        return False
    if policy is True or isinstance(policy, str):
        return policy
    return "custom"


def _has_flag(user: Any, flag: str) -> bool:
    if isinstance(user, Mapping):
        return bool(user.get(flag, False))
    return bool(getattr(user, flag, False))


async def check_auth(policy: Any, user: Any, ctx: CallContext) -> None:
    """Raise `Unauthorized` or `Forbidden` unless `user` satisfies `policy`."""
    if policy is True:
        if user is None:
            raise Unauthorized()
        return
    if isinstance(policy, str):
        if user is None:
            raise Unauthorized()
        if not any(_has_flag(user, flag) for flag in _ROLE_ATTRIBUTES[policy]):
            raise Forbidden(f"Requires {policy}")
        return
    allowed = policy(user, ctx)
    if inspect.isawaitable(allowed):
        allowed = await allowed
    if not allowed:
        raise Unauthorized() if user is None else Forbidden()
