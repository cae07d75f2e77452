"""Compiling: a marked function and its spec become an `Operation`, once, at registration.

Compiling checks the function can be an operation, splits its parameters into inputs and
dependencies, builds the input model and its validator, the result encoder and the
dependency plan, and works out how a query string carries the inputs; so that nothing is
introspected per call. Nothing here knows a transport or a URL.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import params
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from ._encoding import ResultEncoder, fields_validator
from ._introspect import query_shape, resolve_hints, stream_item_type
from ._strict import query_reader
from .dependencies import DependencyPlan, is_dependency_parameter
from .errors import ConfigurationError
from .operation import Operation, OperationSpec, model_name

__all__ = ("compile_operation",)

_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass
class _Parameters:
    """A signature split into the operation's inputs and its dependency parameters."""

    dependencies: list[inspect.Parameter] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    """Input model field name -> (annotation, default or FieldInfo)."""
    renamed: dict[str, str] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=list)


def compile_operation(
    func: Callable[..., Any],
    spec: OperationSpec,
    *,
    name: str | None = None,
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
    op_name = _checked_name(name or spec.name or str(getattr(func, "__name__", "")))
    where = f"operation {op_name!r}"
    nature = original if original is not None else func
    _check_nature(spec, nature, where)
    auth = None if spec.auth is False else spec.auth
    if auth is not None and user is None:
        raise ConfigurationError(
            f"{where}: auth={spec.auth!r} needs a user resolver: Tether(user=Depends(...))"
        )
    if hints is None:
        hints = resolve_hints(func, where)
    if doc is None:
        doc = inspect.getdoc(func)
    parameters = _split_parameters(signature or inspect.signature(func), hints, where)
    input_model = _input_model(op_name, parameters.fields, nature, where)
    output_type = hints.get("return", Any)
    if spec.kind == "stream":
        output_type = stream_item_type(output_type)
    encoder = _encoder(output_type, where)
    effects = bool(spec.affects or spec.merge)
    plan = _plan(
        parameters.dependencies, dependencies, user, app_dependencies, auth, where, effects=effects
    )
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
        input_names=tuple(parameters.input_names),
        query_shape=_query_shapes(input_model, parameters.fields),
        renamed=parameters.renamed,
        validate_params=validate_params,
        strict=strict,
        validate_query=query_reader(validate_params) if strict else None,
        context=spec.context,
        rev=spec.rev,
        affects=spec.affects,
        merge=spec.merge,
    )


def _plan(
    parameters: Sequence[inspect.Parameter],
    dependencies: Sequence[params.Depends],
    user: params.Depends | None,
    app_dependencies: Sequence[params.Depends],
    auth: Any,
    where: str,
    *,
    effects: bool = False,
) -> DependencyPlan | None:
    """The dependency plan, or None when there is nothing to solve (the fast path).

    A command with cache effects always has one, which resolves the user (when the Tether
    has a resolver): its effects on a per-user context are pushed to that user only, and
    its outcome carries them (the fast path has no outcome).
    """
    if not (parameters or dependencies or app_dependencies or auth is not None or effects):
        return None
    # No URL: dependencies never read path parameters (refused), and each transport gives
    # the request its own path.
    return DependencyPlan(
        parameters,
        path="",
        dependencies=dependencies,
        user=user if auth is not None or effects else None,
        app_dependencies=app_dependencies,
        where=where,
    )


def _checked_name(op_name: str) -> str:
    where = f"operation {op_name!r}"
    if not _NAME_PATTERN.match(op_name):
        raise ConfigurationError(
            f"{where}: names are dotted identifiers such as 'get_todo' or 'users.rename'"
        )
    if op_name.startswith("rpc."):
        raise ConfigurationError(f"{where}: names beginning with 'rpc.' are reserved by JSON-RPC")
    return op_name


def _check_nature(spec: OperationSpec, nature: Callable[..., Any], where: str) -> None:
    """A stream is a generator function, and only a stream is."""
    is_generator = inspect.isasyncgenfunction(nature) or inspect.isgeneratorfunction(nature)
    if spec.kind == "stream" and not is_generator:
        raise ConfigurationError(f"{where}: a stream operation is a generator (async or sync)")
    if spec.kind != "stream" and is_generator:
        raise ConfigurationError(f"{where}: generators are stream operations, not {spec.kind}s")


def _split_parameters(
    signature: inspect.Signature, hints: Mapping[str, Any], where: str
) -> _Parameters:
    """Sort a signature's parameters into dependencies and input fields, in order."""
    split = _Parameters()
    for param in signature.parameters.values():
        if param.kind in _VARIADIC:
            raise ConfigurationError(f"{where}: *args and **kwargs cannot be operation inputs")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise ConfigurationError(f"{where}: positional-only parameters are not supported")
        annotation = hints.get(param.name, Any)
        if is_dependency_parameter(param.name, annotation, param.default, where=where):
            split.dependencies.append(param.replace(annotation=annotation))
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        if hasattr(BaseModel, param.name) or param.name.startswith("model_"):
            # pydantic reserves these names; validate under an alias instead.
            field_name = f"tether_field_{param.name}"
            split.renamed[field_name] = param.name
            if isinstance(default, FieldInfo):
                split.fields[field_name] = (
                    Annotated[annotation, default],
                    Field(alias=param.name),
                )
            else:
                split.fields[field_name] = (annotation, Field(default, alias=param.name))
        else:
            split.fields[param.name] = (annotation, default)
        split.input_names.append(param.name)
    return split


def _input_model(
    op_name: str, fields: Mapping[str, Any], nature: Callable[..., Any], where: str
) -> type[BaseModel]:
    try:
        return create_model(
            model_name(op_name, "Params"),
            __config__=ConfigDict(extra="forbid", populate_by_name=False, protected_namespaces=()),
            __module__=getattr(nature, "__module__", __name__),
            **fields,
        )
    except Exception as exc:  # pydantic raises several types for unusable annotations
        raise ConfigurationError(f"{where}: cannot build its input model: {exc}") from exc


def _encoder(output_type: Any, where: str) -> ResultEncoder:
    try:
        return ResultEncoder(output_type)
    except Exception as exc:
        raise ConfigurationError(
            f"{where}: cannot serialize return type {output_type!r}: {exc}"
        ) from exc


def _query_shapes(
    input_model: type[BaseModel], fields: Mapping[str, Any]
) -> dict[str, bool] | None:
    """Per input, by its name on the wire: read repeated? None when a query cannot carry one."""
    # Keyed by the name on the wire: a query string carries an aliased input by its alias.
    shapes = {}
    for field_name, (annotation, _) in fields.items():
        info = input_model.model_fields[field_name]
        wire = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        shapes[wire or field_name] = query_shape(annotation)
    if any(shape is None for shape in shapes.values()):
        return None
    return {name: bool(shape) for name, shape in shapes.items()}
