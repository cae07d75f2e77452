"""Compiling handlers: `@api.handler` (one per message type) and `@api.on` (many per event type).

A message handler is an ordinary operation whose input model *is* its message class: the
message's fields are the wire params, and the handler receives the validated message. An
event handler is an operation that no transport serves: its one input is the event, its
other parameters are dependencies, solved as an operation's are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from fastapi import params
from pydantic import BaseModel

from .._compile import compile_operation
from .._introspect import query_shape, resolve_hints
from .._strict import query_reader, strict_validator
from ..dependencies import is_dependency_parameter
from ..errors import ConfigurationError
from ..operation import Operation, OperationSpec
from .messages import Command, Event, Message, Query, message_result

__all__ = ("EventHandler", "compile_event_handler", "compile_message_handler")


def _split(
    func: Callable[..., Any], where: str
) -> tuple[inspect.Signature, dict[str, Any], list[inspect.Parameter]]:
    """The signature, its hints, and its input (non-dependency) parameters."""
    signature = inspect.signature(func)
    hints = resolve_hints(func, where)
    inputs = [
        param
        for param in signature.parameters.values()
        if not is_dependency_parameter(
            param.name, hints.get(param.name, Any), param.default, where=where
        )
    ]
    return signature, hints, inputs


def compile_message_handler(
    func: Callable[..., Any],
    spec: OperationSpec,
    *,
    dependencies: Sequence[params.Depends],
    user: params.Depends | None,
    app_dependencies: Sequence[params.Depends],
    tags: Sequence[str],
    strict: bool = False,
) -> tuple[type[Message], Operation]:
    """Compile a `@api.handler` function into its message class and its operation.

    `strict` validates the message in pydantic's strict JSON mode, as for any operation
    (`Tether(strict=)`, `@api.handler(strict=True)`).

    Raises:
        ConfigurationError: the function does not take exactly one `Command`/`Query`
            (besides dependencies), or returns another type than the message declares.
    """
    name = spec.name or str(getattr(func, "__name__", ""))
    where = f"handler {name!r}"
    signature, hints, inputs = _split(func, where)
    message_types = [param for param in inputs if _is_message_class(hints.get(param.name))]
    if len(inputs) != 1 or len(message_types) != 1:
        found = ", ".join(f"{p.name}: {_type_name(hints.get(p.name))}" for p in inputs) or "none"
        raise ConfigurationError(
            f"{where}: a handler takes one Command[R] or Query[R] subclass besides its"
            f" dependencies (found inputs: {found})"
        )
    param = message_types[0]
    message_type: type[Message] = hints[param.name]
    kind = "command" if issubclass(message_type, Command) else "query"
    if spec.kind != kind:
        spec = replace(spec, kind=kind)  # type: ignore[arg-type]
    declared = message_result(message_type)
    returns = hints.get("return", inspect.Signature.empty)
    if isinstance(declared, TypeVar):
        declared = None  # an open Command[R]: the handler's return type decides
    if declared is not None:
        if returns is inspect.Signature.empty:
            hints = {**hints, "return": declared}
        elif returns != declared:
            raise ConfigurationError(
                f"{where} returns {_type_name(returns)}, but {message_type.__name__} is"
                f" {kind.capitalize()}[{_type_name(declared)}]: make them agree"
            )
    # Compiled without the message parameter (its fields become the input instead).
    rest = signature.replace(
        parameters=[p for p in signature.parameters.values() if p is not param]
    )
    op = compile_operation(
        func,
        spec,
        name=name,
        dependencies=dependencies,
        user=user,
        app_dependencies=app_dependencies,
        tags=tags,
        signature=rest,
        hints=hints,
    )
    validate: Callable[[Any], Any] = (
        strict_validator(message_type.__pydantic_core_schema__, None)
        if strict
        else message_type.__pydantic_validator__.validate_python
    )
    param_name = param.name

    def validate_message(data: Any) -> dict[str, Any]:
        return {param_name: validate(data)}

    shapes = {
        (info.alias or field): query_shape(info.annotation)
        for field, info in message_type.model_fields.items()
    }
    op = replace(
        op,
        input_model=message_type,
        # By their names on the wire: positional params bind to aliases.
        input_names=tuple(info.alias or field for field, info in message_type.model_fields.items()),
        query_shape=None
        if any(shape is None for shape in shapes.values())
        else {key: bool(shape) for key, shape in shapes.items()},
        validate_params=validate_message,
        strict=strict,
        validate_query=query_reader(validate_message) if strict else None,
        message_param=param.name,
    )
    return message_type, op


@dataclass(frozen=True, slots=True)
class EventHandler:
    """One `@api.on` handler: the event types it takes, its group, its retries, and its operation."""

    name: str
    """The handler's name (its processed-id records are kept under it)."""
    types: tuple[type[Event], ...]
    """The event types it handles."""
    group: str
    """The consumer group it belongs to: each event reaches each group once."""
    retries: int
    """Attempts after the first one, before the event is parked."""
    param: str
    """The parameter that receives the event."""
    op: Operation
    """The compiled handler (dependencies solved as an operation's)."""


def compile_event_handler(
    func: Callable[..., Any],
    types: Sequence[type[Event]],
    *,
    name: str | None,
    group: str,
    retries: int,
) -> EventHandler:
    """Compile an `@api.on(...)` function into an `EventHandler`.

    Raises:
        ConfigurationError: no event type, a type that is not an `Event`, or a function that
            does not take exactly one input (the event) that can hold every listed type.
    """
    handler_name = name or f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '')}"
    where = f"event handler {handler_name!r}"
    if not types:
        raise ConfigurationError(f"{where}: name the event types: @api.on(NoteCreated)")
    for event_type in types:
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise ConfigurationError(f"{where}: @api.on takes Event subclasses, not {event_type!r}")
    if not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"{where}: retries= takes an integer >= 0")
    if not (isinstance(group, str) and group):
        raise ConfigurationError(f"{where}: group= takes a non-empty string")
    _, hints, inputs = _split(func, where)
    if len(inputs) != 1:
        raise ConfigurationError(
            f"{where}: an event handler takes the event as its one input besides dependencies"
            f" (found: {', '.join(p.name for p in inputs) or 'none'})"
        )
    param = inputs[0]
    annotation = hints.get(param.name)
    if annotation is not None:
        accepted = _classes_of(annotation)
        for event_type in types:
            if not any(issubclass(event_type, cls) for cls in accepted):
                raise ConfigurationError(
                    f"{where}: its parameter {param.name!r} is {_type_name(annotation)}, which"
                    f" cannot hold {event_type.__name__}"
                )
    op_name = "on_" + "".join(c if c.isalnum() else "_" for c in handler_name).strip("_")
    op = compile_operation(func, OperationSpec(kind="command", name=op_name), name=op_name)
    return EventHandler(handler_name, tuple(types), group, retries, param.name, op)


def _is_message_class(annotation: Any) -> bool:
    return (
        isinstance(annotation, type)
        and issubclass(annotation, Message)
        and annotation not in (Message, Command, Query)
    )


def _classes_of(annotation: Any) -> tuple[type, ...]:
    if get_origin(annotation) in (Union, UnionType):
        return tuple(cls for arg in get_args(annotation) for cls in _classes_of(arg))
    if annotation is Any:
        return (object,)
    return (annotation,) if isinstance(annotation, type) else (BaseModel,)


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return "unannotated"
    return getattr(annotation, "__name__", None) or repr(annotation)
