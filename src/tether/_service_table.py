"""Reading a service class: its table of operations, dependencies and policy, built once.

`Service.__init_subclass__` calls `build_table` when a subclass is created; the table is
all that `Tether.include` reads later (see `tether.services`). Inheritance is resolved
here: names, auth policies, tags, guards, excluded operations, and the type variables of
generic bases.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, get_origin

from fastapi import params

from ._introspect import resolve_hints, substitute_typevars, typevar_map
from .auth import validate_policy
from .dependencies import as_guard, is_dependency_parameter
from .errors import ConfigurationError
from .operation import OperationSpec, get_spec, take_marked_methods

__all__ = ("UNSET", "ServiceMethod", "ServiceTable", "build_table")

UNSET: Any = object()
"""Stands for a class keyword argument that was not given (None is a value for some)."""


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
    hints = resolve_hints(cls, where)
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
    hints = resolve_hints(func, where)
    signature = inspect.signature(func)
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise ConfigurationError(f"{where}: a service operation takes `self` first")
    return signature.replace(parameters=parameters[1:]), hints


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


def build_table(
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
    """Read a Service subclass into its table, once, when the class is created.

    The keyword arguments are the class keywords (see `Service`); `auth` is `UNSET` when
    the class does not set it, and is then inherited.

    Raises:
        ConfigurationError: the class cannot be a service as written.
    """
    where = f"service {cls.__qualname__}"
    _check_init(cls, where)
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
    typevars = typevar_map(cls)
    dependencies = _dependency_attributes(cls, typevars, where)
    methods = _operation_methods(cls, dependencies, typevars, where)
    excluded = _excluded(cls, parents, methods, exclude, where)
    for removed in excluded:
        methods.pop(removed, None)
    return ServiceTable(
        name=service_name,
        abstract=abstract,
        auth=validate_policy(auth, where=where)
        if auth is not UNSET
        else _inherited_auth(cls, where),
        tags=tuple(dict.fromkeys((*(t for table in reversed(parents) for t in table.tags), *tags))),
        guards=(*inherited_guards, *own_guards),
        dependencies=dependencies,
        methods=methods,
        excluded=frozenset(excluded),
        custom_init="__init__" in cls.__dict__ or any(table.custom_init for table in parents),
    )


def _check_init(cls: type, where: str) -> None:
    if "__init__" in cls.__dict__:
        # Per-call instances are then built with cls(**dependencies), as in unit tests.
        init = inspect.signature(cls.__dict__["__init__"])
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in init.parameters.values()):
            raise ConfigurationError(
                f"{where}: a service __init__ must accept the dependencies as keywords"
                " (**dependencies) and pass them to super().__init__"
            )


def _dependency_attributes(
    cls: type, typevars: Mapping[Any, Any], where: str
) -> dict[str, inspect.Parameter]:
    """The class-attribute dependencies, typed for this class; each attribute reads per call."""
    dependencies = {
        attribute: parameter.replace(annotation=substitute_typevars(parameter.annotation, typevars))
        for attribute, parameter in _class_dependencies(cls, where).items()
    }
    for attribute in dependencies:
        if not isinstance(cls.__dict__.get(attribute), _DependencyAttribute):
            setattr(cls, attribute, _DependencyAttribute(attribute))
    return dependencies


def _operation_methods(
    cls: type,
    dependencies: Mapping[str, inspect.Parameter],
    typevars: Mapping[Any, Any],
    where: str,
) -> dict[str, ServiceMethod]:
    """Every marked method along the MRO, base-most first, so that overrides win."""
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
    return methods


def _excluded(
    cls: type,
    parents: Sequence[ServiceTable],
    methods: Mapping[str, ServiceMethod],
    exclude: Sequence[str],
    where: str,
) -> set[str]:
    """The operations removed: the bases' exclusions, unless marked again here, and `exclude`."""
    excluded = {name for table in parents for name in table.excluded}
    # An operation a base excluded stays excluded, unless this class marks it again.
    excluded -= {a for a, v in cls.__dict__.items() if get_spec(v) is not None}
    for removed in exclude:
        if removed not in methods:
            raise ConfigurationError(f"{where}: exclude names no operation: {removed!r}")
        excluded.add(removed)
    return excluded


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
        hints = {name: substitute_typevars(hint, typevars) for name, hint in hints.items()}
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
