"""Operations: the decorators that mark a function, and the Operation compiled from it once.

`query` and `command` only *mark* a function (they return it unchanged); a `Tether`
compiles marked functions into `Operation` objects when they are registered. Compiling
builds the input model from the non-dependency parameters, the dependency plan, and the
result encoder, so that nothing is introspected per call.
"""

from __future__ import annotations

import inspect
import re
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
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin, overload
from uuid import UUID

import orjson
from fastapi import params
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import SchemaValidator
from typing_extensions import TypedDict, Unpack

from ._strict import QueryParams, query_reader, strict_validator
from .auth import validate_policy
from .dependencies import DependencyPlan, is_dependency_parameter
from .errors import ConfigurationError, TetherError, ValidationFailed

__all__ = (
    "Kind",
    "Operation",
    "OperationOptions",
    "TetherOperationOptions",
    "OperationSpec",
    "command",
    "compile_operation",
    "get_spec",
    "make_spec",
    "operation",
    "query",
    "stream",
    "stream_item_type",
)

Kind = Literal["query", "command", "stream"]
"""What an operation does: a `query` reads (and may be called with GET), a `command` changes,
a `stream` yields many values (SSE, WebSocket subscriptions, `Tether.stream_call`)."""

F = TypeVar("F", bound=Callable[..., Any])

_SPEC_ATTRIBUTE = "__tether_operation__"
_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_KINDS = ("query", "command", "stream")


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What a decorator recorded about a function, before it is compiled."""

    kind: Kind
    name: str | None = None
    auth: Any = None
    tags: tuple[str, ...] = ()
    summary: str | None = None
    description: str | None = None
    deprecated: bool = False
    errors: tuple[type[TetherError], ...] = ()
    uses: tuple[str, ...] | None = None
    """For a service method: the class dependencies it reads (None: all of them)."""
    strict: bool | None = None
    """Validate inputs strictly (see `Tether(strict=)`); None: as the Tether says."""


_marked_methods: dict[str, list[Callable[..., Any]]] = {}
"""Marked functions defined in a class body, by "module:class qualname", until the class exists.

Lets a service detect a marked method that a later definition in the same body shadowed.
"""


def _note_method(func: Callable[..., Any]) -> None:
    qualname = getattr(func, "__qualname__", "")
    owner, _, _ = qualname.rpartition(".")
    if owner and not owner.endswith("<locals>"):
        _marked_methods.setdefault(f"{func.__module__}:{owner}", []).append(func)


def take_marked_methods(cls: type) -> list[Callable[..., Any]]:
    """Return (and forget) the marked functions whose definition was inside `cls`'s body."""
    return _marked_methods.pop(f"{cls.__module__}:{cls.__qualname__}", [])


def get_spec(func: Any) -> OperationSpec | None:
    """Return the spec a `query`/`command` decorator left on `func`, if any."""
    spec = getattr(func, _SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, OperationSpec) else None


def make_spec(
    kind: str,
    *,
    name: str | None = None,
    auth: Any = None,
    tags: Sequence[str] | None = None,
    summary: str | None = None,
    description: str | None = None,
    deprecated: bool = False,
    errors: Sequence[type[TetherError]] | None = None,
    uses: Sequence[str] | None = None,
    strict: bool | None = None,
) -> OperationSpec:
    """Check a decorator's options and return the spec they describe."""
    if strict is not None and not isinstance(strict, bool):
        raise ConfigurationError(f"strict= takes True, False or None, not {strict!r}")
    if kind not in _KINDS:
        raise ConfigurationError(f"kind must be one of {_KINDS}, not {kind!r}")
    for error in errors or ():
        if not (isinstance(error, type) and issubclass(error, TetherError)):
            raise ConfigurationError(f"errors= takes TetherError subclasses, not {error!r}")
    return OperationSpec(
        kind=kind,  # type: ignore[arg-type]
        name=name,
        # False is kept (not normalised to None): on a service method it overrides the
        # service's default policy.
        auth=False if auth is False else validate_policy(auth, where=name or "operation"),
        tags=tuple(tags or ()),
        summary=summary,
        description=description,
        deprecated=deprecated,
        errors=tuple(errors or ()),
        uses=None if uses is None else tuple(uses),
        strict=strict,
    )


class TetherOperationOptions(TypedDict, total=False):
    """The options `Tether.query`, `.command` and `.stream` take (see `operation`)."""

    name: str | None
    auth: Any
    tags: Sequence[str] | None
    summary: str | None
    description: str | None
    deprecated: bool
    errors: Sequence[type[TetherError]] | None
    strict: bool | None


class OperationOptions(TetherOperationOptions, total=False):
    """The options every operation decorator takes: those above, plus `uses=` for services."""

    uses: Sequence[str] | None


def operation(
    *,
    kind: Kind,
    name: str | None = None,
    auth: Any = None,
    tags: Sequence[str] | None = None,
    summary: str | None = None,
    description: str | None = None,
    deprecated: bool = False,
    errors: Sequence[type[TetherError]] | None = None,
    uses: Sequence[str] | None = None,
    strict: bool | None = None,
) -> Callable[[F], F]:
    """Mark a function as an operation of the given kind, returning the function unchanged.

    `uses` applies to service methods only: the class dependencies the method reads, so
    that the others (which may be expensive) are not solved for it. `strict` validates
    the inputs strictly, without coercion (None: as `Tether(strict=)` says).
    """
    spec = make_spec(
        kind,
        name=name,
        auth=auth,
        tags=tags,
        summary=summary,
        description=description,
        deprecated=deprecated,
        errors=errors,
        uses=uses,
        strict=strict,
    )

    def mark(func: F) -> F:
        if isinstance(func, staticmethod | classmethod):
            raise ConfigurationError("operations cannot be static or class methods")
        setattr(func, _SPEC_ATTRIBUTE, spec)
        _note_method(func)
        return func

    return mark


@overload
def query(func: F, /) -> F: ...
@overload
def query(**options: Unpack[OperationOptions]) -> Callable[[F], F]: ...
def query(func: Any = None, /, **options: Any) -> Any:
    """Mark a function as a query: it reads, and may also be called with HTTP GET."""
    mark = operation(kind="query", **options)
    return mark if func is None else mark(func)


@overload
def command(func: F, /) -> F: ...
@overload
def command(**options: Unpack[OperationOptions]) -> Callable[[F], F]: ...
def command(func: Any = None, /, **options: Any) -> Any:
    """Mark a function as a command: it changes state, and is called with POST only."""
    mark = operation(kind="command", **options)
    return mark if func is None else mark(func)


@overload
def stream(func: F, /) -> F: ...
@overload
def stream(**options: Unpack[OperationOptions]) -> Callable[[F], F]: ...
def stream(func: Any = None, /, **options: Any) -> Any:
    """Mark a generator (async, or sync for the thread pool) as a stream of typed items."""
    mark = operation(kind="stream", **options)
    return mark if func is None else mark(func)


_ITERATOR_ORIGINS = (
    AsyncIterator,
    AsyncIterable,
    AsyncGenerator,
    Iterator,
    Iterable,
    Generator,
)


def stream_item_type(annotation: Any) -> Any:
    """Return `T` of a stream's `AsyncIterator[T]` (or Iterator, Generator...) annotation."""
    origin = get_origin(annotation)
    if origin in _ITERATOR_ORIGINS:
        args = get_args(annotation)
        if args:
            return args[0]
    return Any


class ResultEncoder:
    """Encodes an operation's return value to JSON bytes the way FastAPI serializes a response model.

    Like a FastAPI `response_model`, a value is validated into the declared type first
    (so a dict or an ORM object becomes the model, and undeclared fields are dropped),
    except when it already is exactly the declared class, which is dumped directly.
    """

    __slots__ = ("adapter", "exact", "native", "serialize", "validate")

    def __init__(self, output_type: Any) -> None:
        self.adapter: TypeAdapter[Any] = TypeAdapter(output_type)
        self.exact: type | None = (
            output_type
            if isinstance(output_type, type)
            and (issubclass(output_type, BaseModel) or output_type in _EXACT_BUILTINS)
            else None
        )
        # orjson writes these scalars exactly as pydantic does, several times faster.
        self.native: type | None = output_type if output_type in _NATIVE_SCALARS else None
        self.serialize = self.adapter.serializer.to_json
        self.validate = self.adapter.validator.validate_python

    def to_json(self, value: Any) -> bytes:
        """Return `value` as JSON bytes, validated against the output type first if needed."""
        kind = type(value)
        if kind is self.native:
            try:
                return orjson.dumps(value)
            except TypeError:  # an int beyond 64 bits
                pass
        if kind is self.exact:
            return self.serialize(value, by_alias=True)
        return self.serialize(self.validate(value, from_attributes=True), by_alias=True)


_EXACT_BUILTINS = (int, str, float, bool, NoneType, list, dict)
_NATIVE_SCALARS = (int, str, bool, NoneType)


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


def _is_scalar(annotation: Any) -> bool:
    annotation, _ = _unwrap(annotation)
    if annotation is Any or annotation is NoneType:
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (Union, UnionType):
        return all(_is_scalar(arg) for arg in get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, _SCALARS)


def _unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    if get_origin(annotation) is Annotated:
        base, *meta = get_args(annotation)
        return base, tuple(meta)
    return annotation, ()


def _query_shape(annotation: Any) -> bool | None:
    """How a parameter reads from a query string: False single value, True repeated, None never."""
    if _is_scalar(annotation):
        return False
    base, _ = _unwrap(annotation)
    args = get_args(base)
    if get_origin(base) in (Union, UnionType):
        non_none = [a for a in args if a is not NoneType]
        return _query_shape(non_none[0]) if len(non_none) == 1 else None
    if get_origin(base) in _SEQUENCES and all(_is_scalar(a) for a in args if a is not Ellipsis):
        return True
    return None


def model_name(name: str, suffix: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[._]", name) if part) + suffix


@dataclass(frozen=True, slots=True, eq=False)
class Operation:
    """One callable, compiled once: its name, kind, input model, output type and policy."""

    name: str
    kind: Kind
    func: Callable[..., Any]
    is_async: bool
    """For a stream: the function makes an async generator (else a sync one, run in threads)."""
    input_model: type[BaseModel]
    output_type: Any
    encoder: ResultEncoder
    plan: DependencyPlan | None
    auth: Any
    tags: tuple[str, ...]
    summary: str | None
    description: str | None
    deprecated: bool
    errors: tuple[type[TetherError], ...]
    input_names: tuple[str, ...]
    """The input parameter names, in signature order (for positional binding)."""
    query_shape: Mapping[str, bool] | None
    """Per input: read repeated from a query string? None when GET cannot carry the input."""
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Input model field name -> parameter name, for parameters that shadow BaseModel names."""
    validate_params: Callable[[Any], dict[str, Any]] = field(default=lambda data: dict(data))
    """Validates params as the input model would, into a fresh dict of field values."""
    strict: bool = False
    """Inputs validate strictly: a JSON value must already have the declared type."""
    validate_query: Callable[[Any], dict[str, Any]] | None = None
    """Validates params read from a query string, when that differs from `validate_params`."""

    def bind(self, params: Mapping[str, Any] | BaseModel | None) -> dict[str, Any]:
        """Validate `params` against the input model and return the keyword arguments.

        Raises:
            ValidationFailed: with one entry per offending field.
        """
        if type(params) is not dict:
            if params is None:
                params = {}
            elif isinstance(params, self.input_model):
                values = dict(params.__dict__)
                for field_name, param_name in self.renamed.items():
                    values[param_name] = values.pop(field_name)
                return values
            elif type(params) is QueryParams and self.validate_query is not None:
                return self._bind_query(params)
        try:
            values = self.validate_params(params)
        except ValidationError as exc:
            raise ValidationFailed.from_errors(
                exc.errors(include_url=False, include_context=False, include_input=False)
            ) from None
        if self.renamed:
            for field_name, param_name in self.renamed.items():
                values[param_name] = values.pop(field_name)
        return values

    def _bind_query(self, params: QueryParams) -> dict[str, Any]:
        """Validate params read from a query string by a strict operation (see `_strict`)."""
        assert self.validate_query is not None
        try:
            values = self.validate_query(params)
        except ValidationError as exc:
            raise ValidationFailed.from_errors(
                exc.errors(include_url=False, include_context=False, include_input=False)
            ) from None
        for field_name, param_name in self.renamed.items():
            values[param_name] = values.pop(field_name)
        return values

    def params_from_positional(self, values: Sequence[Any]) -> dict[str, Any]:
        """Bind positional values to input parameters in signature order.

        Raises:
            ValidationFailed: more values than the operation has parameters.
        """
        if len(values) > len(self.input_names):
            raise ValidationFailed.from_errors(
                [
                    {
                        "loc": [index],
                        "msg": f"Unexpected positional parameter; {self.name} takes"
                        f" {len(self.input_names)}",
                        "type": "extra_forbidden",
                    }
                    for index in range(len(self.input_names), len(values))
                ]
            )
        return dict(zip(self.input_names, values, strict=False))

    def params_from_query(self, items: Sequence[tuple[str, str]]) -> dict[str, Any]:
        """Collect query-string pairs into params: repeated keys become lists for list inputs."""
        shape = self.query_shape or {}
        # Only a strict operation reads query text differently; a plain dict validates faster.
        result: dict[str, Any] = {} if self.validate_query is None else QueryParams()
        for key, value in items:
            if shape.get(key, False):
                result.setdefault(key, []).append(value)
            elif key in result:
                raise ValidationFailed.from_errors(
                    [{"loc": [key], "msg": "Parameter given more than once", "type": "duplicate"}]
                )
            else:
                result[key] = value
        return result


def fields_validator(
    model: type[BaseModel], *, strict: bool = False
) -> Callable[[Any], dict[str, Any]]:
    """Return a validator that checks data exactly as `model` does, into a plain dict.

    It runs the model's own field schemas as a typed dict, without building an instance:
    about twice as fast as the model, with the same errors. `strict` validates as
    pydantic's strict JSON mode would (see `tether._strict`).
    """
    schema: Any = model.__pydantic_core_schema__
    fields_schema: Any = None
    config: Any = None
    if schema["type"] == "model":
        fields_schema = schema["schema"]
        config = schema.get("config")
    elif schema["type"] == "definitions" and schema["schema"]["type"] == "model":
        fields_schema = schema["schema"]["schema"]
        config = schema["schema"].get("config")
    if fields_schema is None or fields_schema["type"] != "model-fields":  # pragma: no cover
        # pydantic always builds one of the two shapes for a model made by create_model.
        validate_model = model.__pydantic_validator__.validate_python
        return lambda data: dict(validate_model(data).__dict__)
    typed: dict[str, Any] = {"type": "typed-dict", "fields": {}, "total": True}
    for key in ("extra_behavior", "extras_schema", "strict"):
        if key in fields_schema:
            typed[key] = fields_schema[key]
    if "extra_behavior" not in typed and config and "extra_fields_behavior" in config:
        typed["extra_behavior"] = config["extra_fields_behavior"]
    for name, model_field in fields_schema["fields"].items():
        typed_field = {
            "type": "typed-dict-field",
            "schema": model_field["schema"],
            # A field with a default is wrapped in a "default" schema, which fills it in.
            "required": model_field["schema"]["type"] != "default",
        }
        for key in ("validation_alias", "serialization_alias", "metadata"):
            if key in model_field:
                typed_field[key] = model_field[key]
        typed["fields"][name] = typed_field
    if schema["type"] == "definitions":
        typed = {"type": "definitions", "schema": typed, "definitions": schema["definitions"]}
    if strict:
        return strict_validator(typed, config)
    validate: Callable[[Any], dict[str, Any]] = SchemaValidator(typed, config).validate_python
    return validate


def _resolve_hints(func: Callable[..., Any], where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except (NameError, AttributeError, TypeError) as exc:
        raise ConfigurationError(f"{where}: cannot resolve a type annotation: {exc}") from exc


def compile_operation(
    func: Callable[..., Any],
    spec: OperationSpec,
    *,
    name: str | None = None,
    path: str = "",
    dependencies: Sequence[params.Depends] = (),
    user: params.Depends | None = None,
    app_dependencies: Sequence[params.Depends] = (),
    tags: Sequence[str] = (),
    signature: inspect.Signature | None = None,
    hints: Mapping[str, Any] | None = None,
    doc: str | None = None,
    original: Callable[..., Any] | None = None,
    strict: bool = False,
) -> Operation:
    """Compile `func` and its spec into an Operation: input model, dependency plan, encoder.

    `signature`, `hints` and `doc` replace what is read from `func` (services pass the
    method's, without `self` and with the class dependencies added); `original` is the
    function whose nature (async, generator) counts, when `func` wraps it. `strict`
    validates the inputs strictly (the caller resolves the spec's None to the Tether's).
    `app_dependencies` are the dependencies of the FastAPI app tether is mounted on,
    solved before `dependencies`.

    Raises:
        ConfigurationError: the function cannot be an operation, or a dependency in its
            tree reads a query, path, body, form or file parameter.
    """
    op_name: str = name or spec.name or str(getattr(func, "__name__", ""))
    where = f"operation {op_name!r}"
    if not _NAME_PATTERN.match(op_name):
        raise ConfigurationError(
            f"{where}: names are dotted identifiers such as 'get_todo' or 'users.rename'"
        )
    if op_name.startswith("rpc."):
        raise ConfigurationError(f"{where}: names beginning with 'rpc.' are reserved by JSON-RPC")
    nature = original if original is not None else func
    is_generator = inspect.isasyncgenfunction(nature) or inspect.isgeneratorfunction(nature)
    if spec.kind == "stream" and not is_generator:
        raise ConfigurationError(f"{where}: a stream operation is a generator (async or sync)")
    if spec.kind != "stream" and is_generator:
        raise ConfigurationError(f"{where}: generators are stream operations, not {spec.kind}s")
    auth = None if spec.auth is False else spec.auth
    if auth is not None and user is None:
        raise ConfigurationError(
            f"{where}: auth={spec.auth!r} needs a user resolver: Tether(user=Depends(...))"
        )
    if hints is None:
        hints = _resolve_hints(func, where)
    if signature is None:
        signature = inspect.signature(func)
    dependency_params: list[inspect.Parameter] = []
    fields: dict[str, Any] = {}
    renamed: dict[str, str] = {}
    input_names: list[str] = []
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ConfigurationError(f"{where}: *args and **kwargs cannot be operation inputs")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ConfigurationError(f"{where}: positional-only parameters are not supported")
        annotation = hints.get(param.name, Any)
        if is_dependency_parameter(param.name, annotation, param.default, where=where):
            dependency_params.append(param.replace(annotation=annotation))
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        field_name = param.name
        if hasattr(BaseModel, field_name) or field_name.startswith("model_"):
            # pydantic reserves these names; validate under an alias instead.
            field_name = f"tether_field_{param.name}"
            renamed[field_name] = param.name
            if isinstance(default, FieldInfo):
                annotation = Annotated[annotation, default]
                info = Field(alias=param.name)
            else:
                info = Field(default, alias=param.name)
            fields[field_name] = (annotation, info)
        else:
            fields[field_name] = (annotation, default)
        input_names.append(param.name)
    try:
        input_model = create_model(
            model_name(op_name, "Params"),
            __config__=ConfigDict(extra="forbid", populate_by_name=False, protected_namespaces=()),
            __module__=getattr(nature, "__module__", __name__),
            **fields,
        )
    except Exception as exc:  # pydantic raises several types for unusable annotations
        raise ConfigurationError(f"{where}: cannot build its input model: {exc}") from exc
    output_type = hints.get("return", Any)
    if spec.kind == "stream":
        output_type = stream_item_type(output_type)
    try:
        encoder = ResultEncoder(output_type)
    except Exception as exc:
        raise ConfigurationError(
            f"{where}: cannot serialize return type {output_type!r}: {exc}"
        ) from exc
    needs_plan = bool(dependency_params or dependencies or app_dependencies or auth is not None)
    plan = (
        DependencyPlan(
            dependency_params,
            path=path,
            dependencies=dependencies,
            user=user if auth is not None else None,
            app_dependencies=app_dependencies,
            where=where,
        )
        if needs_plan
        else None
    )
    # Keyed by the name on the wire: a query string carries an aliased input by its alias.
    shapes = {}
    for field_name in fields:
        info = input_model.model_fields[field_name]
        wire = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        shapes[wire or field_name] = _query_shape(fields[field_name][0])
    query_shape = (
        None if any(s is None for s in shapes.values()) else {k: bool(v) for k, v in shapes.items()}
    )
    if doc is None:
        doc = inspect.getdoc(func)
    validate_params = fields_validator(input_model, strict=strict)
    return Operation(
        name=op_name,
        kind=spec.kind,
        func=func,
        is_async=(
            inspect.isasyncgenfunction(nature)
            if spec.kind == "stream"
            else inspect.iscoroutinefunction(nature)
        ),
        input_model=input_model,
        output_type=output_type,
        encoder=encoder,
        plan=plan,
        auth=auth,
        tags=tuple(dict.fromkeys((*tags, *spec.tags))),
        summary=spec.summary,
        description=spec.description if spec.description is not None else doc,
        deprecated=spec.deprecated,
        errors=spec.errors,
        input_names=tuple(input_names),
        query_shape=query_shape,
        renamed=renamed,
        validate_params=validate_params,
        strict=strict,
        validate_query=query_reader(validate_params) if strict else None,
    )
