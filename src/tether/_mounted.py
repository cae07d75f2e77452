"""Finding the Tethers mounted on an ASGI app: for the `tether` command and `tether.server`.

`Tether.mount` records each Tether in its app's state (`app.state.tether_mounted`); this
walks the apps that middleware wraps and that routes mount, and reads that record, so it
needs nothing from a transport (which holds only a narrow handle, never the Tether).
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
        state: Any = getattr(current, "state", None)
        for api in getattr(state, "tether_mounted", ()):
            if isinstance(api, Tether):
                found.setdefault(id(api), api)
        router: Any = getattr(current, "router", None)
        routes: Any = getattr(router, "routes", None) or getattr(current, "routes", None) or ()
        nested: list[object] = []
        for route in routes:
            target: Any = getattr(route, "endpoint", None) or getattr(route, "app", None)
            if target is not None and not callable(getattr(route, "endpoint", None)):
                nested.append(target)  # a Mount: its app may hold a Tether too
        nested.append(getattr(current, "app", None))  # the app a middleware wraps
        # Reversed so that popping visits the outer routes first, then what they nest.
        pending.extend((item, depth + 1) for item in reversed(nested))
    return tuple(found.values())
