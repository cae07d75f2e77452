"""Class-based services: operations as methods, dependencies as class attributes.

```python
class Users(TenantScoped, name="users", auth=True, tags=["users"]):
    db: Annotated[Session, Depends(get_db)]

    @query
    async def get(self, id: int) -> User: ...
```

`Service` is a thin base that the registry *reads*: `__init_subclass__` computes the
service table once, at class creation, and stores it on that class alone. Nothing touches
an app or a router at import time; `Tether.include(Users)` compiles each method into an
ordinary `Operation` named `{service}.{method}`, whose dependencies are the method's own
plus the class attributes it uses, solved together in one pass with one cache. Each call
gets a fresh instance with its dependencies set before the method runs.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, get_args, get_origin

from fastapi import params
from pydantic import BaseModel

from .dependencies import as_guard, is_dependency_parameter
from .errors import ConfigurationError
from .operation import OperationSpec, get_spec, take_marked_methods

__all__ = ("Service", "ServiceMethod", "ServiceTable")

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class ServiceMethod:
    """One operation of a service: the function to call and what its decorator recorded."""

    attribute: str
    func: Callable[..., Any]
    spec: OperationSpec
    signature: inspect.Signature
    """The method's signature without `self`."""
    hints: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ServiceTable:
    """Everything `Tether.include` needs about one service class, computed at class creation."""

    name: str
    abstract: bool
    auth: Any
    tags: tuple[str, ...]
    guards: tuple[params.Depends, ...]
    dependencies: Mapping[str, inspect.Parameter]
    """Class-attribute dependencies, by attribute name, as keyword-only parameters."""
    methods: Mapping[str, ServiceMethod] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()
    """Operations removed with exclude=[...]; they stay removed in subclasses."""
    custom_init: bool = False
    """The class (or a base) overrides __init__: per-call instances are built by calling it."""


class _DependencyAttribute:
    """Class-level stand-in for a dependency attribute: reads the per-call value, or explains."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]
        except KeyError:
            raise AttributeError(
                f"dependency {self.name!r} of {type(instance).__name__} is not set: the"
                f" operation does not declare it in uses=[...], or the instance was built"
                f" without it"
            ) from None

    def __set__(self, instance: object, value: Any) -> None:
        instance.__dict__[self.name] = value


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _class_hints(cls: type, where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except (NameError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"{where}: cannot resolve a type annotation: {exc}") from exc


def _declared_default(cls: type, name: str) -> Any:
    """The class-level value of `name` as the user wrote it (a marker, a value, or unset)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            value = klass.__dict__[name]
            if isinstance(value, _DependencyAttribute):
                # Set by a Service base at its creation; its table kept the original marker.
                table = klass.__dict__["__tether_service__"]
                return table.dependencies[name].default
            return value
    return inspect.Parameter.empty


def _class_dependencies(cls: type, where: str) -> dict[str, inspect.Parameter]:
    hints = _class_hints(cls, where)
    found: dict[str, inspect.Parameter] = {}
    for name, annotation in hints.items():
        if name.startswith("__") or get_origin(annotation) is ClassVar or annotation is ClassVar:
            continue
        default = _declared_default(cls, name)
        if is_dependency_parameter(name, annotation, default, where=where):
            found[name] = inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        elif default is inspect.Parameter.empty:
            raise ConfigurationError(
                f"{where}: class attribute {name!r} is annotated but is neither a dependency"
                " (Depends, Security, Header, Cookie, Request...) nor given a value; mark it"
                " with a dependency or annotate it ClassVar"
            )
    return found


def _method_signature(
    func: Callable[..., Any], where: str
) -> tuple[inspect.Signature, dict[str, Any]]:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except (NameError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"{where}: cannot resolve a type annotation: {exc}") from exc
    signature = inspect.signature(func)
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise ConfigurationError(f"{where}: a service operation takes `self` first")
    return signature.replace(parameters=parameters[1:]), hints


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
        auth: Any = _UNSET,
        tags: Sequence[str] = (),
        guards: Sequence[Any] = (),
        replace_guards: bool = False,
        exclude: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls.__tether_service__ = _build_table(
            cls,
            name=name,
            abstract=abstract,
            auth=auth,
            tags=tags,
            guards=guards,
            replace_guards=replace_guards,
            exclude=exclude,
        )


def _check_shadowed(cls: type, where: str) -> None:
    for klass in cls.__mro__:
        if klass is object:
            continue
        for func in take_marked_methods(klass):
            current = klass.__dict__.get(func.__name__)
            # The same `def` run again (a class factory) has the same code object: that is
            # another class of the same name, not a shadowing definition.
            same_definition = getattr(current, "__code__", None) is func.__code__
            if current is not func and not same_definition:
                raise ConfigurationError(
                    f"{where}: the marked method {func.__qualname__!r} is shadowed by a later"
                    " definition of the same name in the class body"
                )


def _parent_tables(cls: type) -> list[ServiceTable]:
    """The tables of every Service class in `cls`'s MRO (nearest first), `cls` excluded."""
    tables = []
    for klass in cls.__mro__[1:]:
        table = klass.__dict__.get("__tether_service__")
        if isinstance(table, ServiceTable):
            tables.append(table)
    return tables


def _direct_parent_tables(cls: type) -> list[ServiceTable]:
    """The nearest table along each direct base: the services `cls` combines."""
    tables: list[ServiceTable] = []
    for base in cls.__bases__:
        for klass in base.__mro__:
            table = klass.__dict__.get("__tether_service__")
            if isinstance(table, ServiceTable):
                if all(table is not t for t in tables):
                    tables.append(table)
                break
    return tables


def _inherited_auth(cls: type, where: str) -> Any:
    policies = [table.auth for table in _direct_parent_tables(cls)]
    distinct: list[Any] = []
    for policy in policies:
        if all(policy is not p and policy != p for p in distinct):
            distinct.append(policy)
    if len(distinct) > 1:
        raise ConfigurationError(
            f"{where}: its service bases have different auth policies ({distinct!r}); set"
            " auth= on this class to choose"
        )
    return distinct[0] if distinct else None


def _typevar_map(cls: type) -> dict[Any, Any]:
    """Map each TypeVar of a generic service base to the type a subclass gave it."""
    mapping: dict[Any, Any] = {}
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            origin = get_origin(base)
            parameters = getattr(origin, "__parameters__", ())
            for parameter, argument in zip(parameters, get_args(base), strict=False):
                mapping.setdefault(parameter, argument)
    # Resolve chains: Crud[T] <- Named[U] <- Pets(Named[Pet]).
    for parameter, argument in list(mapping.items()):
        seen = {parameter}
        while isinstance(argument, TypeVar) and argument in mapping and argument not in seen:
            seen.add(argument)
            argument = mapping[argument]
        mapping[parameter] = argument
    return mapping


def _substitute(annotation: Any, mapping: Mapping[Any, Any]) -> Any:
    if isinstance(annotation, TypeVar):
        return mapping.get(annotation, annotation)
    parameters = getattr(annotation, "__parameters__", None)
    if isinstance(parameters, tuple) and parameters and not isinstance(annotation, type):
        replacements = tuple(mapping.get(p, p) for p in parameters)
        if replacements != parameters:
            return annotation[replacements]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        parameters = annotation.__pydantic_generic_metadata__["parameters"]
        if parameters:
            generic: Any = annotation
            return generic[tuple(mapping.get(p, p) for p in parameters)]
    return annotation


def free_typevars(annotation: Any) -> tuple[Any, ...]:
    """Return the TypeVars still unresolved in an annotation."""
    if isinstance(annotation, TypeVar):
        return (annotation,)
    parameters = getattr(annotation, "__parameters__", None)
    if isinstance(parameters, tuple) and not isinstance(annotation, type):
        return parameters
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return tuple(annotation.__pydantic_generic_metadata__["parameters"])
    return ()


def _build_table(
    cls: type,
    *,
    name: str | None,
    abstract: bool,
    auth: Any,
    tags: Sequence[str],
    guards: Sequence[Any],
    replace_guards: bool,
    exclude: Sequence[str],
) -> ServiceTable:
    from .auth import validate_policy

    where = f"service {cls.__qualname__}"
    if "__init__" in cls.__dict__:
        # Per-call instances are then built with cls(**dependencies), as in unit tests.
        init = inspect.signature(cls.__dict__["__init__"])
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in init.parameters.values()):
            raise ConfigurationError(
                f"{where}: a service __init__ must accept the dependencies as keywords"
                " (**dependencies) and pass them to super().__init__"
            )
    _check_shadowed(cls, where)
    parents = _parent_tables(cls)
    service_name = name if name is not None else _snake(cls.__name__)
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", service_name):
        raise ConfigurationError(f"{where}: name must be a dotted identifier, not {service_name!r}")
    own_guards = tuple(as_guard(g, where=where) for g in guards)
    # Every Service base's guards, base-most first, each once: combining two services
    # keeps the guards of both.
    inherited_guards: tuple[params.Depends, ...] = ()
    if not replace_guards:
        inherited_guards = tuple(
            dict.fromkeys(g for table in reversed(parents) for g in table.guards)
        )
    typevars = _typevar_map(cls)
    dependencies = {
        attribute: parameter.replace(annotation=_substitute(parameter.annotation, typevars))
        for attribute, parameter in _class_dependencies(cls, where).items()
    }
    for attribute in dependencies:
        if not isinstance(cls.__dict__.get(attribute), _DependencyAttribute):
            setattr(cls, attribute, _DependencyAttribute(attribute))

    excluded = {name for table in parents for name in table.excluded}
    methods: dict[str, ServiceMethod] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        for attribute, value in klass.__dict__.items():
            spec = get_spec(value)
            if spec is not None and callable(value):
                methods[attribute] = _service_method(
                    attribute, value, spec, dependencies, typevars, where
                )
            elif attribute in methods and callable(value) and inspect.isfunction(value):
                # An undecorated override keeps the operation, with the new body.
                methods[attribute] = _service_method(
                    attribute, value, methods[attribute].spec, dependencies, typevars, where
                )
            elif attribute in methods:
                raise ConfigurationError(
                    f"{where}: {klass.__qualname__}.{attribute} replaces an operation with a"
                    " non-function; use exclude=[...] to remove an operation"
                )
    # An operation a base excluded stays excluded, unless this class marks it again.
    excluded -= {a for a, v in cls.__dict__.items() if get_spec(v) is not None}
    for removed in exclude:
        if removed not in methods:
            raise ConfigurationError(f"{where}: exclude names no operation: {removed!r}")
        excluded.add(removed)
    for removed in excluded:
        methods.pop(removed, None)
    return ServiceTable(
        name=service_name,
        abstract=abstract,
        auth=validate_policy(auth, where=where)
        if auth is not _UNSET
        else _inherited_auth(cls, where),
        tags=tuple(dict.fromkeys((*(t for table in reversed(parents) for t in table.tags), *tags))),
        guards=(*inherited_guards, *own_guards),
        dependencies=dependencies,
        methods=methods,
        excluded=frozenset(excluded),
        custom_init="__init__" in cls.__dict__ or any(table.custom_init for table in parents),
    )


def _service_method(
    attribute: str,
    func: Callable[..., Any],
    spec: OperationSpec,
    dependencies: Mapping[str, inspect.Parameter],
    typevars: Mapping[Any, Any],
    where: str,
) -> ServiceMethod:
    where = f"{where}, method {attribute!r}"
    signature, hints = _method_signature(func, where)
    if typevars:
        hints = {name: _substitute(hint, typevars) for name, hint in hints.items()}
    for parameter in signature.parameters.values():
        if parameter.name in dependencies:
            raise ConfigurationError(
                f"{where}: parameter {parameter.name!r} collides with the dependency attribute"
                f" of the same name"
            )
    for used in spec.uses or ():
        if used not in dependencies:
            raise ConfigurationError(f"{where}: uses=[...] names no dependency attribute: {used!r}")
    return ServiceMethod(attribute, func, spec, signature, hints)


def service_table(cls: Any) -> ServiceTable | None:
    """Return the table of a Service subclass, or None for anything else."""
    if isinstance(cls, type) and issubclass(cls, Service) and cls is not Service:
        return cls.__tether_service__
    return None


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

    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):

        def open_stream(**kwargs: Any) -> Any:
            # Returns the method's own generator: the invoker iterates and closes it, and
            # the instance lives as long as the generator references it.
            return func(instantiate(kwargs), **kwargs)

        return open_stream

    if inspect.iscoroutinefunction(func):

        async def call_async(**kwargs: Any) -> Any:
            return await func(instantiate(kwargs), **kwargs)

        return call_async

    def call_sync(**kwargs: Any) -> Any:
        return func(instantiate(kwargs), **kwargs)

    return call_sync
