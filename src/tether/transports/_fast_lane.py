"""A shorter way in for tether's long-lived endpoints (`/live`, `/ws`), inside the user's middleware.

An idle live subscriber keeps every frame of the request's path through the app for as
long as it is connected: on FastAPI that is `ServerErrorMiddleware`, the exception
telemetry, the user's middleware, `ExceptionMiddleware` (a `Request` and two closures),
FastAPI's `AsyncExitStackMiddleware` (an `AsyncExitStack` and its deque), the router and
the route: about 3 KB per connection beyond the user's own middleware, most of it after
it (measured with tracemalloc on 1,000 idle `GET /api/live` streams).

`FastLane` is a middleware that `mount` appends to the app's `user_middleware`, so it is
the innermost one: every middleware of the user (added before or after `mount`) still
sees each request, as do `ServerErrorMiddleware` and FastAPI's telemetry middleware
outside them. It serves the exact paths a transport gave it (`lane(app).add`) itself,
with the scope the router would have given the endpoint (`router`, `endpoint`,
`path_params`), and passes everything else on. What it skips does nothing for these
endpoints: they are plain ASGI apps that answer their own errors (no `HTTPException`
handlers to run, no form files to close, no path parameters), and an unexpected error
still reaches `ServerErrorMiddleware`.

It stands aside (the request takes the router, unchanged) when FastAPI's native
telemetry is on for the request (the router names the route there); on an app whose
middleware stack was already built when tether was mounted, it is never in the stack.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ("FastLane", "Lanes", "lane")


class Lanes:
    """The endpoints an app's `FastLane` serves itself, by scope type and route."""

    __slots__ = ("router", "routes")

    def __init__(self, router: Any) -> None:
        self.router = router
        """The app's router (put in the scope, as the router does)."""
        self.routes: dict[str, list[tuple[str, BaseRoute, ASGIApp]]] = {}
        """By scope type: each route's fixed head (its path up to a parameter), the route, and
        the endpoint that serves it."""

    def add(self, kind: str, route: Route | WebSocketRoute, endpoint: ASGIApp) -> None:
        """Serve `route` (already on the app's router) of scope type `kind` by `endpoint` directly."""
        head = route.path.partition("{")[0]
        self.routes.setdefault(kind, []).append((head, route, endpoint))


def lane(app: FastAPI) -> Lanes:
    """Return the app's lanes, installing `FastLane` as its innermost middleware on first use.

    On an app that has served already, its middleware stack is built and stays as it is:
    the lanes are then never taken, and every request goes through the router.
    """
    found: Lanes | None = getattr(app.state, "tether_fast_lane", None)
    if found is None:
        found = app.state.tether_fast_lane = Lanes(app.router)
        app.user_middleware.append(Middleware(FastLane, lanes=found))
    return found


class FastLane:
    """ASGI middleware: serve tether's long-lived endpoints without the router's own layers.

    Args:
        app: the rest of the middleware stack (down to the router).
        lanes: the endpoints served here.
    """

    __slots__ = ("app", "lanes")

    def __init__(self, app: ASGIApp, lanes: Lanes) -> None:
        self.app = app
        """The next application (FastAPI's exception middleware, then the router)."""
        self.lanes = lanes
        """The endpoints served here, by scope type."""

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Return the coroutine that serves a request: a lane's endpoint, or the next app.

        A plain function, not a coroutine: the caller awaits the endpoint's (or the next
        app's) coroutine directly, so a long-lived connection keeps no frame of this one.
        """
        routes = self.lanes.routes.get(scope["type"])
        if routes is not None and "fastapi.telemetry" not in scope:
            path = scope["path"]
            root = scope.get("root_path")
            if root and path.startswith(root):
                path = path[len(root) :]
            for head, route, endpoint in routes:
                if not path.startswith(head):  # most requests: a string test, no pattern
                    continue
                match, child = route.matches(scope)
                if match is Match.FULL:
                    if "router" not in scope:
                        scope["router"] = self.lanes.router
                    scope.update(child)
                    return endpoint(scope, receive, send)
        return self.app(scope, receive, send)
