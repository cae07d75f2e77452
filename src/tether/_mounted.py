"""Finding the Tethers mounted on an ASGI app: for the `tether` command and `tether.server`.

A transport's route points at the transport (`route.endpoint` or `route.app`), and every
transport keeps the Tether it was attached to as `.api`; nothing here imports a transport.
"""

from __future__ import annotations

from typing import Any

from .registry import Tether

__all__ = ("mounted_tethers",)

# Middleware and mounts nest apps; a real stack is a handful deep, a cycle would be endless.
_MAX_DEPTH = 32


def mounted_tethers(app: object) -> tuple[Tether, ...]:
    """Return every Tether mounted on `app`, in route order, looking through middleware and mounts.

    `app` is a FastAPI or Starlette app, or an ASGI middleware wrapping one as `.app` (as
    uvicorn wraps the app it loads), or a sub-application mounted with `app.mount(...)`.
    """
    found: dict[int, Tether] = {}
    seen: set[int] = set()
    pending: list[tuple[object, int]] = [(app, 0)]
    while pending:
        current, depth = pending.pop()
        if current is None or id(current) in seen or depth > _MAX_DEPTH:
            continue
        seen.add(id(current))
        router: Any = getattr(current, "router", None)
        routes: Any = getattr(router, "routes", None) or getattr(current, "routes", None) or ()
        nested: list[object] = []
        for route in routes:
            target: Any = getattr(route, "endpoint", None) or getattr(route, "app", None)
            api = getattr(target, "api", None)
            if isinstance(api, Tether):
                found.setdefault(id(api), api)
            elif target is not None and not callable(getattr(route, "endpoint", None)):
                nested.append(target)  # a Mount: its app may hold a Tether too
        nested.append(getattr(current, "app", None))  # the app a middleware wraps
        # Reversed so that popping visits the outer routes first, then what they nest.
        pending.extend((item, depth + 1) for item in reversed(nested))
    return tuple(found.values())
