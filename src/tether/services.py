"""Class-based services: operations as methods, dependencies as class attributes.

```python
class Users(TenantScoped, name="users", auth=True, tags=["users"]):
    db: Annotated[Session, Depends(get_db)]

    @query
    async def get(self, id: int) -> User: ...
```

`Service` is a thin base that the registry *reads*: `__init_subclass__` computes the
service table once, at class creation (`tether._service_table`), and stores it on that
class alone. Nothing touches an app or a router at import time; `Tether.include(Users)`
compiles each method (`compile_service`, below) into an ordinary `Operation` named
`{service}.{method}`, whose dependencies are the method's own
plus the class attributes it uses, solved together in one pass with one cache. Each call
gets a fresh instance with its dependencies set before the method runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from fastapi import params

from ._compile import compile_operation
from ._introspect import free_typevars
from ._service_table import UNSET, ServiceMethod, ServiceTable, build_table
from .errors import ConfigurationError
from .operation import Operation

__all__ = (
    "Service",
    "ServiceMethod",
    "ServiceTable",
    "bound_operation_function",
    "compile_service",
    "service_table",
)


class Service:
    """Base class of class-based services, whose marked methods become operations.

    Class keyword arguments (all optional, all inherited and added to by subclasses):

    - `name`: the service name, the prefix of its operation names (default: the class
      name in snake case);
    - `abstract`: a base that cannot be included itself;
    - `auth`: default auth policy of its operations (an operation's own `auth=` wins);
    - `tags`: OpenAPI tags, appended to the inherited ones;
    - `guards`: dependencies (callables or `Depends`) run before every operation, appended
      to the inherited ones unless `replace_guards=True`;
    - `exclude`: names of inherited operations to remove.
    """

    __tether_service__: ClassVar[ServiceTable]

    def __init__(self, **dependencies: Any) -> None:
        """Build an instance directly (in unit tests), with its dependencies as keywords."""
        table = type(self).__tether_service__
        for name, value in dependencies.items():
            if name not in table.dependencies:
                raise TypeError(f"{type(self).__name__} has no dependency attribute {name!r}")
            setattr(self, name, value)

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        abstract: bool = False,
        auth: Any = UNSET,
        tags: Sequence[str] = (),
        guards: Sequence[Any] = (),
        replace_guards: bool = False,
        exclude: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.__tether_service__ = build_table(
            cls,
            name=name,
            abstract=abstract,
            auth=auth,
            tags=tags,
            guards=guards,
            replace_guards=replace_guards,
            exclude=exclude,
        )


def service_table(cls: Any) -> ServiceTable | None:
    """Return the table of a Service subclass, or None for anything else."""
    if isinstance(cls, type) and issubclass(cls, Service) and cls is not Service:
        return cls.__tether_service__
    return None


def compile_service(
    cls: type,
    table: ServiceTable,
    *,
    dependencies: Sequence[params.Depends] = (),
    user: params.Depends | None = None,
    app_dependencies: Sequence[params.Depends] = (),
    tags: Sequence[str] = (),
    strict: bool = False,
) -> list[Operation]:
    """Compile every operation of a service class, named `{service}.{method}`.

    The keyword arguments are the including Tether's: its dependencies (the service's
    guards are added after them), user resolver, app dependencies, tags and default
    strictness.

    Raises:
        ConfigurationError: the service is abstract, a type variable is left unbound, or
            a method cannot be compiled.
    """
    if table.abstract:
        raise ConfigurationError(f"{cls.__qualname__} is abstract and cannot be included")
    ops = []
    for attribute, method in table.methods.items():
        spec = method.spec
        used = (
            dict(table.dependencies)
            if spec.uses is None
            else {name: table.dependencies[name] for name in spec.uses}
        )
        signature = method.signature.replace(
            parameters=[*method.signature.parameters.values(), *used.values()]
        )
        hints = {**method.hints, **{name: p.annotation for name, p in used.items()}}
        unresolved = {repr(v) for hint in hints.values() for v in free_typevars(hint)}
        if unresolved:
            raise ConfigurationError(
                f"{cls.__qualname__}.{attribute}: type variables {sorted(unresolved)} are not"
                " bound; subclass the generic service with concrete types"
            )
        ops.append(
            compile_operation(
                bound_operation_function(cls, method, tuple(used), custom_init=table.custom_init),
                replace(
                    spec,
                    auth=table.auth if spec.auth is None else spec.auth,
                    tags=(*table.tags, *spec.tags),
                ),
                name=f"{table.name}.{spec.name or attribute}",
                dependencies=(*dependencies, *table.guards),
                user=user,
                app_dependencies=app_dependencies,
                tags=tags,
                signature=signature,
                hints=hints,
                doc=inspect.getdoc(method.func),
                original=method.func,
                strict=strict if spec.strict is None else spec.strict,
            )
        )
    return ops


def bound_operation_function(
    cls: type, method: ServiceMethod, names: Sequence[str], *, custom_init: bool = False
) -> Callable[..., Any]:
    """Return the function an Operation calls: a fresh instance per call, dependencies set."""
    func = method.func

    if custom_init:

        def instantiate(kwargs: dict[str, Any]) -> Any:
            return cls(**{name: kwargs.pop(name) for name in names})

    else:
        new = object.__new__

        def instantiate(kwargs: dict[str, Any]) -> Any:
            instance: Any = new(cls)
            state = instance.__dict__
            for name in names:
                state[name] = kwargs.pop(name)
            return instance

    bound: Callable[..., Any]
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):

        def open_stream(**kwargs: Any) -> Any:
            # Returns the method's own generator: the invoker iterates and closes it, and
            # the instance lives as long as the generator references it.
            return func(instantiate(kwargs), **kwargs)

        bound = open_stream
    elif inspect.iscoroutinefunction(func):

        async def call_async(**kwargs: Any) -> Any:
            return await func(instantiate(kwargs), **kwargs)

        bound = call_async
    else:

        def call_sync(**kwargs: Any) -> Any:
            return func(instantiate(kwargs), **kwargs)

        bound = call_sync
    # The method the operation calls: `affects=[Service.query_method]` finds it by this.
    bound.__dict__["__tether_method__"] = func
    return bound
