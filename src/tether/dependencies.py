"""The bridge to FastAPI's dependency machinery: which parameters are dependencies, and solving them.

An operation's parameters split in two. Those marked for FastAPI (`Depends`, `Security`,
`Header`, `Cookie`, or typed `Request`, `WebSocket`, `HTTPConnection`, `Response`,
`BackgroundTasks`, `SecurityScopes`) are dependencies; every other parameter is input.
The dependencies, together with the Tether-level ones and the user resolver, are compiled
once into a FastAPI `Dependant` over a synthetic signature, and solved per call by
FastAPI's own `solve_dependencies`, so overrides, caching, scopes and yield
dependencies behave as they do on a FastAPI route: a yield dependency of the default
scope closes after the answer is sent and the background tasks have run (one of the
function scope, `Depends(scope="function")`, as soon as the function returns), and one
whose call failed closes first, seeing the exception (see outcome.py; a JSON-RPC batch
item is the one documented exception).

A dependency may only read what every transport can give it: headers, cookies, the
`Request` (or `WebSocket`), the `Response`, background tasks, security scopes and other
dependencies. A query parameter (plain or `Query()`), `Path()`, `Body()`, `Form()` or
`File()` anywhere in the tree has no single meaning across HTTP, JSON-RPC, the socket and
in-process calls, so compiling a plan refuses it (`check_suppliable`).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from contextlib import AsyncExitStack
from typing import Annotated, Any, get_args, get_origin

from fastapi import Depends, params
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant, get_typed_signature, solve_dependencies
from fastapi.exceptions import RequestValidationError
from fastapi.security import SecurityScopes
from starlette.background import BackgroundTasks
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from .errors import ConfigurationError

__all__ = (
    "USER_KEY",
    "provide_per_call",
    "as_guard",
    "BatchScoped",
    "check_suppliable",
    "ConnectionScoped",
    "DependencyPlan",
    "PerBatch",
    "PerConnection",
    "SolvedCall",
    "is_dependency_parameter",
    "scope_with_stacks",
)

USER_KEY = "__tether_user__"
"""Name under which the `Tether(user=...)` dependency is solved; never an input."""

_SPECIAL_TYPES = (HTTPConnection, Response, BackgroundTasks, SecurityScopes)
_DEPENDENCY_MARKERS = (params.Depends, params.Header, params.Cookie)
_INPUT_MARKERS = (params.Query, params.Path, params.Body)


_PER_CALL: dict[Any, Callable[[Any], Any]] = {}


def provide_per_call(call: Any, factory: Callable[[Any], Any]) -> None:
    """Have tether make the value of dependency `call` itself, per call, from its `CallContext`.

    The value is put in FastAPI's dependency cache before solving, on the event loop, so a
    class dependency (which FastAPI would construct in a worker thread) costs no thread
    hop. `Depends(call, use_cache=False)` still goes through FastAPI.
    """
    _PER_CALL[call] = factory


def _cache_key(dependant: Dependant) -> Any:
    """FastAPI's dependency-cache key of a dependant (a property before 0.14x, a function after)."""
    key = getattr(dependant, "cache_key", None)
    if key is not None:
        return key
    from fastapi.dependencies.models import _get_cache_key

    return _get_cache_key(dependant=dependant)


class BatchScoped(params.Depends):
    """A `Depends` solved once per JSON-RPC batch (and per call elsewhere), shared by its items."""


class ConnectionScoped(params.Depends):
    """A `Depends` solved once per WebSocket connection (and per call elsewhere)."""


def PerBatch(dependency: Any, *, use_cache: bool = True) -> Any:
    """Declare a dependency solved once per JSON-RPC batch and shared by every item in it."""
    return BatchScoped(dependency=dependency, use_cache=use_cache)


def PerConnection(dependency: Any, *, use_cache: bool = True) -> Any:
    """Declare a dependency solved once per WebSocket connection and shared by its messages."""
    return ConnectionScoped(dependency=dependency, use_cache=use_cache)


def as_guard(guard: Any, *, where: str) -> params.Depends:
    """Return a guard (a callable, or a `Depends`) as a dependency to solve before the call.

    Raises:
        ConfigurationError: the guard is neither.
    """
    if isinstance(guard, params.Depends):
        return guard
    if callable(guard):
        depends: params.Depends = Depends(guard)
        return depends
    raise ConfigurationError(f"{where}: guards are callables or Depends(...), not {guard!r}")


def _strip_annotated(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    if get_origin(annotation) is Annotated:
        base, *metadata = get_args(annotation)
        return base, tuple(metadata)
    return annotation, ()


def is_dependency_parameter(name: str, annotation: Any, default: Any, *, where: str) -> bool:
    """Say whether a parameter is solved by FastAPI (True) or is operation input (False).

    Raises:
        ConfigurationError: the parameter uses a FastAPI marker that has no meaning for an
            operation (`Query`, `Path`, `Body`, `Form`, `File`).
    """
    base, metadata = _strip_annotated(annotation)
    for marker in (default, *metadata):
        if isinstance(marker, _DEPENDENCY_MARKERS):
            return True
        if isinstance(marker, _INPUT_MARKERS):
            raise ConfigurationError(
                f"{where}: parameter {name!r} uses {type(marker).__name__}(); operation inputs"
                " are plain parameters, constrained with pydantic's Field() if needed"
            )
    return isinstance(base, type) and issubclass(base, _SPECIAL_TYPES)


_UNSUPPLIABLE = (
    ("query_params", "a query parameter (a plain parameter, or Query())"),
    ("path_params", "a Path() parameter"),
    ("body_params", "a {marker}() parameter"),
)


def _qualified_name(call: Any) -> str:
    target = call if inspect.isfunction(call) or inspect.isclass(call) else type(call)
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None) or repr(call)
    return f"{module}.{name}" if module else name


def _refusal(where: str, call: Any, parameter: str, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where}: dependency {_qualified_name(call)} declares {parameter!r} as {what}, which"
        " tether cannot supply the same way on every transport; make it an input of the"
        " operation (a parameter of the operation function), or read it in the dependency"
        " from a Header(), a Cookie() or the Request"
    )


def _refuse_forms(parameters: Sequence[inspect.Parameter], where: str) -> None:
    """Refuse `Form()` / `File()` parameters of dependencies before FastAPI sees them.

    FastAPI raises (and logs) a RuntimeError for them when python-multipart is missing,
    which would hide the reason; this walk names the dependency and the parameter instead.
    """
    pending: list[Any] = []
    for parameter in parameters:
        depends = _depends_of(parameter)
        if depends is not None:
            # `Depends()` without a callable depends on the annotation, as in FastAPI.
            pending.append(depends.dependency or _strip_annotated(parameter.annotation)[0])
    seen: set[int] = set()
    while pending:
        call = pending.pop()
        if id(call) in seen:
            continue
        seen.add(id(call))
        try:
            signature = get_typed_signature(call)
        except (TypeError, ValueError):  # not introspectable: FastAPI reports it
            continue
        for parameter in signature.parameters.values():
            base, metadata = _strip_annotated(parameter.annotation)
            for marker in (parameter.default, *metadata):
                if isinstance(marker, params.Form):  # File() is a Form()
                    raise _refusal(
                        where, call, parameter.name, f"a {type(marker).__name__}() parameter"
                    )
                if isinstance(marker, params.Depends):
                    pending.append(marker.dependency if marker.dependency is not None else base)


def check_suppliable(dependant: Dependant, *, where: str) -> None:
    """Refuse a dependency tree in which some dependency reads what tether cannot supply.

    Only the dependencies of `dependant` are checked, not its own parameters (those of
    an operation are checked as they are split into inputs and dependencies).

    Raises:
        ConfigurationError: naming the dependency (qualified name) and the parameter.
    """
    pending = list(dependant.dependencies)
    while pending:
        sub = pending.pop()
        for attribute, what in _UNSUPPLIABLE:
            for model_field in getattr(sub, attribute):
                marker = type(model_field.field_info).__name__
                raise _refusal(where, sub.call, model_field.name, what.format(marker=marker))
        pending.extend(sub.dependencies)


class SolvedCall:
    """The values FastAPI solved for one call, and what the call's dependencies left behind."""

    __slots__ = ("background", "cache", "response", "values")

    def __init__(
        self,
        values: dict[str, Any],
        response: Response,
        background: BackgroundTasks | None,
        cache: dict[Any, Any],
    ) -> None:
        self.values = values
        self.response = response
        self.background = background
        self.cache = cache
        """FastAPI's dependency cache after solving: seeds calls that share these values."""


Gatekeeper = Callable[[Any], Awaitable[None]]
"""Called with the resolved user between the gate and the operation's own dependencies."""


def _compile_dependant(parameters: Sequence[inspect.Parameter], path: str, where: str) -> Dependant:
    _refuse_forms(parameters, where)

    def dependencies_of_operation(**values: Any) -> dict[str, Any]:
        return values

    dependencies_of_operation.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    dependant = get_dependant(path=path, call=dependencies_of_operation)
    check_suppliable(dependant, where=where)
    return dependant


class DependencyPlan:
    """Compiled FastAPI `Dependant`s for one operation, built once at registration.

    Two stages, solved with one shared cache: the *gate* (the app's own dependencies,
    Tether-level dependencies, guards and the user resolver, in that order) and then the
    operation's own dependencies. Auth is checked between them, so an unauthenticated
    call never opens the operation's resources (a database session, say).

    The app's dependencies (`FastAPI(dependencies=...)`) are solved once per request, as
    FastAPI solves them for its routes: they count as batch-scoped on JSON-RPC (a batch
    is one HTTP request) and connection-scoped on the WebSocket (solved at the handshake).

    Raises:
        ConfigurationError: a dependency reads a query, path, body, form or file parameter.
    """

    __slots__ = (
        "app_dependencies",
        "batch_scoped",
        "connection_scoped",
        "dependant",
        "dependencies",
        "gate",
        "has_user",
        "names",
        "parameters",
        "path",
        "per_call",
        "user",
        "wants_websocket",
    )

    def __init__(
        self,
        parameters: Sequence[inspect.Parameter],
        *,
        path: str,
        dependencies: Sequence[params.Depends] = (),
        user: params.Depends | None = None,
        app_dependencies: Sequence[params.Depends] = (),
        where: str = "operation",
    ) -> None:
        # Gate dependencies run first, like a router's `dependencies=`; their values are
        # solved under private names and dropped.
        gate_params = [
            inspect.Parameter(
                f"__tether_dependency_{index}__",
                inspect.Parameter.KEYWORD_ONLY,
                default=depends,
                annotation=Any,
            )
            for index, depends in enumerate((*app_dependencies, *dependencies))
        ]
        if user is not None:
            gate_params.append(
                inspect.Parameter(
                    USER_KEY, inspect.Parameter.KEYWORD_ONLY, default=user, annotation=Any
                )
            )
        self.gate: Dependant | None = (
            _compile_dependant(gate_params, path, where) if gate_params else None
        )
        """App-wide and Tether-level dependencies, guards and the user resolver, solved first."""
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters]
        self.dependant: Dependant | None = _compile_dependant(own, path, where) if own else None
        """The operation's own dependency parameters, solved once the gate has passed."""
        self.names: tuple[str, ...] = tuple(p.name for p in parameters)
        """Names of the operation's own dependency parameters, passed to the function."""
        self.has_user = user is not None
        """Whether the gate resolves the user (the operation has an auth policy)."""
        self.parameters: tuple[inspect.Parameter, ...] = tuple(parameters)
        """The operation's own dependency parameters, as declared."""
        self.wants_websocket = _asks_for(self, "websocket_param_name") and not _asks_for(
            self, "request_param_name"
        )
        """Some dependency takes the `WebSocket` and none the `Request`: on a socket, give
        them the connection rather than a request derived from it."""
        self.per_call: tuple[tuple[Any, Callable[[Any], Any]], ...] = _per_call_values(self)
        """(cache key, factory) of each dependency tether makes per call (`provide_per_call`)."""
        declared = [*dependencies, *(_depends_of(p) for p in parameters)]
        self.app_dependencies: tuple[params.Depends, ...] = tuple(app_dependencies)
        """The app's own dependencies, solved once per request (batch, connection)."""
        self.dependencies: tuple[params.Depends, ...] = tuple(dependencies)
        """Tether-level dependencies and guards, as given."""
        self.user = user
        """The user resolver, when the operation has an auth policy."""
        self.path = path
        """The path the dependencies are compiled against."""
        self.batch_scoped: tuple[params.Depends, ...] = (
            *self.app_dependencies,
            *(d for d in declared if isinstance(d, BatchScoped)),
        )
        """Dependencies solved once per batch when the call is a batch item."""
        self.connection_scoped: tuple[params.Depends, ...] = (
            *self.app_dependencies,
            *(d for d in declared if isinstance(d, ConnectionScoped)),
        )
        """Dependencies solved once per connection when the call is a socket message."""

    def uses(self, call: Any) -> bool:
        """Whether the operation's own dependencies (not its gate) call `call`, at any depth."""
        pending = [self.dependant] if self.dependant is not None else []
        while pending:
            dependant = pending.pop()
            for sub in dependant.dependencies:
                if sub.call is call:
                    return True
                pending.append(sub)
        return False

    def with_app_dependencies(
        self, app_dependencies: Sequence[params.Depends], *, where: str
    ) -> DependencyPlan:
        """Return this plan with the app's own dependencies solved before its gate.

        Raises:
            ConfigurationError: an app dependency reads what tether cannot supply.
        """
        return DependencyPlan(
            self.parameters,
            path=self.path,
            dependencies=self.dependencies,
            user=self.user,
            app_dependencies=app_dependencies,
            where=where,
        )

    async def solve(
        self,
        request: Request | WebSocket,
        *,
        overrides_provider: Any,
        dependency_cache: dict[Any, Any] | None = None,
        gatekeeper: Gatekeeper | None = None,
    ) -> SolvedCall:
        """Solve the gate, call `gatekeeper(user)`, then solve the operation's dependencies.

        `request`'s scope carries the exit stacks. The user (when the plan resolves one) is
        removed from the returned values and passed to `gatekeeper`.

        Raises:
            RequestValidationError: a `Header`, `Cookie` or sub-dependency parameter did not
                validate (FastAPI's exception; the invoker answers it as `ValidationFailed`).
        """
        stack = request.scope["fastapi_inner_astack"]
        values: dict[str, Any] = {}
        response: Response | None = None
        background: BackgroundTasks | None = None
        cache = dependency_cache
        for dependant in (self.gate, self.dependant):
            if dependant is None:
                continue
            solved = await solve_dependencies(
                request=request,
                dependant=dependant,
                response=response,
                background_tasks=background,
                dependency_overrides_provider=overrides_provider,
                dependency_cache=cache,
                async_exit_stack=stack,
                embed_body_fields=False,
            )
            if solved.errors:
                # FastAPI's own exception, as on a route: an `except RequestValidationError`
                # in a yield dependency matches it. The invoker maps it to ValidationFailed.
                raise RequestValidationError(solved.errors)
            values.update(solved.values)
            response = solved.response
            background = solved.background_tasks
            cache = solved.dependency_cache
            if dependant is self.gate and gatekeeper is not None:
                await gatekeeper(values.pop(USER_KEY, None))
        if response is None:
            response = Response()
            del response.headers["content-length"]
            response.status_code = None  # type: ignore[assignment]
        return SolvedCall(values, response, background, cache if cache is not None else {})


def _per_call_values(plan: DependencyPlan) -> tuple[tuple[Any, Callable[[Any], Any]], ...]:
    found: dict[Any, Callable[[Any], Any]] = {}
    pending = [d for d in (plan.gate, plan.dependant) if d is not None]
    while pending:
        dependant = pending.pop()
        for sub in dependant.dependencies:
            factory = _PER_CALL.get(sub.call)
            if factory is not None and sub.use_cache:
                found.setdefault(_cache_key(sub), factory)
            pending.append(sub)
    return tuple(found.items())


def _asks_for(plan: DependencyPlan, attribute: str) -> bool:
    pending = [d for d in (plan.gate, plan.dependant) if d is not None]
    while pending:
        dependant = pending.pop()
        if getattr(dependant, attribute, None):
            return True
        pending.extend(dependant.dependencies)
    return False


def _depends_of(parameter: inspect.Parameter) -> params.Depends | None:
    _, metadata = _strip_annotated(parameter.annotation)
    for marker in (parameter.default, *metadata):
        if isinstance(marker, params.Depends):
            return marker
    return None


def scope_with_stacks(
    scope: MutableMapping[str, Any], inner: AsyncExitStack, function: AsyncExitStack
) -> dict[str, Any]:
    """Return a child scope whose yield dependencies close on the given stacks.

    Each call gets its own child scope, so concurrent calls sharing one request (batch items,
    socket messages) never share exit stacks: every stack is entered and closed in one task.
    """
    child = dict(scope)
    child["fastapi_inner_astack"] = inner
    child["fastapi_function_astack"] = function
    child["fastapi_astack"] = inner  # the key FastAPI used before 0.121
    return child
