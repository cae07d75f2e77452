"""Type introspection: what an annotation says about reading, streaming and generics.

Everything here looks at annotations once, at registration; nothing runs per call.
"""

from __future__ import annotations

import typing
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from uuid import UUID

from pydantic import BaseModel

from .errors import ConfigurationError

__all__ = (
    "free_typevars",
    "query_shape",
    "resolve_hints",
    "stream_item_type",
    "substitute_typevars",
    "typevar_map",
)

_ITERATOR_ORIGINS = (
    AsyncIterator,
    AsyncIterable,
    AsyncGenerator,
    Iterator,
    Iterable,
    Generator,
)

_SCALARS: tuple[type, ...] = (
    str,
    int,
    float,
    bool,
    Decimal,
    UUID,
    date,
    datetime,
    time,
    timedelta,
    Enum,
    PurePath,
    bytes,
)
_SEQUENCES = (list, set, frozenset, tuple, Sequence, typing.Sequence, typing.List, typing.Set)  # noqa: UP006


def resolve_hints(target: Callable[..., Any] | type, where: str) -> dict[str, Any]:
    """Return the type hints of a function or class, extras kept.

    Raises:
        ConfigurationError: an annotation names something that cannot be resolved.
    """
    try:
        return typing.get_type_hints(target, include_extras=True)
    except (NameError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"{where}: cannot resolve a type annotation: {exc}") from exc


def stream_item_type(annotation: Any) -> Any:
    """Return `T` of a stream's `AsyncIterator[T]` (or Iterator, Generator...) annotation."""
    origin = get_origin(annotation)
    if origin in _ITERATOR_ORIGINS:
        args = get_args(annotation)
        if args:
            return args[0]
    return Any


def _unwrap(annotation: Any) -> Any:
    if get_origin(annotation) is Annotated:
        return get_args(annotation)[0]
    return annotation


def _is_scalar(annotation: Any) -> bool:
    annotation = _unwrap(annotation)
    if annotation is Any or annotation is NoneType:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (Union, UnionType):
        return all(_is_scalar(arg) for arg in get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, _SCALARS)


def query_shape(annotation: Any) -> bool | None:
    """How a parameter reads from a query string: False single value, True repeated, None never."""
    if _is_scalar(annotation):
        return False
    base = _unwrap(annotation)
    args = get_args(base)
    if get_origin(base) in (Union, UnionType):
        non_none = [a for a in args if a is not NoneType]
        return query_shape(non_none[0]) if len(non_none) == 1 else None
    if get_origin(base) in _SEQUENCES and all(_is_scalar(a) for a in args if a is not Ellipsis):
        return True
    return None


def typevar_map(cls: type) -> dict[Any, Any]:
    """Map each TypeVar of a generic base of `cls` to the type a subclass gave it."""
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


def substitute_typevars(annotation: Any, mapping: Mapping[Any, Any]) -> Any:
    """Return `annotation` with the TypeVars that `mapping` binds replaced by their types."""
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
